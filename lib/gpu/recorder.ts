/**
 * Records many kernel dispatches and submits them together.
 *
 * Kernel convention (every shader in `shaders/` follows it): `@group(0) @binding(0)` is a
 * uniform block of 32-bit parameters, bindings 1…n are the storage buffers in the order the
 * host wrapper passes them. Parameters are u32 words; store floats with {@link f32bits}.
 *
 * @module
 */
import type { Gpu } from "./device.ts";
import { roundUp } from "./buffers.ts";
import { BindCache, type Binding } from "./bind_cache.ts";

/**
 * A whole buffer, a byte range of one (offset aligned to the storage offset alignment), or a
 * texture view (sampled `texture_2d<f32>` bindings).
 */
export type { Binding } from "./bind_cache.ts";

/** Workgroup counts (x, y, z). */
export type Groups = readonly [number, number?, number?];

const f32scratch = new Float32Array(1);
const u32scratch = new Uint32Array(f32scratch.buffer);

/** The u32 bit pattern of an f32, for parameter blocks. */
export function f32bits(x: number): number {
  f32scratch[0] = x;
  return u32scratch[0];
}

interface Dispatch {
  kind: "dispatch";
  pipeline: GPUComputePipeline;
  params: number[];
  bindings: Binding[];
  groups: Groups;
  label: string;
}

type Transfer =
  | {
    kind: "copy";
    src: GPUBuffer;
    srcOffset: number;
    dst: GPUBuffer;
    dstOffset: number;
    size: number;
  }
  | { kind: "clear"; buffer: GPUBuffer; offset: number; size?: number }
  | {
    kind: "toTexture";
    src: GPUBuffer;
    offset: number;
    bytesPerRow: number;
    texture: GPUTexture;
    size: [number, number];
  };

type Op = Dispatch | Transfer;

/** Encode a copy or clear (outside any compute pass). */
function encodeTransfer(enc: GPUCommandEncoder, op: Transfer): void {
  if (op.kind === "copy") {
    enc.copyBufferToBuffer(op.src, op.srcOffset, op.dst, op.dstOffset, op.size);
  } else if (op.kind === "toTexture") {
    enc.copyBufferToTexture(
      { buffer: op.src, offset: op.offset, bytesPerRow: op.bytesPerRow },
      { texture: op.texture },
      op.size,
    );
  } else enc.clearBuffer(op.buffer, op.offset, op.size);
}

/** Records dispatches and copies; {@link submit} sends them in one command buffer. */
export class Recorder {
  #ops: Op[] = [];
  #profile?: { query: GPUQuerySet; resolve: GPUBuffer; labels: string[] };
  /**
   * @param profile time every dispatch with timestamp queries (each dispatch then gets its own
   *   compute pass; needs the `timestamp-query` feature); read them with {@link timings}
   */
  constructor(readonly gpu: Gpu, readonly label = "recorder", readonly profile = false) {
    if (profile && !gpu.hasTimestamps) {
      throw new Error(
        "Recorder profiling needs the timestamp-query feature, absent on this adapter",
      );
    }
  }

  /** Number of recorded dispatches (for benchmarks). */
  get size(): number {
    return this.#ops.length;
  }

  /** Record one dispatch. `params` are u32 words (floats via {@link f32bits}). */
  dispatch(
    pipeline: GPUComputePipeline,
    params: number[],
    bindings: Binding[],
    groups: Groups,
    label = pipeline.label,
  ): this {
    if (params.length > 64) throw new RangeError(`too many kernel parameters (${params.length})`);
    for (const g of groups) {
      if (g !== undefined && (g < 0 || g > this.gpu.limits.maxComputeWorkgroupsPerDimension)) {
        throw new RangeError(`dispatch "${label}": workgroup count ${g} out of range`);
      }
    }
    this.#ops.push({ kind: "dispatch", pipeline, params, bindings, groups, label });
    return this;
  }

