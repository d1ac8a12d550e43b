/**
 * Types of the lifted state on the GPU (`gpu_lifted.ts`): one lifted layer, the vectors its
 * branch reads, the DBP inputs and losses, and the branch backward's outputs.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import type { DbpKernel } from "../kernels/dbp.ts";
import type { LiftedForwardArgs, LiftedKernel, LiftedParams } from "../kernels/lifted.ts";
import type { LiftedBackwardArgs, LiftedBackwardKernel } from "../kernels/lifted_backward.ts";
import type { RwkvConfig } from "./types.ts";

/** One lifted layer on the GPU. */
export interface GpuLiftedLayer extends LiftedParams {
  M: number;
  /** element offset of this layer's Ŝ0 (H, N, M) in `GpuLifted.s0` */
  s0Off: number;
  /** writes mode (the gate is trained) */
  writes: boolean;
  fwd: LiftedKernel;
  bwd: LiftedBackwardKernel;
  dbp: DbpKernel;
}

/**
 * Vectors of one layer's lifted forward / backward, all (B·T, H·N): the kernels' own fields
 * (`k`, `v`: the key and value that write into S, after the k_a modification and the v-first mix).
 */
export type LiftedVectors = Pick<LiftedForwardArgs, "B" | "T" | "kk" | "r" | "d" | "a" | "k" | "v">;

/**
 * The step's vectors DBP measures: `n` entries `row·stride + kind` in `idx` (kind 0 kk, 1 r,
 * 2 the written k; writes-mode layers should list their k rows, with stride 3).
 */
export interface DbpRows {
  idx: GPUBuffer;
  n: number;
  /** entries per row of the encoding: 2 (kk, r; the default) or 3 (kk, r, k) */
  stride?: 2 | 3;
  /** add to the covariance of earlier micro-batches of the same step */
  accumulate: boolean;
}

/** DBP losses after a step, per lifted layer (mean over heads) and over all lifted layers. */
export interface DbpLosses {
  /** ‖offdiag(C)‖² / M², mean over lifted layers and heads */
  decorrelationLoss: number;
  /** Σ_{i≠j} C_ij² / (C_ii C_jj) / M², mean over lifted layers and heads */
  correlationLoss: number;
  /** per layer (undefined without a branch): [decorrelation, correlation] means over heads */
  perLayer: ([number, number] | undefined)[];
}

/**
 * Gradient outputs of `GpuLifted.recordBackward`: `dkk` … `dv` (the kernel's outputs) are added
 * to, the gradients of kk, r, d, a and of the written k, v.
 */
export interface LiftedGradOutputs
  extends Pick<LiftedBackwardArgs, "dkk" | "dr" | "dd" | "da" | "dk" | "dv"> {
  /** gradient of the branch output (the GroupNorm input's gradient) (B·T, H·N) */
  dy: GPUBuffer;
  /** batch-summed dL/dŜ0, written at the layer's `s0Off` (layout of `GpuLifted.s0`) */
  dLifted: GPUBuffer;
  /** batch-summed dL/dg, written at the layer's `gateOff` (0 in memory mode) */
  dLiftedGate?: GPUBuffer;
}

/** What the running lifted state (`GpuLiftedState`) needs of its set (a `GpuLifted`). */
export interface LiftedStateSource {
  readonly gpu: Gpu;
  readonly config: RwkvConfig;
  readonly layers: readonly (GpuLiftedLayer | undefined)[];
  /** every lifted layer's Ŝ0, concatenated */
  readonly s0: GPUBuffer;
  /** elements of `s0` */
  readonly size: number;
}
