/**
 * Host wrapper of `shaders/wkv7.wgsl`: the sequential WKV-7 recurrence, one workgroup per
 * (sequence, head), one invocation per value row.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { getPipeline } from "../gpu/pipeline.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { checkDim, needElems } from "./common.ts";

/** The head size the kernel is written for (its state row is 16 unrolled vec4s). */
export const WKV_N = 64;

/** Arguments of {@link Wkv7Kernel.record}; vectors are (B, T, H, N). */
export interface Wkv7Args {
  B: number;
  T: number;
  H: number;
  r: GPUBuffer;
  d: GPUBuffer;
  k: GPUBuffer;
  v: GPUBuffer;
  kk: GPUBuffer;
  a: GPUBuffer;
  /** (L, B, H, N, N) state, [value][key]; this layer's block at element `stateOff`; updated */
  state: GPUBuffer;
  stateOff: number;
  y: GPUBuffer;
}

/** The WKV-7 forward for one head size N. */
export class Wkv7Kernel {
  private constructor(private readonly pipe: GPUComputePipeline, readonly N: number) {}

  /**
   * Fetch the pipeline for head size `N`.
   *
   * @throws {RangeError} when N is not 64 or exceeds the workgroup size limit
   */
  static async create(gpu: Gpu, N: number): Promise<Wkv7Kernel> {
    if (N !== WKV_N) {
      throw new RangeError(
        `wkv7: head size N = ${N} is not supported; this kernel keeps one state row in 16 vec4 ` +
          `registers, so N must be ${WKV_N} (every released RWKV-7 model uses 64)`,
      );
    }
    if (N > gpu.limits.maxComputeWorkgroupSizeX) {
      throw new RangeError(`wkv7: N = ${N} exceeds maxComputeWorkgroupSizeX`);
    }
    return new Wkv7Kernel(await getPipeline(gpu, { shader: "wkv7", constants: { N } }), N);
  }

  /** Record the recurrence over T tokens for every sequence and head. */
  record(rec: Recorder, a: Wkv7Args): void {
    const name = "wkv7";
    checkDim(name, "B", a.B);
    checkDim(name, "T", a.T);
    checkDim(name, "H", a.H);
    const n = a.B * a.T * a.H * this.N;
    const vecs = { r: a.r, d: a.d, k: a.k, v: a.v, kk: a.kk, a: a.a, y: a.y };
    for (const [key, b] of Object.entries(vecs)) needElems(name, `${key} (B, T, H, N)`, b, n);
    needElems(name, "state (L, B, H, N, N)", a.state, a.stateOff + a.B * a.H * this.N * this.N);
    if (a.B * a.H > rec.gpu.limits.maxComputeWorkgroupsPerDimension) {
      throw new RangeError(`wkv7: B·H = ${a.B * a.H} exceeds the workgroup count limit`);
    }
    const params = [a.B, a.T, a.H, a.stateOff];
    const bufs = [a.r, a.d, a.k, a.v, a.kk, a.a, a.state, a.y];
    rec.dispatch(this.pipe, params, bufs, [a.B * a.H], name);
  }
}
