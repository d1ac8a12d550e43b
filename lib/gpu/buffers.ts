/**
 * Labelled GPU buffers: creation, upload and (rare) readback.
 *
 * Every CPU sync costs at least ~11 ms in Deno (PLATFORM.md), so readbacks belong at the end of
 * a batch of work, never inside a per-token loop.
 *
 * @module
 */
import type { Gpu } from "./device.ts";

/** Usage for buffers that kernels read and write and that may be copied out. */
export const STORAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/** Round `n` up to a multiple of `m`. */
export function roundUp(n: number, m: number): number {
  return Math.ceil(n / m) * m;
}

/**
 * Create a labelled storage buffer of `bytes` bytes (rounded up to 16, at least 16), zeroed.
 *
 * @throws {RangeError} when the size exceeds the device's `maxBufferSize`
 */
export function createStorage(gpu: Gpu, label: string, bytes: number): GPUBuffer {
  const size = Math.max(16, roundUp(bytes, 16));
  if (size > gpu.limits.maxBufferSize) {
    throw new RangeError(
      `buffer "${label}" needs ${size} bytes but this adapter allows at most ` +
        `${gpu.limits.maxBufferSize}; use a smaller model, batch or context`,
    );
  }
  return gpu.device.createBuffer({ label, size, usage: STORAGE });
}

/** Create a storage buffer holding `data` (f32, u32 or i32 values). */
export function uploadStorage(
  gpu: Gpu,
  label: string,
  data: Float32Array | Uint32Array | Int32Array,
): GPUBuffer {
  const buf = createStorage(gpu, label, data.byteLength);
  writeStorage(gpu, buf, data);
  return buf;
}

/** Write `data` into `buf` at `byteOffset` (queued; ordered before later submits). */
export function writeStorage(
  gpu: Gpu,
  buf: GPUBuffer,
  data: Float32Array | Uint32Array | Int32Array,
  byteOffset = 0,
): void {
  if (data.byteLength === 0) return;
  // writeBuffer requires a multiple of 4 bytes, which typed 32-bit arrays always are.
  gpu.device.queue.writeBuffer(
    buf,
    byteOffset,
    data.buffer as ArrayBuffer,
    data.byteOffset,
    data.byteLength,
  );
}

/**
 * Copy `bytes` bytes from `src` (starting at `byteOffset`) back to the CPU.
 * One CPU sync: call it once per batch of work.
 */
export async function readBytes(
  gpu: Gpu,
  src: GPUBuffer,
  bytes: number = src.size,
  byteOffset = 0,
): Promise<ArrayBuffer> {
  const size = roundUp(bytes, 4);
  const staging = gpu.device.createBuffer({
    label: `readback(${src.label})`,
    size: Math.max(4, size),
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const enc = gpu.device.createCommandEncoder({ label: `readback(${src.label})` });
  enc.copyBufferToBuffer(src, byteOffset, staging, 0, size);
  gpu.device.queue.submit([enc.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const out = staging.getMappedRange().slice(0, bytes);
  staging.unmap();
  staging.destroy();
  return out;
}

/** Read `count` f32 values from `src` starting at element `offset`. */
export async function readF32(
  gpu: Gpu,
  src: GPUBuffer,
  count: number,
  offset = 0,
): Promise<Float32Array> {
  return new Float32Array(await readBytes(gpu, src, count * 4, offset * 4));
}

/** Read `count` u32 values from `src` starting at element `offset`. */
export async function readU32(
  gpu: Gpu,
  src: GPUBuffer,
  count: number,
  offset = 0,
): Promise<Uint32Array> {
  return new Uint32Array(await readBytes(gpu, src, count * 4, offset * 4));
}
