/**
 * The formats entry point (`@rwkv7/state-tuning/formats`): the checkpoint file formats read and
 * written without Python. safetensors; PyTorch `.pth` (a zip of a restricted, safe pickle
 * subset: no code runs); the zip and pickle layers underneath; the f16/bf16 conversions; and
 * the mapping between tensor files and RWKV-7 weights.
 *
 * ```ts ignore
 * import { parsePth, serializeSafetensors } from "@rwkv7/state-tuning/formats";
 * const file = parsePth(await Deno.readFile("model.pth"), "model.pth");
 * await Deno.writeFile("model.safetensors", serializeSafetensors(file.tensors));
 * ```
 *
 * @module
 */
export {
  parseSafetensors,
  readSafetensors,
  SafetensorsError,
  serializeSafetensors,
} from "./safetensors.ts";
export { pickleStateDict, type PickleTensorEntry } from "./pickle_write.ts";
export { parsePth, parsePthAsync, PthError, type PthWriteOptions, serializePth } from "./pth.ts";
export { PickleError, type PyValue, TorchStorage, TorchTensor, unpickle } from "./pickle.ts";
export {
  writeZip,
  ZipArchive,
  type ZipEntry,
  ZipError,
  type ZipInput,
  type ZipReadOptions,
  ZipReadOptionsSchema,
  type ZipWriteOptions,
} from "./zip.ts";
export {
  bf16ToF32,
  f16BitsToNumber,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  numberToF16Bits,
} from "./dtype.ts";
export {
  CheckpointError,
  type CheckpointFormat,
  detectFormat,
  readTensorFile,
  tensorFileFromBytes,
  tensorsFromWeights,
  weightsFromTensors,
} from "./load.ts";
export { validateConfig } from "./random.ts";
export type { DType, Tensor, TensorFile } from "./types.ts";
