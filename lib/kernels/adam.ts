/**
 * Host wrapper of `shaders/adam.wgsl`: Adam steps and the global gradient norm used for
 * clipping, with the clip scale kept in a GPU buffer (no CPU sync).
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { createStorage } from "../gpu/buffers.ts";
import { getPipeline } from "../gpu/pipeline.ts";
import { f32bits, type Recorder } from "../gpu/recorder.ts";
import { checkDim, needElems, WORKGROUP } from "./common.ts";
import { splitGroups } from "../gpu/groups.ts";

/** Partial sums one gradient block contributes to the norm (workgroups of `sq_norm`). */
export const NORM_PARTS = 64;

/** One block of a flat f32 buffer: `n` elements from element `off`. */
export interface Block {
  buffer: GPUBuffer;
  n: number;
  off?: number;
}

/** Hyper-parameters of one Adam step (defaults: the recipe of docs/MATH.md §4). */
export interface AdamStepOptions {
  lr: number;
  /** 1-based step count, for the bias corrections */
  step: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** the (2) buffer written by {@link AdamKernel.gradNorm}: its scale multiplies the gradient */
  clip?: GPUBuffer;
}

/** Adam pipelines; create once with {@link AdamKernel.create}. */
export class AdamKernel {
  private constructor(
    private readonly gpu: Gpu,
    private readonly sqPipe: GPUComputePipeline,
    private readonly clipPipe: GPUComputePipeline,
    private readonly stepPipe: GPUComputePipeline,
    private readonly one: GPUBuffer,
  ) {}

  /**
   * Fetch (compile) the pipelines.
   *
   * @example
   * ```ts ignore
   * const adam = await AdamKernel.create(gpu);
   * adam.step(rec, { buffer: s0, n }, { buffer: ds0, n }, m, v, { lr: 1, step: 1 });
   * ```
   */
  static async create(gpu: Gpu): Promise<AdamKernel> {
    const pipe = (entryPoint: string) => getPipeline(gpu, { shader: "adam", entryPoint });
    const one = createStorage(gpu, "adam.noclip", 8);
    return new AdamKernel(gpu, await pipe("sq_norm"), await pipe("clip"), await pipe("step"), one);
  }

  /** A buffer for the partial sums of {@link gradNorm} over `blocks` gradient blocks. */
  createPartials(blocks: number, label = "adam.partials"): GPUBuffer {
    return createStorage(this.gpu, label, blocks * NORM_PARTS * 4);
  }

  /**
   * Record the squared global norm of `grads` into `norm[0]` and the clip scale
   * `min(1, maxNorm / (‖g‖ + 1e-6))` (1 when `maxNorm ≤ 0`) into `norm[1]`.
   *
   * @param partials from {@link createPartials} for at least `grads.length` blocks
   * @param norm (2) output
   */
  gradNorm(
    rec: Recorder,
    grads: Block[],
    partials: GPUBuffer,
    norm: GPUBuffer,
    maxNorm = 0,
  ): void {
    const name = "adam.sq_norm";
    needElems(name, "partials", partials, grads.length * NORM_PARTS);
    needElems(name, "norm (2)", norm, 2);
    grads.forEach((g, i) => {
      checkDim(name, "n", g.n);
      needElems(name, "grad", g.buffer, (g.off ?? 0) + g.n);
      const wgs = Math.min(NORM_PARTS, Math.ceil(g.n / 256));
      if (wgs < NORM_PARTS) rec.clear(partials, (i * NORM_PARTS + wgs) * 4, (NORM_PARTS - wgs) * 4);
      const params = [g.n, g.off ?? 0, i * NORM_PARTS, 0, f32bits(0)];
      rec.dispatch(this.sqPipe, params, [g.buffer, partials], [wgs], name);
    });
    const params = [0, 0, 0, grads.length * NORM_PARTS, f32bits(maxNorm)];
    rec.dispatch(this.clipPipe, params, [partials, norm], [1], "adam.clip");
  }

  /**
   * Record one Adam step on `param` (same `n`/`off` layout in grad, m and v).
   *
   * @param m first moment, zero before step 1
   * @param v second moment, zero before step 1
   */
  step(
    rec: Recorder,
    param: Block,
    grad: Block,
    m: GPUBuffer,
    v: GPUBuffer,
    o: AdamStepOptions,
  ): void {
    const name = "adam.step";
    const n = param.n, off = param.off ?? 0;
    checkDim(name, "n", n);
    checkDim(name, "step", o.step);
    if (grad.n !== n || (grad.off ?? 0) !== off) {
      throw new RangeError(
        `${name}: grad block (${grad.n}@${grad.off ?? 0}) ≠ param (${n}@${off})`,
      );
    }
    for (const [what, b] of [["param", param.buffer], ["grad", grad.buffer], ["m", m], ["v", v]]) {
      needElems(name, what as string, b as GPUBuffer, off + n);
    }
    const b1 = o.beta1 ?? 0.9, b2 = o.beta2 ?? 0.99;
    const { groups, nx } = splitGroups(n, { perGroup: WORKGROUP });
    const params = [n, off, nx, o.clip ? 1 : 0, f32bits(o.lr), f32bits(b1), f32bits(b2)];
    params.push(f32bits(o.eps ?? 1e-8), f32bits(1 - b1 ** o.step), f32bits(1 - b2 ** o.step));
    const bindings = [param.buffer, grad.buffer, m, v, o.clip ?? this.one];
    rec.dispatch(this.stepPipe, params, bindings, groups, name);
  }
}
