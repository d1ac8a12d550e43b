/**
 * The adapter check of `deno task gpu-check`: what the adapter is, and whether it is a software
 * fallback (whose numbers would describe the CPU, not a GPU).
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";

/** Names of software WebGPU adapters as their descriptions show them. */
const SOFTWARE = /llvmpipe|lavapipe|swiftshader|softpipe|software|warp|basic render/i;

/**
 * Why `gpu` is a software adapter (the matched name, or the fallback flag), or null for
 * hardware.
 *
 * @example
 * ```ts
 * import { softwareReason } from "./adapter.ts";
 * const gpu = { isFallback: false, description: "llvmpipe (LLVM 15.0.6, 256 bits)" };
 * if (softwareReason(gpu) === null) throw new Error("llvmpipe is software");
 * ```
 */
export function softwareReason(gpu: Pick<Gpu, "isFallback" | "description">): string | null {
  const m = SOFTWARE.exec(gpu.description);
  if (m) return `the adapter is "${gpu.description}" (${m[0]}: a software rasteriser on the CPU)`;
  if (gpu.isFallback) return `the adapter "${gpu.description}" reports isFallbackAdapter`;
  return null;
}

/** The adapter facts written at the top of the report. */
export interface AdapterFacts {
  description: string;
  software: boolean;
  softwareReason: string | null;
  features: string[];
  limits: Record<string, number>;
}

/** The facts of `gpu` (features enabled on the device, the limits it was created with). */
export function adapterFacts(gpu: Gpu): AdapterFacts {
  const limits: Record<string, number> = {};
  for (
    const k of [
      "maxStorageBuffersPerShaderStage",
      "maxComputeWorkgroupStorageSize",
      "maxComputeInvocationsPerWorkgroup",
      "maxStorageBufferBindingSize",
      "maxBufferSize",
    ] as const
  ) limits[k] = gpu.limits[k];
  const features = [
    gpu.hasTimestamps && "timestamp-query",
    gpu.hasF16 && "shader-f16",
    gpu.hasSubgroups && "subgroups",
  ].filter((f): f is string => typeof f === "string");
  const why = softwareReason(gpu);
  return {
    description: gpu.description,
    software: why !== null,
    softwareReason: why,
    features,
    limits,
  };
}
