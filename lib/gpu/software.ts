/**
 * The one test of whether a WebGPU adapter is a software rasteriser on the CPU (llvmpipe,
 * lavapipe, SwiftShader, softpipe, WARP). Kernel choices (textures, tiles, WKV form, workgroup
 * sizes) and `gpu-check`'s refusal of software fallbacks all ask this module.
 *
 * @module
 */
import type { Gpu } from "./device.ts";

/** Names of software WebGPU adapters as their descriptions show them. */
const SOFTWARE = /llvmpipe|lavapipe|swiftshader|softpipe|software|warp|basic render/i;

/** What the software check reads of a {@link Gpu}. */
export type AdapterIdentity = Pick<Gpu, "isFallback" | "description">;

/**
 * Why `gpu` is a software adapter (the matched name, or the fallback flag), or null for
 * hardware.
 *
 * @example
 * ```ts
 * import { softwareReason } from "./software.ts";
 * const gpu = { isFallback: false, description: "llvmpipe (LLVM 15.0.6, 256 bits)" };
 * if (softwareReason(gpu) === null) throw new Error("llvmpipe is software");
 * ```
 */
export function softwareReason(gpu: AdapterIdentity): string | null {
  const m = SOFTWARE.exec(gpu.description);
  if (m) return `the adapter is "${gpu.description}" (${m[0]}: a software rasteriser on the CPU)`;
  if (gpu.isFallback) return `the adapter "${gpu.description}" reports isFallbackAdapter`;
  return null;
}

/** True for software adapters (llvmpipe, lavapipe, SwiftShader, …): {@link softwareReason} ≠ null. */
export function isSoftwareAdapter(gpu: AdapterIdentity): boolean {
  return softwareReason(gpu) !== null;
}
