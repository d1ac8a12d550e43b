/**
 * A small seeded pseudo-random number generator for library use (sampling, data shuffling,
 * random initialisation). The whole state is one 32-bit word, so a generator can be
 * checkpointed with {@linkcode Rng.state} and resumed exactly with {@linkcode Rng.fromState}.
 *
 * Algorithm: mulberry32 (period 2^32, passes the usual statistical batteries for this size).
 * Not cryptographic.
 *
 * @module
 */

/**
 * Seeded PRNG (mulberry32). Every method draws from the same stream, so the sequence of calls
 * determines the values; no value is cached between calls (which keeps `state` exact).
 *
 * @example
 * ```ts
 * import { Rng } from "./rng.ts";
 * const a = new Rng(42);
 * a.next();
 * const saved = a.state;
 * const x = a.next();
 * const b = Rng.fromState(saved);
 * console.assert(b.next() === x);
 * ```
 */
export class Rng {
  #s: number;

  /**
   * Start a stream from a seed.
   *
   * @param seed any finite number; it is reduced to an unsigned 32-bit integer (`seed >>> 0`).
   * @throws {RangeError} when `seed` is not a finite number.
   */
  constructor(seed: number) {
    if (typeof seed !== "number" || !Number.isFinite(seed)) {
      throw new RangeError(`Rng seed must be a finite number, got ${String(seed)}`);
    }
    this.#s = seed >>> 0;
  }

  /**
   * A generator that continues exactly where the one whose `state` was saved left off.
   *
   * @param state a value previously read from {@linkcode Rng.state}.
   * @returns a new generator with that state.
   * @example
   * ```ts
   * import { Rng } from "./rng.ts";
   * const r = Rng.fromState(new Rng(1).state);
   * console.assert(r.next() === new Rng(1).next());
   * ```
   */
  static fromState(state: number): Rng {
    if (!Number.isInteger(state) || state < 0 || state > 0xffffffff) {
      throw new RangeError(`Rng state must be an integer in [0, 2^32), got ${String(state)}`);
    }
    return new Rng(state);
  }

  /** The internal 32-bit state: save it to resume the stream later with `Rng.fromState`. */
  get state(): number {
    return this.#s;
  }

  /**
   * A uniform number in [0, 1) with 32 bits of randomness.
   *
   * @returns the next value of the stream.
   * @example
   * ```ts
   * import { Rng } from "./rng.ts";
   * const u = new Rng(7).next();
   * console.assert(u >= 0 && u < 1);
   * ```
   */
  next(): number {
    let t = (this.#s = (this.#s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /**
   * A uniform number in [lo, hi).
   *
   * @param lo lower bound (inclusive), default -1.
   * @param hi upper bound (exclusive), default 1.
   * @returns the drawn value.
   * @example
   * ```ts
   * import { Rng } from "./rng.ts";
   * const x = new Rng(3).uniform(2, 5);
   * console.assert(x >= 2 && x < 5);
   * ```
   */
  uniform(lo = -1, hi = 1): number {
    return lo + (hi - lo) * this.next();
  }

  /**
   * A standard normal draw (Box–Muller; uses two uniforms per call, no cached spare).
   *
   * @returns a value from N(0, 1).
   * @example
   * ```ts
   * import { Rng } from "./rng.ts";
   * const z = new Rng(5).normal();
   * console.assert(Number.isFinite(z));
   * ```
   */
  normal(): number {
    const u = 1 - this.next(); // (0, 1]: log is finite
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }

  /**
   * A uniform integer in [0, n).
   *
   * @param n the number of outcomes, a positive integer.
   * @returns an integer in [0, n).
   * @throws {RangeError} when `n` is not a positive integer.
   * @example
   * ```ts
   * import { Rng } from "./rng.ts";
   * const die = new Rng(9).int(6) + 1;
   * console.assert(die >= 1 && die <= 6);
   * ```
   */
  int(n: number): number {
    if (!Number.isInteger(n) || n <= 0) {
      throw new RangeError(`Rng.int(n) needs a positive integer n, got ${String(n)}`);
    }
    return Math.floor(this.next() * n);
  }

  /**
   * Shuffle an array in place (Fisher–Yates) and return it.
   *
   * @param array the array to permute.
   * @returns the same array, permuted.
   * @example
   * ```ts
   * import { Rng } from "./rng.ts";
   * const order = new Rng(1).shuffle([0, 1, 2, 3]);
   * console.assert(order.length === 4);
   * ```
   */
  shuffle<T>(array: T[]): T[] {
    for (let i = array.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      const tmp = array[i];
      array[i] = array[j];
      array[j] = tmp;
    }
    return array;
  }
}

/**
 * A seed from the system's cryptographic randomness, for runs that were not given one (report
 * it so the run can be repeated).
 *
 * @returns an unsigned 32-bit integer.
 * @example
 * ```ts
 * import { randomSeed } from "./rng.ts";
 * const seed = randomSeed();
 * console.assert(Number.isInteger(seed) && seed >= 0);
 * ```
 */
export function randomSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}
