/**
 * WebGPU adapter and device acquisition.
 *
 * Library functions take a {@link Gpu} (so Node users or notebooks can bring their own
 * `GPUDevice`); {@link getGpu} is the convenience that asks `navigator.gpu` once and caches it.
 *
 * @module
 */

/** What the project needs to know about the device it runs on. */
export interface Gpu {
  /** The WebGPU device; every buffer and pipeline of the project is created on it. */
  device: GPUDevice;
  /** Human-readable adapter description (for example `llvmpipe (LLVM 15.0.6, 256 bits)`). */
  description: string;
  /** True for software adapters such as Mesa's llvmpipe. */
  isFallback: boolean;
  /** The limits the device was created with (the adapter's own, not the spec defaults). */
  limits: GPUSupportedLimits;
  /** Whether `timestamp-query` is enabled (per-kernel timing). */
  hasTimestamps: boolean;
  /** Whether `shader-f16` is enabled (f16 weight storage). */
  hasF16: boolean;
  /** Whether `subgroups` is enabled. */
  hasSubgroups: boolean;
}

/** Options for {@link requestGpu}. */
export interface RequestGpuOptions {
  /** Prefer a high-performance adapter (default true). */
  highPerformance?: boolean;
  /** Print what was obtained to stderr (default false). */
  verbose?: boolean;
}

const LIMIT_KEYS = [
  "maxBufferSize",
  "maxTextureDimension2D",
  "maxStorageBufferBindingSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupSizeZ",
  "maxComputeWorkgroupsPerDimension",
  "maxStorageBuffersPerShaderStage",
  "maxBindGroups",
  "maxUniformBufferBindingSize",
] as const;

/** The error thrown when no WebGPU adapter exists, with what to install. */
export class NoGpuError extends Error {
  constructor(detail: string) {
    super(
      `No WebGPU adapter is available (${detail}). Install a GPU driver with Vulkan support ` +
        `(NVIDIA/AMD/Intel), or Mesa's software rasteriser for CPU-only machines ` +
        `(Debian/Ubuntu: apt-get install mesa-vulkan-drivers libgl1-mesa-dri), then retry.`,
    );
    this.name = "NoGpuError";
  }
}

/**
 * Ask the platform for an adapter and create a device with the adapter's own limits.
 *
 * @param options adapter preference and verbosity
 * @returns the device with its description and capabilities
 * @throws {NoGpuError} when `navigator.gpu` is missing or no adapter is found
 * @example
 * ```ts ignore
 * const gpu = await requestGpu({ verbose: true });
 * console.log(gpu.description);
 * ```
 */
export async function requestGpu(options: RequestGpuOptions = {}): Promise<Gpu> {
  if (typeof navigator === "undefined" || !("gpu" in navigator) || !navigator.gpu) {
    throw new NoGpuError("navigator.gpu is undefined in this runtime");
  }
  const adapter = await navigator.gpu.requestAdapter({
    powerPreference: options.highPerformance === false ? "low-power" : "high-performance",
  });
  if (!adapter) throw new NoGpuError("navigator.gpu.requestAdapter() returned null");
  const requiredLimits: Record<string, number> = {};
  for (const k of LIMIT_KEYS) {
    const v = (adapter.limits as unknown as Record<string, number>)[k];
    if (typeof v === "number") requiredLimits[k] = v;
  }
  const wanted: GPUFeatureName[] = ["timestamp-query", "shader-f16", "subgroups" as GPUFeatureName];
  const requiredFeatures = wanted.filter((f) => adapter.features.has(f));
  const device = await adapter.requestDevice({
    label: "rwkv7-device",
    requiredLimits,
    requiredFeatures,
  });
  const info = adapter.info;
  const gpu: Gpu = {
    device,
    description: info.description || `${info.vendor} ${info.architecture} ${info.device}`.trim(),
    isFallback: Boolean((info as unknown as { isFallbackAdapter?: boolean }).isFallbackAdapter),
    limits: device.limits,
    hasTimestamps: device.features.has("timestamp-query"),
    hasF16: device.features.has("shader-f16"),
    hasSubgroups: device.features.has("subgroups"),
  };
  device.lost.then((lost) => {
    if (lost.reason !== "destroyed") {
      console.error(
        `WebGPU device lost (${lost.reason}): ${lost.message}. Recreate the model with a new ` +
          `device; a long run can be continued with its last checkpoint (resume).`,
      );
    }
  });
  if (options.verbose) console.error(describeGpu(gpu));
  return gpu;
}

/** One line describing the adapter and the limits that matter to this project. */
export function describeGpu(gpu: Gpu): string {
  const l = gpu.limits;
  const mib = (n: number) => `${Math.round(n / 2 ** 20)} MiB`;
  return `adapter: ${gpu.description}${gpu.isFallback ? " (software)" : ""}; ` +
    `maxBuffer ${mib(l.maxBufferSize)}, maxStorageBinding ${mib(l.maxStorageBufferBindingSize)}, ` +
    `workgroup storage ${l.maxComputeWorkgroupStorageSize} B, ` +
    `invocations ${l.maxComputeInvocationsPerWorkgroup}; ` +
    `features: ${
      [
        gpu.hasTimestamps && "timestamp-query",
        gpu.hasF16 && "shader-f16",
        gpu.hasSubgroups &&
        "subgroups",
      ].filter(Boolean).join(", ") || "none"
    }`;
}

let cached: Promise<Gpu> | undefined;

/**
 * The process-wide device, created on first use with {@link requestGpu}.
 *
 * @example
 * ```ts ignore
 * const gpu = await getGpu();
 * ```
 */
export function getGpu(options: RequestGpuOptions = {}): Promise<Gpu> {
  if (!cached) {
    cached = requestGpu(options).catch((e) => {
      cached = undefined;
      throw e;
    });
  }
  return cached;
}

/** Like {@link getGpu} but resolves to `null` instead of throwing when there is no adapter. */
export async function tryGetGpu(): Promise<Gpu | null> {
  try {
    return await getGpu();
  } catch (e) {
    if (e instanceof NoGpuError) return null;
    throw e;
  }
}
