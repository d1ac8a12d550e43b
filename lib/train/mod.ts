/**
 * The training entry point (`@rwkv7/state-tuning/train`): the pieces beneath `tune` and
 * `tuneState` (in the root module). The trainable-parts interface for writing a new part,
 * checkpoints (crash-safe resume), the learning-rate schedule, batching and rendering of
 * examples, the synthetic skill corpus, and pretraining of small models from scratch (CPU
 * reference and GPU).
 *
 * ```ts ignore
 * import { tune } from "@rwkv7/state-tuning";
 * import { hasCheckpoint, loadCheckpoint } from "@rwkv7/state-tuning/train";
 * if (await hasCheckpoint("runs/a")) console.log((await loadCheckpoint("runs/a")).step);
 * await tune(model, dataset, { parts: [part], outDir: "runs/a", resume: true });
 * ```
 *
 * @module
 */
export {
  type MicroBatchContext,
  type PartBackwardArgs,
  type PartTensor,
  trainableCount,
  type TrainablePart,
} from "./parts.ts";
export type { HistoryRow } from "./history.ts";
export {
  type Checkpoint,
  CheckpointError,
  hasCheckpoint,
  loadCheckpoint,
  prepareOutDir,
  saveCheckpoint,
} from "./checkpoint.ts";
export { learningRate, type LrSchedule } from "./schedule.ts";
export {
  type BadRow,
  type Batch,
  decodeJsonl,
  makeBatch,
  type RenderedRow,
  renderRow,
  tokenizeRow,
} from "./data.ts";
export { makeItem, pretrainCorpus, renderWithInstruction } from "./synthetic.ts";
export {
  pretrain,
  pretrainLoop,
  type PretrainOptions,
  PretrainOptionsSchema,
  type PretrainRow,
  type SequenceSource,
} from "./pretrain.ts";
export { pretrainGpu, readGpuWeights } from "./pretrain_gpu.ts";
