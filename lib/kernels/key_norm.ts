/**
 * Host wrapper of `shaders/key_norm.wgsl`: kk normalisation and the k_a update
 * (`lib/ref/key_norm.ts` is the reference).
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { getPipeline } from "../gpu/pipeline.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { checkDim, needElems, WORKGROUP } from "./common.ts";
import { splitGroups } from "../gpu/groups.ts";

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
