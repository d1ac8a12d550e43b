/**
 * State tuning of RWKV-7 language models on WebGPU.
 *
 * ```ts ignore
 * import { getGpu, GpuModel, loadModel } from "./mod.ts";
 * const { weights } = await loadModel("RWKV-x070-World-0.1B.pth");
 * const model = await GpuModel.create(await getGpu(), weights);
 * ```
 *
 * @module
 */
export * from "./lib/gpu/device.ts";
export * from "./lib/model/types.ts";
export * from "./lib/model/dtype.ts";
export * from "./lib/model/safetensors.ts";
export * from "./lib/model/zip.ts";
export * from "./lib/model/pickle.ts";
export * from "./lib/model/pth.ts";
export * from "./lib/model/load.ts";
export * from "./lib/model/random.ts";
export {
  GpuModel,
  type GpuModelOptions,
  type GpuSession,
  type LogitsMode,
  type RecordForwardArgs,
} from "./lib/model/gpu_model.ts";
export type { UploadOptions } from "./lib/model/gpu_weights.ts";
export type { WeightDtype } from "./lib/kernels/matmul.ts";
export type { WkvFormOption } from "./lib/kernels/wkv_form.ts";
export * from "./lib/model/memory_plan.ts";
export { GpuState } from "./lib/model/gpu_state.ts";
export { refForward } from "./lib/ref/model.ts";
export * from "./lib/util/rng.ts";
export * from "./lib/plot/progress.ts";
export * from "./lib/util/stats.ts";
export * from "./lib/tokenizer/mod.ts";
export * from "./lib/generate/sampler.ts";
export * from "./lib/generate/generate.ts";
export {
  gpuGenerate,
  type GpuGenerateExtras,
  type GpuGenerateOptions,
  gpuGenerateText,
} from "./lib/generate/gpu_generate.ts";
export * from "./lib/train/data.ts";
export * from "./lib/train/synthetic.ts";
export * from "./lib/train/schedule.ts";
export * from "./lib/train/state_file.ts";
export * from "./lib/plot/mod.ts";
export * from "./lib/eval/tasks.ts";
export * from "./lib/eval/evaluate.ts";
export * from "./lib/eval/scorer.ts";
export * from "./lib/eval/report.ts";
export * from "./lib/eval/metrics.ts";
export { type RunningServer, type ServerOptions, startServer } from "./lib/serve/server.ts";
export * from "./lib/train/tune.ts";
export { StatePart, type StatePartOptions } from "./lib/train/state_part.ts";
export type {
  MicroBatchContext,
  PartBackwardArgs,
  PartTensor,
  TrainablePart,
} from "./lib/train/parts.ts";
export {
  type Checkpoint,
  CheckpointError,
  hasCheckpoint,
  loadCheckpoint,
  prepareOutDir,
  saveCheckpoint,
} from "./lib/train/checkpoint.ts";
export { skillAccuracy, skillAccuracyGpu, type SkillEval } from "./lib/train/skills_eval.ts";
export * from "./lib/generate/greedy.ts";
export {
  createGradWeights,
  GpuBackward,
  type GpuBackwardOptions,
} from "./lib/model/gpu_backward.ts";
export * from "./lib/train/pretrain.ts";
export * from "./lib/train/pretrain_gpu.ts";
export * from "./lib/ref/lifted_types.ts";
export * from "./lib/parts/config.ts";
export * from "./lib/parts/support.ts";
export * from "./lib/parts/dbp.ts";
export { LiftedPart, type LiftedPartOptions } from "./lib/parts/lifted_part.ts";
export { GpuLifted, GpuLiftedState, loadLifted, saveLifted } from "./lib/model/gpu_lifted.ts";
export * from "./lib/tts/guide.ts";
export * from "./lib/tts/local_guide.ts";
export * from "./lib/tts/http_guide.ts";
export * from "./lib/tts/tts.ts";
export * from "./lib/tts/prompted_guide.ts";
export * from "./lib/tts/scaling.ts";
export * from "./lib/model/lora.ts";
export * from "./lib/model/lora_file.ts";
export { GpuLora, type GpuLoraModule } from "./lib/model/gpu_lora.ts";
export { createLoraPart, LoraPart } from "./lib/parts/lora.ts";
