/**
 * The adapter check of `deno task gpu-check`: what the adapter is, and whether it is a software
 * fallback (whose numbers would describe the CPU, not a GPU).
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { softwareReason } from "../gpu/software.ts";

export { softwareReason };

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