  /** Record a buffer-to-buffer copy (byte offsets and size multiples of 4). */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number): this {
    if (size > 0) this.#ops.push({ kind: "copy", src, srcOffset, dst, dstOffset, size });
    return this;
  }

  /**
   * Record a copy of `size` = [width, height] texels from a buffer (rows `bytesPerRow` apart, a
   * multiple of 256, starting at byte `offset`, a multiple of the texel size) into a texture's
   * top-left corner.
   */
  copyToTexture(
    src: GPUBuffer,
    offset: number,
    bytesPerRow: number,
    texture: GPUTexture,
    size: [number, number],
  ): this {
    if (bytesPerRow % 256 !== 0) {
      throw new RangeError(`copyToTexture: bytesPerRow ${bytesPerRow} is not a multiple of 256`);
    }
    this.#ops.push({ kind: "toTexture", src, offset, bytesPerRow, texture, size });
    return this;
  }

  /** Record zero-filling a buffer range. */
  clear(buffer: GPUBuffer, offset = 0, size?: number): this {
    this.#ops.push({ kind: "clear", buffer, offset, size });
    return this;
  }

  /** Encode and submit everything recorded so far (does not wait for completion). */
  submit(): void {
    if (this.#ops.length === 0) return;
    const { device } = this.gpu;
    const dispatches = this.#ops.filter((o) => o.kind === "dispatch");
    const params = this.#writeParams(dispatches);
    const enc = device.createCommandEncoder({ label: this.label });
    if (this.profile) this.#startProfile(dispatches);
    let pass: GPUComputePassEncoder | undefined;
    let di = 0;
    for (const op of this.#ops) {
      if (op.kind === "dispatch") pass = this.#encodeDispatch(enc, pass, op, di++, params);
      else {
        pass?.end();
        pass = undefined;
        encodeTransfer(enc, op);
      }
    }
    pass?.end();
    if (this.#profile) {
      const n = this.#profile.labels.length * 2;
      if (n > 0) enc.resolveQuerySet(this.#profile.query, 0, n, this.#profile.resolve, 0);
    }
    device.queue.submit([enc.finish()]);
    this.#ops = [];
  }

  /** Write every dispatch's parameter block into its slot of the device's parameter buffer. */
  #writeParams(dispatches: Dispatch[]): { buffer?: GPUBuffer; align: number } {
    const align = Math.max(256, this.gpu.limits.minUniformBufferOffsetAlignment);
    if (dispatches.length === 0) return { align };
    const data = new Uint32Array((dispatches.length * align) / 4);
    dispatches.forEach((d, i) => data.set(d.params, (i * align) / 4));
    const buffer = BindCache.of(this.gpu).params(data.byteLength);
    this.gpu.device.queue.writeBuffer(buffer, 0, data);
    return { buffer, align };
  }

  /** Timestamp queries for every dispatch of this submit (replacing the last submit's). */
  #startProfile(dispatches: Dispatch[]): void {
    const { device } = this.gpu;
    this.#profile?.query.destroy();
    this.#profile?.resolve.destroy();
    const count = Math.max(2, dispatches.length * 2);
    this.#profile = {
      query: device.createQuerySet({ label: `${this.label}.timestamps`, type: "timestamp", count }),
      resolve: device.createBuffer({
        label: `${this.label}.timestamps`,
        size: count * 8,
        usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
      }),
      labels: dispatches.map((d) => d.label),
    };
  }

  /** Encode dispatch number `di` (its own timed pass when profiling); returns the open pass. */
  #encodeDispatch(
    enc: GPUCommandEncoder,
    pass: GPUComputePassEncoder | undefined,
    op: Dispatch,
    di: number,
    params: { buffer?: GPUBuffer; align: number },
  ): GPUComputePassEncoder {
    if (this.#profile) {
      pass?.end();
      pass = enc.beginComputePass({
        label: op.label,
        timestampWrites: {
          querySet: this.#profile.query,
          beginningOfPassWriteIndex: 2 * di,
          endOfPassWriteIndex: 2 * di + 1,
        },
      });
    }
    pass ??= enc.beginComputePass({ label: this.label });
    const paramBytes = roundUp(Math.max(4, op.params.length * 4), 16);
    const group = BindCache.of(this.gpu)
      .group(op.pipeline, params.buffer!, di * params.align, paramBytes, op.bindings, op.label);
    pass.setPipeline(op.pipeline);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(op.groups[0], op.groups[1] ?? 1, op.groups[2] ?? 1);
    return pass;
  }

  /**
   * Per-dispatch GPU times of the last {@link submit} of a profiling recorder, in submission
   * order (one CPU sync).
   */
  async timings(): Promise<{ label: string; ms: number }[]> {
    const p = this.#profile;
    if (!p) {
      throw new Error("timings() needs a Recorder created with profile = true, then submit()");
    }
    const n = p.labels.length * 2;
    if (n === 0) return [];
    const staging = this.gpu.device.createBuffer({
      label: "timestamps.read",
      size: n * 8,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const enc = this.gpu.device.createCommandEncoder();
    enc.copyBufferToBuffer(p.resolve, 0, staging, 0, n * 8);
    this.gpu.device.queue.submit([enc.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const t = new BigUint64Array(staging.getMappedRange().slice(0));
    staging.destroy();
    return p.labels.map((label, i) => ({ label, ms: Number(t[2 * i + 1] - t[2 * i]) / 1e6 }));
  }

  /** Submit and wait until the GPU has finished (one CPU sync). */
  async flush(): Promise<void> {
    this.submit();
    await this.gpu.device.queue.onSubmittedWorkDone();
  }
}
