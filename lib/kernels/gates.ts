/**
 * Host wrappers of `shaders/gates.wgsl` (decay, in-context rate, value residual) and
 * `shaders/key_norm.wgsl` (kk normalisation and the k_a update).
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

/** Arguments of {@link KeyNormKernel.record}; activations are (B·T, H·N). */
export interface KeyNormArgs {
  rows: number;
  H: number;
  N: number;
  vecs: GPUBuffer;
  kkOff: number;
  kaOff: number;
  k0: GPUBuffer;
  a: GPUBuffer;
  kk: GPUBuffer;
  k: GPUBuffer;
}

/** `kk = normalise(k0 ⊙ k_k)` per head and `k = k0 ⊙ (1 + (a − 1) ⊙ k_a)`. */
export class KeyNormKernel {
  private constructor(private readonly pipe: GPUComputePipeline) {}

  /** Fetch the pipeline. */
  static async create(gpu: Gpu): Promise<KeyNormKernel> {
    return new KeyNormKernel(await getPipeline(gpu, { shader: "key_norm" }));
  }

  /** Record the key normalisation. */
  record(rec: Recorder, a: KeyNormArgs): void {
    const name = "key_norm";
    checkDim(name, "rows", a.rows);
    checkDim(name, "H", a.H);
    checkDim(name, "N", a.N);
    const C = a.H * a.N, n = a.rows * C;
    needElems(name, "vecs", a.vecs, Math.max(a.kkOff, a.kaOff) + C);
    for (const [k, b] of Object.entries({ k0: a.k0, a: a.a, kk: a.kk, k: a.k })) {
      needElems(name, `${k} (B·T, C)`, b, n);
    }
    const { groups, nx } = splitGroups(a.rows * a.H, { perGroup: WORKGROUP });
    const params = [a.rows, a.H, a.N, a.kkOff, a.kaOff, nx];
    rec.dispatch(this.pipe, params, [a.vecs, a.k0, a.a, a.kk, a.k], groups, name);
  }
}
