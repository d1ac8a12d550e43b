/**
 * Bind groups reused across submits, and the uniform buffer their parameter blocks live in.
 *
 * A training step or a generation burst records the same dispatches over the same buffers again
 * and again; building every bind group anew on each submit costs a round trip into the WebGPU
 * implementation per dispatch. One {@link BindCache} per device keeps them, keyed by the pipeline
 * and the exact resources (buffer identity, offset, size; texture views) bound, binding 0 being
 * dispatch `i`'s slot `i · align` of the device's one parameter buffer. Entries that bind a buffer
 * are dropped when it is destroyed (`onBufferDestroyed`), and the cache holds at most
 * {@link MAX_ENTRIES} (least recently used go first), so stale entries cannot grow without bound.
 *
 * Reusing one parameter buffer across submits is safe: `queue.writeBuffer` is ordered after the
 * work submitted before it, so each submit reads its own parameters.
 *
 * @module
 */
import type { Gpu } from "./device.ts";
import { roundUp } from "./buffers.ts";
import { onBufferDestroyed } from "./tracking.ts";

/** A whole buffer, a byte range of one, or a texture view (as `Recorder.dispatch` takes). */
export type Binding =
  | GPUBuffer
  | { buffer: GPUBuffer; offset?: number; size?: number }
  | GPUTextureView;

/** Most bind groups kept per device. */
export const MAX_ENTRIES = 16384;

const ids = new WeakMap<object, number>();
let nextId = 1;
function idOf(o: object): number {
  let id = ids.get(o);
  if (id === undefined) ids.set(o, id = nextId++);
  return id;
}

const caches = new WeakMap<GPUDevice, BindCache>();
/** Caches to notify on destroy (one per device; devices are few and live for the process). */
const live = new Set<BindCache>();
onBufferDestroyed((b) => {
  for (const c of live) c.forget(b);
});

/** The bind groups and parameter buffer of one device. */
export class BindCache {
  #groups = new Map<string, { group: GPUBindGroup; buffers: GPUBuffer[] }>();
  /** Keys of the entries that bind each buffer. */
  #byBuffer = new Map<GPUBuffer, Set<string>>();
  #params?: GPUBuffer;

  private constructor(readonly gpu: Gpu) {}

  /** The device's cache. */
  static of(gpu: Gpu): BindCache {
    let c = caches.get(gpu.device);
    if (!c) {
      caches.set(gpu.device, c = new BindCache(gpu));
      live.add(c);
    }
    return c;
  }

  /** Number of bind groups held. */
  get size(): number {
    return this.#groups.size;
  }

  /** The parameter buffer, at least `bytes` long (replaced by a larger one when needed). */
  params(bytes: number): GPUBuffer {
    if (!this.#params || this.#params.size < bytes) {
      this.#params?.destroy(); // drops its bind groups; submitted work still completes
      this.#params = this.gpu.device.createBuffer({
        label: "recorder.params",
        size: roundUp(Math.max(bytes, 4096), 4096),
        usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      });
    }
    return this.#params;
  }

  /**
   * The bind group for `pipeline` with parameters at `offset` (`paramBytes` long) of
   * `params` and `bindings` at 1…n.
   */
  group(
    pipeline: GPUComputePipeline,
    params: GPUBuffer,
    offset: number,
    paramBytes: number,
    bindings: readonly Binding[],
    label: string,
  ): GPUBindGroup {
    const resources = bindings.map(resourceOf);
    let key = `${idOf(pipeline)}|${idOf(params)}:${offset}:${paramBytes}`;
    for (const r of resources) {
      key += r instanceof GPUTextureView
        ? `|${idOf(r)}`
        : `|${idOf(r.buffer)}:${r.offset}:${r.size ?? "-"}`;
    }
    const hit = this.#groups.get(key);
    if (hit) {
      this.#groups.delete(key); // re-insert: most recently used last
      this.#groups.set(key, hit);
      return hit.group;
    }
    const group = this.#create(pipeline, params, offset, paramBytes, resources, label);
    const buffers = [params];
    for (const r of resources) if (!(r instanceof GPUTextureView)) buffers.push(r.buffer);
    this.#groups.set(key, { group, buffers });
    for (const b of buffers) {
      let keys = this.#byBuffer.get(b);
      if (!keys) this.#byBuffer.set(b, keys = new Set());
      keys.add(key);
    }
    if (this.#groups.size > MAX_ENTRIES) this.#drop(this.#groups.keys().next().value!);
    return group;
  }

  /** Drop every bind group that binds `b`. */
  forget(b: GPUBuffer): void {
    const keys = this.#byBuffer.get(b);
    if (!keys) return;
    for (const k of [...keys]) this.#drop(k);
    this.#byBuffer.delete(b);
    if (b === this.#params) this.#params = undefined;
  }

  #drop(key: string): void {
    const e = this.#groups.get(key);
    if (!e) return;
    this.#groups.delete(key);
    for (const b of e.buffers) {
      const keys = this.#byBuffer.get(b);
      keys?.delete(key);
      if (keys?.size === 0) this.#byBuffer.delete(b);
    }
  }

  #create(
    pipeline: GPUComputePipeline,
    params: GPUBuffer,
    offset: number,
    paramBytes: number,
    resources: readonly Resource[],
    label: string,
  ): GPUBindGroup {
    const entries: GPUBindGroupEntry[] = [{
      binding: 0,
      resource: { buffer: params, offset, size: paramBytes },
    }];
    resources.forEach((resource, i) => entries.push({ binding: i + 1, resource }));
    return this.gpu.device.createBindGroup({
      label,
      layout: pipeline.getBindGroupLayout(0),
      entries,
    });
  }
}

/** A binding as a bind-group resource: a texture view, or a buffer range (whole by default). */
type Resource = GPUTextureView | { buffer: GPUBuffer; offset: number; size?: number };

function resourceOf(b: Binding): Resource {
  if (b instanceof GPUTextureView) return b;
  if (b instanceof GPUBuffer) return { buffer: b, offset: 0 };
  return { buffer: b.buffer, offset: b.offset ?? 0, size: b.size };
}
