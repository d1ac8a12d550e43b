/**
 * WebGPU adapter and device acquisition.
 *
 * Library functions take a {@link Gpu} (so Node users or notebooks can bring their own
 * `GPUDevice`); {@link getGpu} is the convenience that asks `navigator.gpu` once and caches it.
 *
 * @module
 */
import { z } from "zod";
import { installBufferTracking } from "./tracking.ts";

/** What the project needs to know about the device it runs on. */
export interface Gpu {
  /** The WebGPU device; every buffer and pipeline of the project is created on it. */
  device: GPUDevice;
  /** Human-readable adapter description (for example `llvmpipe (LLVM 15.0.6, 256 bits)`). */
  description: string;
  /** True for software adapters such as Mesa's llvmpipe. */
  isFallback: boolean;
  /** The limits the device was created with (see {@link Gpu.requested} for which and why). */
  limits: GPUSupportedLimits;
  /** Which limits were requested and why (print it in logs: {@link describeGpu} does). */
  requested: RequestedLimits;
  /** Whether `timestamp-query` is enabled (per-kernel timing). */
  hasTimestamps: boolean;
  /** Whether `shader-f16` is enabled (f16 weight storage). */
  hasF16: boolean;
  /** Whether `subgroups` is enabled. */
  hasSubgroups: boolean;
}

/**
 * Which limits to request: `"adapter"` (the default) asks for the adapter's own (larger buffers,
 * more bindings: used for speed and size only), `"default"` asks for none, so the device has
 * WebGPU's guaranteed defaults (8 storage buffers per stage, 256 MiB buffers, 128 MiB bindings,
 * 16 KiB workgroup storage, 256 invocations): what every browser and adapter offers. Every
 * pipeline of the project runs on either.
 */
export type LimitsMode = "default" | "adapter";

/** The limits a device was requested with, and why. */
export interface RequestedLimits {
  /** The mode asked for. */
  mode: LimitsMode;
  /** Why (for logs). */
  reason: string;
  /** The `requiredLimits` passed to `requestDevice` (empty in `"default"` mode). */
  limits: Record<string, number>;
}

/** Options for {@link requestGpu}. */
export interface RequestGpuOptions {
  /** Prefer a high-performance adapter (default true). */
  highPerformance?: boolean;
  /** Which limits to request (default `"adapter"`); see {@link LimitsMode}. */
  limits?: LimitsMode;
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
  options = parseOptions(options);
  if (typeof navigator === "undefined" || !("gpu" in navigator) || !navigator.gpu) {
    throw new NoGpuError("navigator.gpu is undefined in this runtime");
  }
  installBufferTracking();
  const adapter = await navigator.gpu.requestAdapter({
    powerPreference: options.highPerformance === false ? "low-power" : "high-performance",
  });
  if (!adapter) throw new NoGpuError("navigator.gpu.requestAdapter() returned null");
  const requested = requestedLimits(adapter, options.limits ?? "adapter");
  const requiredLimits = requested.limits;
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
    requested,
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

const OptionsSchema = z.object({
  highPerformance: z.boolean().optional(),
  limits: z.enum(["default", "adapter"]).optional(),
  verbose: z.boolean().optional(),
}).strict();

function parseOptions(options: RequestGpuOptions): RequestGpuOptions {
  const r = OptionsSchema.safeParse(options);
  if (r.success) return r.data;
  const o = options as Record<string, unknown>;
  if (o.limits !== undefined && o.limits !== "default" && o.limits !== "adapter") {
    throw new TypeError(`limits must be "default" or "adapter", not ${JSON.stringify(o.limits)}`);
  }
  throw new TypeError(
    `bad GPU options ${JSON.stringify(options)}: ` +
      r.error.issues.map((i) => `${i.path.join(".") || "(options)"}: ${i.message}`).join("; "),
  );
}

function requestedLimits(adapter: GPUAdapter, mode: LimitsMode): RequestedLimits {
  if (mode === "default") {
    return {
      mode,
      reason: "WebGPU defaults requested (portability mode: what every adapter and browser offers)",
      limits: {},
    };
  }
  const limits: Record<string, number> = {};
  for (const k of LIMIT_KEYS) {
    const v = (adapter.limits as unknown as Record<string, number>)[k];
    if (typeof v === "number") limits[k] = v;
  }
  return {
    mode,
    reason: "adapter limits requested (larger buffers and bindings allow bigger shapes; " +
      "every pipeline also fits the defaults)",
    limits,
  };
}

/** One line describing the adapter and the limits that matter to this project. */
export function describeGpu(gpu: Gpu): string {
  const l = gpu.limits;
  const mib = (n: number) => `${Math.round(n / 2 ** 20)} MiB`;
  return `adapter: ${gpu.description}${gpu.isFallback ? " (software)" : ""}; ` +
    `maxBuffer ${mib(l.maxBufferSize)}, maxStorageBinding ${mib(l.maxStorageBufferBindingSize)}, ` +
    `workgroup storage ${l.maxComputeWorkgroupStorageSize} B, ` +
    `invocations ${l.maxComputeInvocationsPerWorkgroup}, ` +
    `storage buffers/stage ${l.maxStorageBuffersPerShaderStage}; ` +
    `limits: ${gpu.requested.mode} (${gpu.requested.reason}); ` +
    `features: ${
      [
        gpu.hasTimestamps && "timestamp-query",
        gpu.hasF16 && "shader-f16",
        gpu.hasSubgroups &&
        "subgroups",
      ].filter(Boolean).join(", ") || "none"
    }`;
}

const cached = new Map<LimitsMode, Promise<Gpu>>();

/**
 * The process-wide device for a limits mode, created on first use with {@link requestGpu}
 * (one device per mode; `highPerformance` and `verbose` apply to the first call).
 *
 * @example
 * ```ts ignore
 * const gpu = await getGpu({ limits: "default" });
 * console.log(gpu.requested.reason);
 * ```
 */
export function getGpu(options: RequestGpuOptions = {}): Promise<Gpu> {
  try {
    options = parseOptions(options);
  } catch (e) {
    return Promise.reject(e);
  }
  const mode = options.limits ?? "adapter";
  let p = cached.get(mode);
  if (!p) {
    p = requestGpu({ ...options, limits: mode }).catch((e) => {
      cached.delete(mode);
      throw e;
    });
    cached.set(mode, p);
  }
  return p;
}

/** Like {@link getGpu} but resolves to `null` instead of throwing when there is no adapter. */
export async function tryGetGpu(options: RequestGpuOptions = {}): Promise<Gpu | null> {
  try {
    return await getGpu(options);
  } catch (e) {
    if (e instanceof NoGpuError) return null;
    throw e;
  }
}
