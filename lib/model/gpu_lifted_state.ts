/**
 * The running lifted state (docs/MATH.md §5) of B sequences on the GPU: (B, H, N, M) per lifted layer at
 * element `B · s0Off`, each sequence starting from its set's Ŝ0.
 *
 * @module
 */
import { createStorage, readF32 } from "../gpu/buffers.ts";
import { Recorder } from "../gpu/recorder.ts";
import type { LiftedStateSource } from "./gpu_lifted_types.ts";

/** The running lifted state of B sequences: (B, H, N, M) per lifted layer. */
export class GpuLiftedState {
  readonly buffer: GPUBuffer;

  /** A state for B sequences, every sequence starting from the set's Ŝ0. */
  constructor(readonly set: LiftedStateSource, readonly B: number, label = "lifted.state") {
    if (!Number.isInteger(B) || B < 1) throw new RangeError(`lifted state: B = ${B}; expected ≥ 1`);
    this.buffer = createStorage(set.gpu, label, B * set.size * 4);
    const rec = new Recorder(set.gpu, `${label}.init`);
    this.recordReset(rec);
    rec.submit();
  }

  /** Element offset of layer l's (B, H, N, M) block. */
  offset(l: number): number {
    const ly = this.set.layers[l];
    if (!ly) throw new RangeError(`lifted state: layer ${l} has no lifted branch`);
    return this.B * ly.s0Off;
  }

  /** Record copying Ŝ0 into every sequence's state (the start of a sequence). */
  recordReset(rec: Recorder): void {
    const { nHead: H, headSize: N } = this.set.config;
    this.set.layers.forEach((ly) => {
      if (!ly) return;
      const n = H * N * ly.M;
      for (let b = 0; b < this.B; b++) {
        rec.copy(this.set.s0, ly.s0Off * 4, this.buffer, (this.B * ly.s0Off + b * n) * 4, n * 4);
      }
    });
  }

  /** Read sequence b's lifted state per layer (undefined where no branch), each (H, N, M). */
  async read(b = 0): Promise<(Float32Array | undefined)[]> {
    const { nHead: H, headSize: N } = this.set.config;
    const all = await readF32(this.set.gpu, this.buffer, this.B * this.set.size);
    return this.set.layers.map((ly) => {
      if (!ly) return undefined;
      const n = H * N * ly.M, o = this.B * ly.s0Off + b * n;
      return all.slice(o, o + n);
    });
  }

  /** Free the buffer. */
  destroy(): void {
    this.buffer.destroy();
  }
}
