/**
 * The arguments and results of the whole-model backward (`gpu_backward.ts`): the initial state,
 * what one recording reads, where it leaves its gradients, and its working buffers.
 *
 * @module
 */
import type { DbpRows, GpuLifted, GpuLiftedState } from "./gpu_lifted.ts";
import type { GpuState } from "./gpu_state.ts";
import type { GpuWeights } from "./gpu_weights.ts";
import type { GradWorkspace } from "./gpu_grad_workspace.ts";

/** Options of `GpuBackward.create`. */
export interface GpuBackwardOptions {
  /**
   * Also compute the gradient of every weight (pretraining). Off (default) costs nothing: no
   * gradient buffer is allocated and no weight-gradient dispatch is recorded.
   */
  weightGrads?: boolean;
}

/** The initial state: per sequence (a `GpuState`, not modified), or one S0 per layer. */
export type InitialState =
  | { kind: "state"; state: GpuState }
  | {
    kind: "shared";
    /** (L, H, N, N) wkv states shared by every sequence; token-shift states are zero */
    wkv: GPUBuffer;
  };

/** Arguments of `GpuBackward.record`. */
export interface LossAndGradArgs {
  B: number;
  T: number;
  /** (B, T) u32 token ids (< V, not checked here) */
  tokens: GPUBuffer;
  /** (B, T) u32 next-token targets */
  targets: GPUBuffer;
  /** (B, T) f32: positions with a non-zero mask count; the loss is their mean */
  mask: GPUBuffer;
  init: InitialState;
  /** add the L2Wrap term to the logit gradient (loss unchanged) */
  l2wrap?: boolean;
  /**
   * weight gradients only: add into the existing dW buffers (gradient accumulation over several
   * recordings) instead of zeroing them first
   */
  accumulateWeightGrads?: boolean;
  /**
   * kernel-upscaled state (docs/MATH.md §5): the branches of `set`, every sequence starting from the
   * set's Ŝ0 (shared by the batch, whatever `init` is); {@link GradBuffers.dLifted} gets
   * dL/dŜ0. With `dbp`, each lifted layer's DBP covariance of the listed vectors is recorded.
   */
  lifted?: { set: GpuLifted; dbp?: DbpRows };
  /**
   * run with these weights instead of `GpuModel.activeWeights` (same shapes and chunks,
   * e.g. merged adapter weights); `dWeights` is then dL/d(these weights)
   */
  weights?: GpuWeights;
}

/** Where `GpuBackward.record` leaves its results (valid once the recording ran). */
export interface GradBuffers {
  /** (4): [loss, counted positions, Σ nll, ·] */
  stats: GPUBuffer;
  /** (L, B, H, N, N) dL/dS0 per sequence */
  dS0: GPUBuffer;
  /** (L, H, N, N) dL/dS0 summed over the batch (the gradient of a shared S0) */
  dS0Sum: GPUBuffer;
  /** (L, B, C) dL/d(time-mix shift state), dL/d(channel-mix shift state) */
  dShiftAtt: GPUBuffer;
  dShiftFfn: GPUBuffer;
  /** with `weightGrads`: dL/dW of every weight, shaped like the model's {@link GpuWeights} */
  dWeights?: GpuWeights;
  /** with `lifted`: dL/dŜ0 summed over the batch, laid out like the set's `s0` */
  dLifted?: GPUBuffer;
  /** with `lifted`: dL/dg summed over the batch, laid out like the set's `gate` (0 in memory mode) */
  dLiftedGate?: GPUBuffer;
}

/** Every buffer of one backward shape (B, T): the results and the working buffers. */
export interface Buffers extends GradBuffers {
  B: number;
  T: number;
  xs: GPUBuffer[];
  vFirst: GPUBuffer;
  dvFirst: GPUBuffer;
  xNorm: GPUBuffer;
  dx: GPUBuffer;
  nll: GPUBuffer;
  logits: GPUBuffer;
  work: GpuState;
  grad: GradWorkspace;
  /** lifted work state and dŜ0 of the set last used with these B, T */
  lifted?: { set: GpuLifted; work: GpuLiftedState; dLifted: GPUBuffer; dLiftedGate: GPUBuffer };
}
