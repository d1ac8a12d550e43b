/**
 * Host wrapper of `shaders/gates.wgsl` (decay, in-context rate, value residual); the key
 * normalisation is `key_norm.ts`.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { getPipeline } from "../gpu/pipeline.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { checkDim, needElems, WORKGROUP } from "./common.ts";
import { splitGroups } from "../gpu/groups.ts";

/** Arguments of {@link GatesKernel.record}; every activation buffer is (B·T, C). */
export interface GatesArgs {
  rows: number;
  C: number;
  /** layer vectors with w0, a0, v0 at the given offsets */
  vecs: GPUBuffer;
  w0Off: number;
  a0Off: number;
  v0Off: number;
  /** layer 0 sets v = v_first = v0; later layers apply the value residual */
  layer0: boolean;
  /** in: tanh(mix_w·w1)·w2; out: z = w0 + in */
  z: GPUBuffer;
  d: GPUBuffer;
  /** in: (mix_a·a1)·a2; out: a */
  a: GPUBuffer;
  /** in: (mix_v·v1)·v2; out: σ(v0 + in) (untouched in layer 0) */
  vGate: GPUBuffer;
  v0: GPUBuffer;
  v: GPUBuffer;
  vFirst: GPUBuffer;
}

/** The elementwise gates after the low-rank products. */
export class GatesKernel {
  private constructor(private readonly pipe: GPUComputePipeline) {}

  /** Fetch the pipeline. */
  static async create(gpu: Gpu): Promise<GatesKernel> {
    return new GatesKernel(await getPipeline(gpu, { shader: "gates" }));
  }

  /** Record the gates. */
  record(rec: Recorder, a: GatesArgs): void {
    const name = "gates";
    checkDim(name, "rows", a.rows);
    checkDim(name, "C", a.C);
    const n = a.rows * a.C;
    needElems(name, "vecs", a.vecs, Math.max(a.w0Off, a.a0Off, a.v0Off) + a.C);
    for (const [k, b] of Object.entries({ z: a.z, d: a.d, a: a.a, vGate: a.vGate, v0: a.v0 })) {
      needElems(name, `${k} (B·T, C)`, b, n);
    }
    needElems(name, "v (B·T, C)", a.v, n);
    needElems(name, "vFirst (B·T, C)", a.vFirst, n);
    const { groups, nx } = splitGroups(n, { perGroup: WORKGROUP });
    const params = [n, a.C, a.w0Off, a.a0Off, a.v0Off, a.layer0 ? 1 : 0, nx];
    const bufs = [a.vecs, a.z, a.d, a.a, a.vGate, a.v0, a.v, a.vFirst];
    rec.dispatch(this.pipe, params, bufs, groups, name);
  }
}
