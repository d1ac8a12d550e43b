/**
 * Deterministic batch order: example indices for micro-batch `k` are a pure function of the
 * seed and `k` (each epoch is a fresh seeded shuffle), so resuming at a step replays exactly.
 *
 * @module
 */
import { Rng } from "../util/rng.ts";

/** Seeded epoch-wise shuffled order over `n` examples. */
export class BatchOrder {
  #epochs = new Map<number, number[]>();
  constructor(readonly n: number, readonly seed: number) {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`BatchOrder: n = ${n}; expected ≥ 1`);
  }

  /** The permutation of epoch `e`. */
  epoch(e: number): number[] {
    let p = this.#epochs.get(e);
    if (!p) {
      p = new Rng((this.seed * 1000003 + e * 7919) >>> 0).shuffle(
        Array.from({ length: this.n }, (_, i) => i),
      );
      if (this.#epochs.size > 4) this.#epochs.clear();
      this.#epochs.set(e, p);
    }
    return p;
  }

  /** Indices of micro-batch `k` of size `B` (epochs roll over seamlessly). */
  batch(k: number, B: number): number[] {
    const out: number[] = [];
    for (let i = k * B; i < (k + 1) * B; i++) {
      out.push(this.epoch(Math.floor(i / this.n))[i % this.n]);
    }
    return out;
  }
}
