/**
 * The kernels entry point (`@rwkv7/state-tuning/kernels`), for code that builds on the WebGPU
 * pieces directly: the device, the `Recorder` (records dispatches, one submit), labelled
 * buffers, the pipeline cache and shader sources, WebGPU's default limits, one host wrapper per
 * kernel (checks shapes, records a dispatch), the whole-model backward `GpuBackward` with its
 * weight-gradient buffers, and the memory budget.
 *
 * It lives in `lib/model/` because it re-exports `lib/model/` pieces (the layer of its highest
 * import, docs/ARCHITECTURE.md "Layers").
 *
 * ```ts ignore
 * import { getGpu, GpuModel, loadModel } from "@rwkv7/state-tuning";
 * import { GpuBackward, readF32, Recorder } from "@rwkv7/state-tuning/kernels";
 * const gpu = await getGpu();
 * const model = await GpuModel.create(gpu, (await loadModel("model.pth")).weights);
 * const backward = await GpuBackward.create(model);
 * const rec = new Recorder(gpu, "my.backward");
 * // tokens, targets, mask: (B, T) GPU buffers; init: the initial state
 * const grads = backward.record(rec, { B, T, tokens, targets, mask, init });
 * rec.submit();
 * const [loss] = await readF32(gpu, grads.stats, 4);
 * ```
 *
 * @module
 */
// the device, recording, buffers, pipelines, limits
export {
  type Gpu,
  type LimitsMode,
  type RequestedLimits,
  requestGpu,
  type RequestGpuOptions,
} from "../gpu/device.ts";
export { type Binding, f32bits, type Groups, Recorder } from "../gpu/recorder.ts";
export {
  createStorage,
  readBytes,
  readF32,
  readU32,
  STORAGE,
  uploadStorage,
  writeStorage,
} from "../gpu/buffers.ts";
export {
  getPipeline,
  knownShaderNames,
  type PipelineKey,
  provideShaderSources,
  shaderSource,
} from "../gpu/pipeline.ts";
export {
  defaultLimitViolations,
  entryPointBindings,
  WEBGPU_DEFAULT_LIMITS,
} from "../gpu/limits.ts";
export { isSoftwareAdapter, softwareReason } from "../gpu/software.ts";
export { splitGroups } from "../gpu/groups.ts";
export { liveBuffers } from "../gpu/tracking.ts";

// the kernel wrappers
export { Kernels } from "../kernels/kernels.ts";
export { AdamKernel } from "../kernels/adam.ts";
export { ChannelMixKernel } from "../kernels/channel_mix.ts";
export { ChannelMixBackwardKernel } from "../kernels/channel_mix_backward.ts";
export { DbpKernel } from "../kernels/dbp.ts";
export { GatesKernel } from "../kernels/gates.ts";
export { KeyNormKernel } from "../kernels/key_norm.ts";
export { GroupNormBonusKernel } from "../kernels/groupnorm_bonus.ts";
export { HeadCeKernel } from "../kernels/head_ce.ts";
export { EmbedLayerNormKernel } from "../kernels/embed_layernorm.ts";
export { LayerNormKernel } from "../kernels/layernorm.ts";
export { LiftedKernel } from "../kernels/lifted.ts";
export { LiftedBackwardKernel } from "../kernels/lifted_backward.ts";
export { LoraKernel } from "../kernels/lora.ts";
export { MatmulKernel, type MatmulOptions, type WeightDtype } from "../kernels/matmul.ts";
export { MatmulDwKernel } from "../kernels/matmul_dw.ts";
export { MatmulTex } from "../kernels/matmul_tex.ts";
export { HardwareMatmulOptionsSchema } from "../kernels/matmul_tiled.ts";
export { tuneMatmul } from "../kernels/tune.ts";
export { NormBackwardKernel } from "../kernels/norm_backward.ts";
export { SampleKernel } from "../kernels/sample.ts";
export { SumBatchKernel } from "../kernels/sum_batch.ts";
export { TimeMixBackwardKernel } from "../kernels/time_mix_backward.ts";
export { TokenShiftKernel } from "../kernels/token_shift.ts";
export { TokenShiftBackwardKernel } from "../kernels/token_shift_backward.ts";
export { Wkv7Kernel } from "../kernels/wkv7.ts";
export { Wkv7BackwardKernel } from "../kernels/wkv7_backward.ts";
export { Wkv7ChunkedKernel } from "../kernels/wkv7_chunked.ts";
export { Wkv7ChunkedBackwardKernel } from "../kernels/wkv7_chunked_backward.ts";

// the model on the GPU: weights, the backward, the memory budget
export {
  destroyWeights,
  type GpuLayerWeights,
  type GpuWeights,
  type UploadOptions,
  uploadWeights,
} from "./gpu_weights.ts";
export {
  createGradWeights,
  GpuBackward,
  type GpuBackwardOptions,
  type GradBuffers,
  type InitialState,
  type LossAndGradArgs,
} from "./gpu_backward.ts";
export {
  configParams,
  type MemoryPlanOptions,
  MemoryPlanOptionsSchema,
  PLAN_CATEGORIES,
  type PlanCategory,
  type PlanLimits,
  planSkipReason,
} from "./memory_plan.ts";
