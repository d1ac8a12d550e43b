/**
 * Live-buffer accounting: how many buffers each device has created and not yet destroyed.
 *
 * `GPUDevice.prototype.createBuffer` and `GPUBuffer.prototype.destroy` are wrapped once,
 * process-wide ({@link installBufferTracking}, called by `requestGpu`), so every buffer counts
 * whether it came through the helpers of `buffers.ts` or straight from the device. A buffer
 * counts once however often it is destroyed. Listeners ({@link onBufferDestroyed}) let caches
 * that hold buffers (the recorder's bind groups) drop them when they are freed, and
 * {@link onBufferCreated} lets a benchmark account live buffers by label.
 *
 * @module
 */
interface DeviceCount {
  live: number;
}

const counts = new WeakMap<GPUDevice, DeviceCount>();
/** Live buffers → the count of the device that made them (weak: a lost buffer is not kept). */
const owner = new WeakMap<GPUBuffer, DeviceCount>();
const listeners = new Set<(b: GPUBuffer) => void>();
const creations = new Set<(b: GPUBuffer, d: GPUBufferDescriptor) => void>();
let installed = false;

function countOf(device: GPUDevice): DeviceCount {
  let c = counts.get(device);
  if (!c) counts.set(device, c = { live: 0 });
  return c;
}

/** Wrap `createBuffer` / `destroy` once so that {@link liveBuffers} counts every buffer. */
export function installBufferTracking(): void {
  if (installed || typeof GPUDevice === "undefined") return;
  installed = true;
  const proto = GPUDevice.prototype as unknown as { createBuffer: GPUDevice["createBuffer"] };
  const create = proto.createBuffer;
  proto.createBuffer = function (this: GPUDevice, d: GPUBufferDescriptor): GPUBuffer {
    const b = create.call(this, d);
    const c = countOf(this);
    c.live++;
    owner.set(b, c);
    for (const f of creations) f(b, d);
    return b;
  };
  const destroy = GPUBuffer.prototype.destroy;
  GPUBuffer.prototype.destroy = function (this: GPUBuffer) {
    const c = owner.get(this);
    if (c) {
      c.live--;
      owner.delete(this);
      for (const f of listeners) f(this);
    }
    destroy.call(this);
  } as GPUBuffer["destroy"];
}

/**
 * Buffers created on `gpu`'s device (since tracking was installed) and not yet destroyed.
 *
 * @example
 * ```ts ignore
 * const before = liveBuffers(gpu);
 * await tuneState(model, ds, { steps: 1 });
 * console.assert(liveBuffers(gpu) === before);
 * ```
 */
export function liveBuffers(gpu: { device: GPUDevice }): number {
  installBufferTracking();
  return countOf(gpu.device).live;
}

/** Call `f` with each tracked buffer when it is destroyed (the first time). */
export function onBufferDestroyed(f: (b: GPUBuffer) => void): void {
  installBufferTracking();
  listeners.add(f);
}

/** Call `f` with each buffer created from now on and its descriptor. */
export function onBufferCreated(f: (b: GPUBuffer, d: GPUBufferDescriptor) => void): void {
  installBufferTracking();
  creations.add(f);
}
