/**
 * The parts entry point (`@rwkv7/state-tuning/parts`): the trainable parts beyond the plain
 * state, for `tune` (docs/MATH.md §5–6). The kernel-upscaled ("lifted") state `LiftedPart`
 * with its support selection, decorrelated backpropagation (DBP) and lifted-state files; the
 * LoRA baseline `LoraPart` with its options, adapters, files and merged-model export.
 *
 * ```ts ignore
 * import { tune } from "@rwkv7/state-tuning";
 * import { createLoraPart, saveLora } from "@rwkv7/state-tuning/parts";
 * const part = await createLoraPart(model, { r: 8, alpha: 16 });
 * await tune(model, dataset, { parts: [part], steps: 100 });
 * ```
 *
 * @module
 */
// kernel-upscaled states and DBP
export * from "./config.ts";
export {
  collectHeadVectors,
  gaussianKernelMatrix,
  initLiftedLayers,
  initLiftedState,
  inverseSqrtSym,
  kmeansPlusPlus,
  medianGamma,
  nystromWhitening,
  randomSupport,
  symmetricEigen,
} from "./support.ts";
export * from "./dbp.ts";
export { LiftedPart, type LiftedPartOptions } from "./lifted_part.ts";
export {
  checkLiftedState,
  type FeatureMap,
  liftedGate,
  type LiftedLayers,
  type LiftedRead,
  liftedRead,
  type LiftedState,
} from "../ref/lifted_types.ts";
export {
  type DbpLosses,
  type DbpRows,
  GpuLifted,
  type GpuLiftedLayer,
  GpuLiftedState,
  type LiftedGradOutputs,
  type LiftedVectors,
  loadLifted,
  saveLifted,
} from "../model/gpu_lifted.ts";

// LoRA
export { createLoraPart, LoraPart } from "./lora.ts";
export * from "../model/lora.ts";
export * from "../model/lora_file.ts";
export { GpuLora, type GpuLoraModule } from "../model/gpu_lora.ts";
