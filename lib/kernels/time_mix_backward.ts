/**
 * The elementwise kernels of the time-mix backward, fetched together:
 * {@link GroupNormBonusBackwardKernel} (output gate, bonus term), {@link KeyNormBackwardKernel}
 * (kk normalisation, k_a, the `a` sigmoid) and {@link GatesBackwardKernel} (decay, value
 * residual, activation derivatives). The matrix products between them use `MatmulKernel`.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { RowsHeads } from "./common.ts";
import { GatesBackwardKernel, type ValueBackwardArgs } from "./gates_backward.ts";
import { type GateBonusArgs, GroupNormBonusBackwardKernel } from "./groupnorm_bonus_backward.ts";
import { type KeyNormBackwardArgs, KeyNormBackwardKernel } from "./key_norm_backward.ts";

export type { GateBonusArgs } from "./groupnorm_bonus_backward.ts";

/** Buffers of {@link TimeMixBackwardKernel.keyDecay}; all (rows, C). */
export interface KeyDecayArgs extends KeyNormBackwardArgs {
  z: GPUBuffer;
  d: GPUBuffer;
  /** in dd, out dz */
  dd: GPUBuffer;
}

/** Time-mix backward pipelines; create once with {@link TimeMixBackwardKernel.create}. */
export class TimeMixBackwardKernel {
  private constructor(
    readonly groupNormBonus: GroupNormBonusBackwardKernel,
    readonly keyNorm: KeyNormBackwardKernel,
    readonly gates: GatesBackwardKernel,
  ) {}

  /** Fetch the pipelines (the weight-gradient ones only with `weightGrads`). */
  static async create(gpu: Gpu, weightGrads = false): Promise<TimeMixBackwardKernel> {
    return new TimeMixBackwardKernel(
      await GroupNormBonusBackwardKernel.create(gpu, weightGrads),
      await KeyNormBackwardKernel.create(gpu, weightGrads),
      await GatesBackwardKernel.create(gpu),
    );
  }

  /** {@link GroupNormBonusBackwardKernel.gateBonus}: the output gate and bonus backward. */
  gateBonus(rec: Recorder, a: GateBonusArgs): void {
    this.groupNormBonus.gateBonus(rec, a);
  }

  /**
   * Record the kk-normalisation, k_a and `a` sigmoid backward (per row and head), then the decay
   * backward (per element, dd → dz): two dispatches, each within 8 storage buffers.
   */
  keyDecay(rec: Recorder, a: KeyDecayArgs): void {
    this.keyNorm.record(rec, a);
    this.gates.decay(rec, a);
  }

  /** {@link GroupNormBonusBackwardKernel.rkProducts}: the products summing to dL/dr_k. */
  rkProducts(
    rec: Recorder,
    a: RowsHeads & Record<"dog" | "g" | "v" | "r" | "k", GPUBuffer>,
    out: GPUBuffer,
  ): void {
    this.groupNormBonus.rkProducts(rec, a, out);
  }

  /** {@link KeyNormBackwardKernel.keyProducts}: the products summing to dL/dk_k, dL/dk_a. */
  keyProducts(rec: Recorder, a: KeyDecayArgs, out: GPUBuffer): void {
    this.keyNorm.keyProducts(rec, a, out);
  }

  /** {@link GatesBackwardKernel.value}: the value-residual backward. */
  value(rec: Recorder, a: ValueBackwardArgs): void {
    this.gates.value(rec, a);
  }

  /** {@link GatesBackwardKernel.act}: `g ← g ⊙ f'(h)` in place. */
  act(rec: Recorder, kind: "tanh" | "sigmoid", n: number, h: GPUBuffer, g: GPUBuffer): void {
    this.gates.act(rec, kind, n, h, g);
  }
}
