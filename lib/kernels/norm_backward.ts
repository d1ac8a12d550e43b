/**
 * Host wrapper of `shaders/norm_backward.wgsl`: LayerNorm / GroupNorm backward.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { createStorage } from "../gpu/buffers.ts";
import { getPipeline } from "../gpu/pipeline.ts";
import { f32bits, type Recorder } from "../gpu/recorder.ts";
import { checkDim, needElems, WORKGROUP } from "./common.ts";
import { splitGroups } from "../gpu/groups.ts";

/** Arguments of {@link NormBackwardKernel.record}. Row width is G·S. */
export interface NormBackwardArgs {
  rows: number;
  /** groups per row (1 for LayerNorm, H for ln_x) */
  G: number;
  /** channels per group (C for LayerNorm, N for ln_x) */
  S: number;
  /** (rows, G·S) the norm's forward input */
  x: GPUBuffer;
  /** (rows, G·S) gradient of the norm's output */
  dy: GPUBuffer;
  /** packed vectors holding the affine weight at `wOff` */
  vecs: GPUBuffer;
  wOff: number;
  /** (rows, G·S) output; with `accumulate` the gradient is added */
  dx: GPUBuffer;
  accumulate?: boolean;
  /** default 1e-5 (LayerNorm); ln_x uses N·1e-5 */
  eps?: number;
  /** (rows, G·S) also store x̂ here (for weight gradients) */
  xhat?: GPUBuffer;
  /** dispatch label (default "norm_backward") */
  label?: string;
}

/** LayerNorm / GroupNorm backward, one invocation per (row, group). */
export class NormBackwardKernel {
  private constructor(
    private readonly pipe: GPUComputePipeline,
    private readonly dummy: GPUBuffer,
  ) {}

  /** Fetch the pipeline. */
  static async create(gpu: Gpu): Promise<NormBackwardKernel> {
    const pipe = await getPipeline(gpu, { shader: "norm_backward" });
    return new NormBackwardKernel(pipe, createStorage(gpu, "norm_backward.noxhat", 16));
  }

  /** Record `dx (+)= normBackward(x, dy)`. */
  record(rec: Recorder, a: NormBackwardArgs): void {
    const name = "norm_backward";
    checkDim(name, "rows", a.rows);
    checkDim(name, "G", a.G);
    checkDim(name, "S", a.S);
    const n = a.rows * a.G * a.S;
    needElems(name, "x (rows, G·S)", a.x, n);
    needElems(name, "dy (rows, G·S)", a.dy, n);
    needElems(name, "dx (rows, G·S)", a.dx, n);
    needElems(name, "vecs", a.vecs, a.wOff + a.G * a.S);
    if (a.xhat) needElems(name, "xhat (rows, G·S)", a.xhat, n);
    const { groups, nx } = splitGroups(a.rows * a.G, { perGroup: WORKGROUP });
    const mode = (a.accumulate ? 1 : 0) | (a.xhat ? 2 : 0);
    const params = [a.rows, a.G, a.S, a.wOff, f32bits(a.eps ?? 1e-5), mode, nx];
    const bindings = [a.x, a.dy, a.vecs, a.dx, a.xhat ?? this.dummy];
    rec.dispatch(this.pipe, params, bindings, groups, a.label ?? name);
  }
}
