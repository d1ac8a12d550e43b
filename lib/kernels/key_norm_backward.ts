/**
 * Host wrapper of `shaders/key_norm_backward.wgsl`: the backward of `key_norm.wgsl` (kk
 * normalisation and the k_a update) and of the `a` sigmoid, and the products whose column sums
 * are dL/dk_k and dL/dk_a.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { getPipeline } from "../gpu/pipeline.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { needElems, recordRowsHeads } from "./common.ts";
import type { KeyNormArgs } from "./key_norm.ts";

/** Buffers of {@link KeyNormBackwardKernel.record}; all (rows, C). */
export interface KeyNormBackwardArgs
  extends Pick<KeyNormArgs, "rows" | "H" | "N" | "vecs" | "kkOff" | "kaOff" | "k0" | "kk" | "a"> {
  dkk: GPUBuffer;
  /** in dk, out dk0 */
  dk: GPUBuffer;
  /** in da (from the WKV backward), out dL/d(a0 + aHidden·a2) */
  da: GPUBuffer;
}

const SHADER = "key_norm_backward";

/** Key-normalisation backward pipelines; create once with {@link KeyNormBackwardKernel.create}. */
export class KeyNormBackwardKernel {
  private constructor(
    private readonly pipes: Partial<Record<"key_norm" | "dw_key", GPUComputePipeline>>,
  ) {}

  /** Fetch the pipelines (`dw_key` only with `weightGrads`). */
  static async create(gpu: Gpu, weightGrads = false): Promise<KeyNormBackwardKernel> {
    const pipes: Partial<Record<"key_norm" | "dw_key", GPUComputePipeline>> = {};
    for (const e of weightGrads ? ["key_norm", "dw_key"] as const : ["key_norm"] as const) {
      pipes[e] = await getPipeline(gpu, { shader: SHADER, entryPoint: e });
    }
    return new KeyNormBackwardKernel(pipes);
  }

  /** Record the kk-normalisation, k_a and `a` sigmoid backward (per row and head). */
  record(rec: Recorder, a: KeyNormBackwardArgs): void {
    const name = `${SHADER}.key_norm`, C = a.H * a.N;
    needElems(name, "vecs", a.vecs, Math.max(a.kkOff, a.kaOff) + C);
    const { vecs, dkk, k0, kk, a: av, dk, da } = a;
    const bufs = { vecs, dkk, k0, kk, a: av, dk, da };
    recordRowsHeads(rec, this.pipes.key_norm, name, a, [a.kkOff, a.kaOff], bufs);
  }

  /**
   * Weight gradients: before {@link record}, with the same inputs, record the products whose
   * column sums are dL/dk_k (`out[0, n)`) and dL/dk_a (`out[n, 2n)`), n = rows·C.
   */
  keyProducts(rec: Recorder, a: KeyNormBackwardArgs, out: GPUBuffer): void {
    const name = `${SHADER}.dw_key`, n = a.rows * a.H * a.N;
    needElems(name, "vecs", a.vecs, a.kkOff + a.H * a.N);
    needElems(name, "out (2, rows, C)", out, 2 * n);
    const { vecs, dkk, k0, kk, dk, a: av } = a;
    const bufs = { vecs, dkk, k0, kk, dk, a: av, out };
    recordRowsHeads(rec, this.pipes.dw_key, name, a, [a.kkOff, 0], bufs);
  }
}
