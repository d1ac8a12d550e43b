/**
 * Seeded random arrays and error measures for tests, free of Deno APIs so that browser test pages
 * (`tests/browser/`) can use them too; `tests/_helpers.ts` re-exports them.
 *
 * @module
 */
import { Rng as LibRng } from "../lib/util/rng.ts";

/** The library's seeded PRNG plus a helper for random test vectors. */
export class Rng extends LibRng {
  /** A Float32Array of `n` values uniform in [lo, hi). */
  f32(n: number, lo = -1, hi = 1): Float32Array {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = this.uniform(lo, hi);
    return a;
  }
}

/** max |a − b| over all elements. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

/** rms(a − b) / rms(b): the relative error used for kernel-vs-reference tests. */
export function errRatio(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError(`length ${a.length} vs ${b.length}`);
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  if (den === 0) return num === 0 ? 0 : Infinity;
  return Math.sqrt(num / den);
}

/**
 * Assert `a` ≈ `b` within `maxAbs` (max |Δ|) and optionally `rel` (errRatio), printing the
 * first mismatches on failure.
 */
export function assertClose(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  tol: { maxAbs?: number; rel?: number },
  what = "values",
): void {
  const m = maxAbsDiff(a, b);
  const r = errRatio(a, b);
  const bad = (tol.maxAbs !== undefined && !(m <= tol.maxAbs)) ||
    (tol.rel !== undefined && !(r <= tol.rel));
  if (bad) {
    const first: string[] = [];
    for (let i = 0; i < a.length && first.length < 5; i++) {
      const lim = tol.maxAbs ?? 0;
      if (!(Math.abs(a[i] - b[i]) <= lim)) first.push(`[${i}] ${a[i]} vs ${b[i]}`);
    }
    throw new Error(
      `${what}: max|Δ| ${m.toExponential(3)} (tol ${tol.maxAbs}), rel ${r.toExponential(3)} ` +
        `(tol ${tol.rel}); first mismatches: ${first.join("; ")}`,
    );
  }
}
