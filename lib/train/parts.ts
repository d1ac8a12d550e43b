/**
 * Trainable parts: the one interface through which the tuning loop trains the plain initial
 * state S0, the kernel-upscaled state (Ŝ0 and its gate) and LoRA adapters, without naming any
 * of them. The loop owns the optimiser (Adam moments per tensor, global-norm clipping over
 * every part, the learning-rate schedule), the batches, checkpoints and the history; a part
 * brings its parameters, gradient buffers, learning-rate scale, what the backward needs from
 * it, and its file I/O.
 *
 * One optimiser step with parts `P` (every buffer f32, recorded into one {@link Recorder}):
 *
 * 0. `p.beginStep?.(step, examples, batches)` for each part (e.g. DBP draws the step's sample);
 * 1. for each micro-batch: `GpuBackward.record(rec, { ...batch, ...P[0].backwardArgs(ctx),
 *    ...P[1].backwardArgs(ctx), … })`, then `p.recordGrads(rec, bufs, accumulate)` for each part;
 * 2. global gradient norm over every tensor of every part, clip;
 * 3. Adam on each tensor with lr · `p.lrScale` (· `tensor.lrScale`), then `p.afterUpdate?.(…)`.
 *
 * Parts must agree: at most one part may set `init` (the plain state); none set means every
 * sequence starts from the zero state. `backwardArgs` results are merged left to right.
 *
 * @module
 */
import type { Recorder } from "../gpu/recorder.ts";
import type { Batch, Example } from "./data.ts";
import type { GpuBackwardOptions, GradBuffers, LossAndGradArgs } from "../model/gpu_backward.ts";

/** One trained tensor of a part: its values and its gradient (both `n` f32 on the GPU). */
export interface PartTensor {
  /** checkpoint / file name of the tensor, unique within the part (e.g. `s0`, `lifted.s0`) */
  name: string;
  param: GPUBuffer;
  /** dL/d`param`, summed over the step's micro-batches by {@link TrainablePart.recordGrads} */
  grad: GPUBuffer;
  /** values in `param` and `grad` */
  n: number;
  /** learning-rate factor on top of the part's {@link TrainablePart.lrScale}; default 1 */
  lrScale?: number;
}

/** What a part sees when it prepares one micro-batch of one step. */
export interface MicroBatchContext {
  /** optimiser step, from 0 */
  step: number;
  /** micro-batch slot within the step, from 0 */
  slot: number;
  examples: Example[];
  batch: Batch;
  /** true for the validation loss (no gradient is used; parts must not record step work) */
  validation?: boolean;
}

/** Arguments a part may contribute to {@link GpuBackward.record}. */
export type PartBackwardArgs = Partial<
  Omit<LossAndGradArgs, "B" | "T" | "tokens" | "targets" | "mask">
>;

/** A trainable part (see the module doc for how the loop drives it). */
export interface TrainablePart {
  /** the part's kind, used in logs, history and checkpoint file names: "state", "lifted", "lora" */
  readonly kind: string;
  /** the tensors Adam steps */
  readonly tensors: PartTensor[];
  /** learning-rate factor of the whole part relative to the schedule. */
  readonly lrScale: number;
  /** options the backward needs (LoRA: `{ weightGrads: true }`); merged over all parts */
  readonly backwardOptions?: GpuBackwardOptions;
  /** before the step's micro-batches are recorded: all of them, in slot order */
  beginStep?(step: number, examples: Example[][], batches: Batch[]): void;
  /** this part's share of the backward's arguments for one micro-batch */
  backwardArgs(ctx: MicroBatchContext): PartBackwardArgs;
  /** after one micro-batch's backward: write (`accumulate` false) or add its gradient */
  recordGrads(rec: Recorder, bufs: GradBuffers, accumulate: boolean): void;
  /** after Adam stepped the tensors (LoRA: re-merge weights; lifted: DBP moves R) */
  afterUpdate?(rec: Recorder, step: number): void;
  /** extra numbers for the step's history row (e.g. DBP's decorrelation losses) */
  historyFields?(): Promise<Record<string, number>>;
  /** every tensor needed to restore the part exactly (params and fixed parts such as R) */
  read(): Promise<Record<string, Float32Array>>;
  /** restore what {@link read} returned (checkpoint resume) */
  write(tensors: Record<string, Float32Array>): void;
  /** free the part's GPU buffers */
  destroy(): void;
}

/** Σ n over every tensor of every part: the trainable numbers of a run. */
export function trainableCount(parts: readonly TrainablePart[]): number {
  return parts.reduce((s, p) => s + p.tensors.reduce((t, x) => t + x.n, 0), 0);
}
