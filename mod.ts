/**
 * State tuning of RWKV-7 language models on WebGPU: load a model, tokenize, tune a state,
 * generate, save the state, draw the figures.
 *
 * ```ts ignore
 * import { getGpu, GpuModel, loadModel } from "./mod.ts";
 * const { weights } = await loadModel("RWKV-x070-World-0.1B.pth");
 * const model = await GpuModel.create(await getGpu(), weights);
 * ```
 *
 * The rest lives in subpath entry points (deno.json `exports`): `./eval` (the harness and
 * statistics), `./test-time` (guided test-time scaling), `./parts` (kernel-upscaled states,
 * DBP, LoRA), `./train` (pretraining, checkpoints, the trainable-parts interface), `./formats`
 * (safetensors, pth, pickle, zip), `./kernels` (recorder, buffers, pipelines, kernel wrappers,
 * the backward), `./plot`, `./serve` and `./experiments`.
 *
 * @module
 */

// GPU
export { describeGpu, getGpu, NoGpuError, tryGetGpu } from "./lib/gpu/device.ts";
export type { Gpu, LimitsMode, RequestedLimits, RequestGpuOptions } from "./lib/gpu/device.ts";

// Models and states
export type {
  DType,
  LayerState,
  LayerWeights,
  RwkvConfig,
  RwkvState,
  RwkvWeights,
  Tensor,
  TensorFile,
} from "./lib/model/types.ts";
export { cloneState, zeroState } from "./lib/model/types.ts";
export { countParams, loadModel, loadModelFromBytes } from "./lib/model/load.ts";
export type { CheckpointFormat, LoadedModel } from "./lib/model/load.ts";
export { OFFICIAL_SHAPES, randomWeights, tinyConfig } from "./lib/model/random.ts";
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
export { GpuState } from "./lib/model/gpu_state.ts";
export { refForward, type RefForwardResult } from "./lib/ref/model.ts";
export { formatPlan, memoryPlan } from "./lib/model/memory_plan.ts";
export type { MemoryPlan, MemoryPlanOptions, PlanItem } from "./lib/model/memory_plan.ts";
export { PthError } from "./lib/model/pth.ts";
export { SafetensorsError } from "./lib/model/safetensors.ts";
export { PickleError } from "./lib/model/pickle.ts";
export { ZipError } from "./lib/model/zip.ts";

// Tokenizers
export {
  ByteTokenizer,
  END_OF_TEXT,
  loadTokenizer,
  loadWorldTokenizer,
  resolveTokenizer,
  StreamDecoder,
  type Tokenizer,
  WORLD_VOCAB_FILE,
  WorldTokenizer,
} from "./lib/tokenizer/mod.ts";

// Generation
export {
  DEFAULT_SAMPLING,
  sampleToken,
  type SamplingOptions,
  type SamplingOptionsInput,
  SamplingOptionsSchema,
} from "./lib/generate/sampler.ts";
export {
  generate,
  type GeneratedChunk,
  type GenerateOptions,
  generateText,
  type GenerationResult,
  type LanguageModel,
  StopMatcher,
  type StopReason,
} from "./lib/generate/generate.ts";
export {
  gpuGenerate,
  type GpuGenerateExtras,
  type GpuGenerateOptions,
  gpuGenerateText,
} from "./lib/generate/gpu_generate.ts";
export { greedyComplete } from "./lib/generate/greedy.ts";

// Datasets
export {
  type Batch,
  buildDataset,
  DataError,
  type DataOptions,
  DataOptionsSchema,
  type Dataset,
  type Example,
  loadDataset,
  parseJsonl,
} from "./lib/train/data.ts";
export { type Skill, type SkillItem, skillRows, SKILLS } from "./lib/train/synthetic.ts";

// State tuning
export {
  type HistoryRow,
  NonFiniteError,
  tune,
  type TuneOptions,
  TuneOptionsSchema,
  type TuneResult,
  type TuneRunResult,
  tuneState,
} from "./lib/train/tune.ts";
export { StatePart, type StatePartOptions } from "./lib/train/state_part.ts";
export { CheckpointError } from "./lib/train/checkpoint.ts";
export { skillAccuracy, skillAccuracyGpu, type SkillEval } from "./lib/train/skills_eval.ts";

// State files
export {
  loadState,
  parseState,
  parseStateAsync,
  saveState,
  serializeState,
  StateFileError,
  type StateFormat,
  type WkvStates,
} from "./lib/train/state_file.ts";

// Figures and progress
export {
  display,
  Figure,
  figure,
  type FigureSpec,
  heatmapFigure,
  lineFigure,
  LivePlot,
  PALETTE,
  saveFigure,
  type Series,
} from "./lib/plot/mod.ts";
export { lossFigure } from "./lib/train/tune.ts";
export { createProgress, type Progress, type ProgressOptions } from "./lib/plot/progress.ts";
export { Rng } from "./lib/util/rng.ts";
