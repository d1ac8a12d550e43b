/**
 * State tuning of RWKV-7 language models on WebGPU.
 *
 * @module
 */
export * from "./lib/gpu/device.ts";
export * from "./lib/model/types.ts";
export * from "./lib/model/safetensors.ts";
