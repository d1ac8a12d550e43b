/**
 * Host wrapper of `shaders/head_ce.wgsl`: the head, masked softmax cross-entropy and its
 * backward, fused per block of rows so that the (B·T, V) logits never exist at once and each
 * logit is computed exactly once:
 *
 *     for each row block:  logits = xNorm · headᵀ → loss terms + dlogits (in place)
 *                          dxNorm = dlogits · head   (dHead += dlogitsᵀ · xNorm when asked)
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { createStorage } from "../gpu/buffers.ts";
import { getPipeline } from "../gpu/pipeline.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { checkDim, needElems } from "./common.ts";
import type { GpuMatrix, MatmulKernel } from "./matmul.ts";
import type { MatmulDwKernel } from "./matmul_dw.ts";

/** Arguments of {@link HeadCeKernel.record}. */
export interface HeadCeArgs {
  /** B·T */
  rows: number;
  /** (rows, C) output of ln_out */
  xNorm: GPUBuffer;
  /** head.weight [V, C] */
  head: GpuMatrix;
  /** (rows) u32 next-token ids (read only where the mask is non-zero) */
  targets: GPUBuffer;
  /** (rows) f32; positions with a non-zero mask count, the loss is their mean */
  mask: GPUBuffer;
  /** (blockRows, V) scratch from {@link HeadCeKernel.createLogits} */
  logits: GPUBuffer;
  /** (rows, C) output: dL/dxNorm */
  dx: GPUBuffer;
  /** (4) output: [loss, counted positions, Σ nll, ·] */
  stats: GPUBuffer;
  /** (rows) output: nll per position (0 where not counted) */
  nll: GPUBuffer;
  /** add the L2Wrap term to the gradient (the loss value is unchanged) */
  l2wrap?: boolean;
  /** head gradient, chunked like `head` (accumulated); omitted = no weight gradient work */
  dHead?: GpuMatrix;
}

/** Head + cross-entropy pipelines; create once with {@link HeadCeKernel.create}. */
export class HeadCeKernel {
  private constructor(
    private readonly gpu: Gpu,
    private readonly mm: MatmulKernel,
    private readonly dw: MatmulDwKernel | undefined,
    private readonly pipes: Record<"count_mask" | "rows" | "finish", GPUComputePipeline>,
  ) {}

  /**
   * Fetch the pipelines. `dw` is needed only for head weight gradients.
   *
   * @example
   * ```ts ignore
   * const ce = await HeadCeKernel.create(gpu, await MatmulKernel.create(gpu));
   * ```
   */
  static async create(gpu: Gpu, mm: MatmulKernel, dw?: MatmulDwKernel): Promise<HeadCeKernel> {
    const pipe = (entryPoint: string) => getPipeline(gpu, { shader: "head_ce", entryPoint });
    return new HeadCeKernel(gpu, mm, dw, {
      count_mask: await pipe("count_mask"),
      rows: await pipe("rows"),
      finish: await pipe("finish"),
    });
  }

  /**
   * Rows per block so that the block's logits fit `budgetBytes` (default 64 MiB) and one
   * storage binding.
   */
  blockRows(rows: number, V: number, budgetBytes = 64 * 2 ** 20): number {
    const cap = Math.min(budgetBytes, this.gpu.limits.maxStorageBufferBindingSize);
    return Math.max(1, Math.min(rows, Math.floor(cap / (V * 4))));
  }

  /** The (blockRows, V) logits scratch. */
  createLogits(rows: number, V: number, budgetBytes?: number): GPUBuffer {
    return createStorage(this.gpu, "head_ce.logits", this.blockRows(rows, V, budgetBytes) * V * 4);
  }

  /** Record the loss (stats[0]), dL/dxNorm and optionally dHead. */
  record(rec: Recorder, a: HeadCeArgs): void {
    const name = "head_ce";
    checkDim(name, "rows", a.rows);
    const V = a.head.rows, C = a.head.cols;
    needElems(name, "xNorm (rows, C)", a.xNorm, a.rows * C);
    needElems(name, "targets (rows)", a.targets, a.rows);
    needElems(name, "mask (rows)", a.mask, a.rows);
    needElems(name, "dx (rows, C)", a.dx, a.rows * C);
    needElems(name, "stats (4)", a.stats, 4);
    needElems(name, "nll (rows)", a.nll, a.rows);
    const block = Math.min(a.rows, Math.floor(a.logits.size / 4 / V));
    if (block < 1) {
      throw new RangeError(`${name}: logits scratch holds less than one row of V = ${V}`);
    }
    if (a.dHead && !this.dw) throw new RangeError(`${name}: dHead needs create(gpu, mm, dw)`);
    const ce = [a.logits, a.targets, a.mask, a.stats, a.nll];
    rec.dispatch(this.pipes.count_mask, [a.rows, V, 0, 0, 0, 1], ce, [1], `${name}.count_mask`);
    for (let r0 = 0; r0 < a.rows; r0 += block) {
      const n = Math.min(block, a.rows - r0);
      this.mm.linearMatrix(rec, a.head, { rows: n, x: a.xNorm, xOff: r0 * C, y: a.logits });
      const [gx, gy] = [Math.min(n, 65535), Math.ceil(n / 65535)];
      const params = [a.rows, V, r0, n, a.l2wrap ? 1 : 0, gx];
      rec.dispatch(this.pipes.rows, params, ce, [gx, gy], `${name}.rows`);
      this.mm.lowrankMatrix(rec, a.head, { rows: n, x: a.logits, y: a.dx, yOff: r0 * C });
      if (a.dHead) this.#headGrad(rec, a, r0, n);
    }
    rec.dispatch(this.pipes.finish, [a.rows, V, 0, 0, 0, 1], ce, [1], `${name}.finish`);
  }

  #headGrad(rec: Recorder, a: HeadCeArgs, r0: number, n: number): void {
    const C = a.head.cols, V = a.head.rows;
    a.dHead!.chunks.forEach((ch) => {
      this.dw!.outer(
        rec,
        n,
        ch.rows,
        C,
        { buffer: a.logits, off: ch.rowStart, stride: V },
        { buffer: a.xNorm, off: r0 * C, stride: C },
        { buffer: ch.buffer },
      );
    });
  }
}
