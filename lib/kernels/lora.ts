/**
 * Host wrapper of `shaders/lora.wgsl` (docs/MATH.md §7, LoRA): the merge `W_eff = W + s B A` and the
 * adapter's gradients from the weight gradient, `dB = s dW Aᵀ`, `dA = s Bᵀ dW`, over every row
 * chunk of a {@link GpuMatrix}. The float64 definition is `lib/ref/lora.ts`.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { getPipeline } from "../gpu/pipeline.ts";
import { f32bits, type Recorder } from "../gpu/recorder.ts";
import { checkDim, needElems, WORKGROUP } from "./common.ts";
import { splitGroups } from "../gpu/groups.ts";
import type { GpuMatrix } from "./matmul.ts";

/** The adapter of one Linear: A (r, W.cols) and B (W.rows, r), f32, and s = α / r. */
export interface LoraFactors {
  /** (r, in) */
  A: GPUBuffer;
  /** (out, r) */
  B: GPUBuffer;
  r: number;
  scale: number;
}

/** Arguments of {@link LoraKernel.grads}. */
export interface LoraGradArgs extends LoraFactors {
  /** dL/dW_eff (out, in), chunked like W */
  dW: GpuMatrix;
  /** (r, in) output */
  dA: GPUBuffer;
  /** (out, r) output */
  dB: GPUBuffer;
  /** add to dA and dB instead of overwriting them (micro-batch accumulation) */
  accumulate?: boolean;
}

/** The LoRA pipelines; create once with {@link LoraKernel.create}. */
export class LoraKernel {
  private constructor(
    private readonly gpu: Gpu,
    private readonly pipes: Record<"merge" | "grad_a" | "grad_b", GPUComputePipeline>,
  ) {}

  /** Fetch (compile) the pipelines. */
  static async create(gpu: Gpu): Promise<LoraKernel> {
    const pipe = (entryPoint: string) => getPipeline(gpu, { shader: "lora", entryPoint });
    return new LoraKernel(gpu, {
      merge: await pipe("merge"),
      grad_a: await pipe("grad_a"),
      grad_b: await pipe("grad_b"),
    });
  }

  /**
   * Record `out = W + s B A` chunk by chunk (`out` has W's shape and row chunks; f32 only).
   *
   * @throws {RangeError} for f16 matrices, chunks that differ, or buffers too small
   */
  merge(rec: Recorder, W: GpuMatrix, f: LoraFactors, out: GpuMatrix): void {
    const name = "lora.merge";
    this.#check(name, W, f);
    this.#sameChunks(name, W, out);
    W.chunks.forEach((c, i) => {
      const o = out.chunks[i];
      needElems(name, "W chunk", c.buffer, c.rows * W.cols);
      needElems(name, "W_eff chunk", o.buffer, c.rows * W.cols);
      const { groups, nx } = this.#groups(c.rows * Math.ceil(W.cols / 4));
      const params = [c.rows, W.cols, f.r, c.rowStart, f32bits(f.scale), 0, nx];
      rec.dispatch(this.pipes.merge, params, [c.buffer, f.A, f.B, o.buffer], groups, name);
    });
  }

  /**
   * Record dA and dB from dW (chunk by chunk; dA sums the chunks).
   *
   * @throws {RangeError} for f16 matrices or buffers too small
   */
  grads(rec: Recorder, a: LoraGradArgs): void {
    const name = "lora.grads", dW = a.dW;
    this.#check(name, dW, a);
    needElems(name, "dA (r, in)", a.dA, a.r * dW.cols);
    needElems(name, "dB (out, r)", a.dB, dW.rows * a.r);
    const kq = Math.ceil(a.r / 4);
    dW.chunks.forEach((c, i) => {
      needElems(name, "dW chunk", c.buffer, c.rows * dW.cols);
      const b = this.#groups(c.rows * kq);
      const pb = [c.rows, dW.cols, a.r, c.rowStart, f32bits(a.scale), a.accumulate ? 1 : 0, b.nx];
      rec.dispatch(this.pipes.grad_b, pb, [c.buffer, a.A, a.dB], b.groups, "lora.grad_b");
      const g = this.#groups(kq * dW.cols);
      const acc = a.accumulate || i > 0 ? 1 : 0;
      const pa = [c.rows, dW.cols, a.r, c.rowStart, f32bits(a.scale), acc, g.nx];
      rec.dispatch(this.pipes.grad_a, pa, [c.buffer, a.B, a.dA], g.groups, "lora.grad_a");
    });
  }

  #groups(count: number) {
    return splitGroups(count, {
      perGroup: WORKGROUP,
      maxPerDim: this.gpu.limits.maxComputeWorkgroupsPerDimension,
    });
  }

  #check(name: string, W: GpuMatrix, f: LoraFactors): void {
    checkDim(name, "r", f.r);
    if (W.dtype !== "f32") {
      throw new RangeError(
        `${name}: LoRA needs f32 weights, got ${W.dtype}; create the model with ` +
          `{ weightDtype: "f32" }`,
      );
    }
    needElems(name, "A (r, in)", f.A, f.r * W.cols);
    needElems(name, "B (out, r)", f.B, W.rows * f.r);
  }

  #sameChunks(name: string, W: GpuMatrix, out: GpuMatrix): void {
    const same = out.rows === W.rows && out.cols === W.cols &&
      out.chunks.length === W.chunks.length &&
      out.chunks.every((c, i) =>
        c.rowStart === W.chunks[i].rowStart && c.rows === W.chunks[i].rows
      );
    if (!same) {
      throw new RangeError(`${name}: W_eff must have W's shape (${W.rows}, ${W.cols}) and chunks`);
    }
  }
}
