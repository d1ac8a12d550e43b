/**
 * Objects made once per device and key (kernel sets that own small placeholder buffers), so
 * that runs which create them again and again do not leave a copy of those buffers behind each
 * time. The object lives as long as its device; a failed creation is forgotten and retried.
 *
 * @module
 */
import type { Gpu } from "./device.ts";

const perDevice = new WeakMap<GPUDevice, Map<string, Promise<unknown>>>();

/**
 * `make()`'s result for `gpu`'s device and `key`, made on first use.
 *
 * @example
 * ```ts ignore
 * const adam = await shared(gpu, "adam", () => AdamKernel.create(gpu));
 * ```
 */
export function shared<T>(gpu: Gpu, key: string, make: () => Promise<T>): Promise<T> {
  let m = perDevice.get(gpu.device);
  if (!m) perDevice.set(gpu.device, m = new Map());
  let p = m.get(key) as Promise<T> | undefined;
  if (!p) {
    p = make().catch((e) => {
      m.delete(key);
      throw e;
    });
    m.set(key, p);
  }
  return p;
}
