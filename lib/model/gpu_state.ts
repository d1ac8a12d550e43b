/**
 * The recurrent state of B sequences on the GPU, all layers in three buffers:
 * `att` (L, B, C) time-mix shift, `wkv` (L, B, H, N value, N key) f32, `ffn` (L, B, C)
 * channel-mix shift; with a kernel-upscaled set attached to the model, also the lifted state
 * (docs/MATH.md §5) of the same B sequences, created from Ŝ0 at the first forward that uses the set.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { createStorage, roundUp, writeStorage } from "../gpu/buffers.ts";
import type { RwkvConfig, RwkvState } from "./types.ts";
import { type GpuLifted, GpuLiftedState } from "./gpu_lifted.ts";
import { Recorder } from "../gpu/recorder.ts";

/** B sequences' state, updated in place by the forward. */
export class GpuState {
  /** (L, B, C) ln1 output of each sequence's last token */
  readonly att: GPUBuffer;
  /** (L, B, H, N, N) wkv state, [value][key] */
  readonly wkv: GPUBuffer;
  /** (L, B, C) ln2 output of each sequence's last token */
  readonly ffn: GPUBuffer;
  #lifted?: GpuLiftedState;

  /** A zero state for B sequences. */
  constructor(readonly gpu: Gpu, readonly config: RwkvConfig, readonly B: number, label = "state") {
    if (!Number.isInteger(B) || B < 1) throw new RangeError(`state: B = ${B}; expected ≥ 1`);
    const { nLayer: L, nEmbd: C, nHead: H, headSize: N } = config;
    this.att = createStorage(gpu, `${label}.att`, L * B * C * 4);
    this.wkv = createStorage(gpu, `${label}.wkv`, L * B * H * N * N * 4);
    this.ffn = createStorage(gpu, `${label}.ffn`, L * B * C * 4);
  }

  /** Element offset of layer l's (B, C) block in `att` / `ffn`. */
  shiftOffset(l: number): number {
    return l * this.B * this.config.nEmbd;
  }

  /** Element offset of layer l's (B, H, N, N) block in `wkv`. */
  wkvOffset(l: number): number {
    const { nHead: H, headSize: N } = this.config;
    return l * this.B * H * N * N;
  }

  /**
   * Overwrite sequence b's state with `states[b]` for every b.
   *
   * @throws {RangeError} when the count or a shape disagrees
   */
  upload(states: RwkvState[]): void {
    if (states.length !== this.B) {
      throw new RangeError(`state upload: ${states.length} states for B = ${this.B}`);
    }
    const { nLayer: L, nEmbd: C, nHead: H, headSize: N } = this.config;
    states.forEach((st, b) => {
      if (st.length !== L) throw new RangeError(`state ${b}: ${st.length} layers, expected ${L}`);
      st.forEach((ls, l) => {
        if (ls.att.length !== C || ls.ffn.length !== C || ls.wkv.length !== H * N * N) {
          throw new RangeError(`state ${b} layer ${l}: expected att/ffn C = ${C}, wkv H·N·N`);
        }
        writeStorage(this.gpu, this.att, ls.att, (this.shiftOffset(l) + b * C) * 4);
        writeStorage(this.gpu, this.ffn, ls.ffn, (this.shiftOffset(l) + b * C) * 4);
        writeStorage(this.gpu, this.wkv, ls.wkv, (this.wkvOffset(l) + b * H * N * N) * 4);
      });
    });
  }

  /** The lifted state these sequences carry, if a forward with a lifted set ran. */
  get lifted(): GpuLiftedState | undefined {
    return this.#lifted;
  }

  /**
   * The lifted state for `set`: the one carried, or (first use, or another set than before) a
   * new one starting from `set`'s Ŝ0, replacing and freeing the old.
   */
  liftedFor(set: GpuLifted): GpuLiftedState {
    if (this.#lifted?.set !== set) {
      this.#lifted?.destroy();
      this.#lifted = new GpuLiftedState(set, this.B, "state.lifted");
    }
    return this.#lifted;
  }

  /** Zero every sequence's state and put the lifted state back to Ŝ0 (recorded on the queue). */
  reset(): void {
    const enc = this.gpu.device.createCommandEncoder({ label: "state.reset" });
    for (const b of [this.att, this.wkv, this.ffn]) enc.clearBuffer(b);
    this.gpu.device.queue.submit([enc.finish()]);
    if (this.#lifted) {
      const rec = new Recorder(this.gpu, "state.resetLifted");
      this.#lifted.recordReset(rec);
      rec.submit();
    }
  }

  /** Read every sequence's state back (one CPU sync). */
  async read(): Promise<RwkvState[]> {
    const bufs = [this.att, this.wkv, this.ffn];
    const sizes = bufs.map((b) => b.size);
    const total = sizes.reduce((s, n) => s + n, 0);
    const staging = this.gpu.device.createBuffer({
      label: "state.readback",
      size: roundUp(total, 4),
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const enc = this.gpu.device.createCommandEncoder({ label: "state.readback" });
    let off = 0;
    bufs.forEach((b, i) => {
      enc.copyBufferToBuffer(b, 0, staging, off, sizes[i]);
      off += sizes[i];
    });
    this.gpu.device.queue.submit([enc.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const all = new Float32Array(staging.getMappedRange().slice(0));
    staging.unmap();
    staging.destroy();
    const att = all.subarray(0, sizes[0] / 4);
    const wkv = all.subarray(sizes[0] / 4, (sizes[0] + sizes[1]) / 4);
    const ffn = all.subarray((sizes[0] + sizes[1]) / 4);
    const { nLayer: L, nEmbd: C, nHead: H, headSize: N } = this.config;
    const S = H * N * N;
    return Array.from({ length: this.B }, (_, b) =>
      Array.from({ length: L }, (_, l) => ({
        att: att.slice(this.shiftOffset(l) + b * C, this.shiftOffset(l) + (b + 1) * C),
        wkv: wkv.slice(this.wkvOffset(l) + b * S, this.wkvOffset(l) + (b + 1) * S),
        ffn: ffn.slice(this.shiftOffset(l) + b * C, this.shiftOffset(l) + (b + 1) * C),
      })));
  }

  /** Free the buffers (the lifted state's included). */
  destroy(): void {
    for (const b of [this.att, this.wkv, this.ffn]) b.destroy();
    this.#lifted?.destroy();
    this.#lifted = undefined;
  }
}
