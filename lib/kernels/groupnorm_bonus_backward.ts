/**
 * Host wrapper of `shaders/groupnorm_bonus_backward.wgsl`: the backward of the output gate and
 * the bonus term of `groupnorm_bonus.wgsl` (the GroupNorm's own backward is `norm_backward.ts`),
 * and the products whose column sums are dL/dr_k.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { getPipeline } from "../gpu/pipeline.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { needElems, recordRowsHeads, type RowsHeads } from "./common.ts";

/** Buffers of {@link GroupNormBonusBackwardKernel.gateBonus}; all (rows, C). */
export interface GateBonusArgs {
  rows: number;
  H: number;
  N: number;
  vecs: GPUBuffer;
  /** r_k offset in vecs */
  rkOff: number;
  dog: GPUBuffer;
  o: GPUBuffer;
  g: GPUBuffer;
  r: GPUBuffer;
  k: GPUBuffer;
  v: GPUBuffer;
  /** outputs: gradient of the GroupNorm output, of g, and the bonus parts of dr, dk, dv */
  dgn: GPUBuffer;
  dg: GPUBuffer;
  dr: GPUBuffer;
  dk: GPUBuffer;
  dv: GPUBuffer;
}

const SHADER = "groupnorm_bonus_backward";

/** Gate and bonus backward pipelines; create once with {@link GroupNormBonusBackwardKernel.create}. */
export class GroupNormBonusBackwardKernel {
  private constructor(
    private readonly pipes: Partial<Record<"gate" | "bonus" | "dw_rk", GPUComputePipeline>>,
  ) {}

  /** Fetch the pipelines (`dw_rk` only with `weightGrads`). */
  static async create(gpu: Gpu, weightGrads = false): Promise<GroupNormBonusBackwardKernel> {
    const pipes: Partial<Record<"gate" | "bonus" | "dw_rk", GPUComputePipeline>> = {};
    for (
      const e of weightGrads ? ["gate", "bonus", "dw_rk"] as const : ["gate", "bonus"] as const
    ) {
      pipes[e] = await getPipeline(gpu, { shader: SHADER, entryPoint: e });
    }
    return new GroupNormBonusBackwardKernel(pipes);
  }

  /**
   * Record the output-gate and bonus-term backward: two dispatches, `gate` (per element) then
   * `bonus` (per row and head, reading do from `dgn`), each within 8 storage buffers.
   */
  gateBonus(rec: Recorder, a: GateBonusArgs): void {
    needElems(`${SHADER}.bonus`, "vecs", a.vecs, a.rkOff + a.H * a.N);
    const { vecs, dog, o, g, r, k, v, dgn, dg, dr, dk, dv } = a;
    const p = this.pipes;
    recordRowsHeads(rec, p.gate, `${SHADER}.gate`, a, [0, 0], { dog, o, g, dgn, dg }, true);
    const bufs = { vecs, dgn, r, k, v, dr, dk, dv };
    recordRowsHeads(rec, p.bonus, `${SHADER}.bonus`, a, [a.rkOff, 0], bufs);
  }

  /**
   * Weight gradients: record `out = ds · r ⊙ k` per row and head (ds = Σ_j dog g v over the
   * head), whose column sum is dL/dr_k. All (rows, C).
   */
  rkProducts(
    rec: Recorder,
    a: RowsHeads & Record<"dog" | "g" | "v" | "r" | "k", GPUBuffer>,
    out: GPUBuffer,
  ): void {
    const { dog, g, v, r, k } = a;
    recordRowsHeads(rec, this.pipes.dw_rk, `${SHADER}.dw_rk`, a, [0, 0], { dog, g, v, r, k, out });
  }
}
