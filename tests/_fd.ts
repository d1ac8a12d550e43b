/**
 * Finite-difference gradient checks in float64 shared by the reference-backward tests:
 * five-point central differences per element and along a random direction, with the worst
 * errors kept for the printed report.
 *
 * @module
 */
import { assert } from "@std/assert";
import { Rng } from "./_helpers.ts";

/** `a · b`. */
export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** max |a_i|. */
export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** Gradient checks against finite differences with tolerance `tol` (default 1e-6). */
export class GradChecker {
  readonly rng: Rng;
  /** Worst errors since the last {@link report}. */
  readonly worst = { elem: 0, rms: 0, dir: 0 };

  constructor(seed: number, readonly tol = 1e-6) {
    this.rng = new Rng(seed);
  }

  /** `n` float64 values uniform in [lo, hi). */
  rand(n: number, lo = -1, hi = 1): Float64Array {
    return Float64Array.from({ length: n }, () => this.rng.uniform(lo, hi));
  }

  /** Five-point central difference of f at arr[i]: truncation O(h⁴), round-off ~|f|·1e-16/h. */
  fdAt(f: () => number, arr: Float64Array, i: number, h0 = 1e-4): number {
    const x = arr[i], h = h0 * Math.max(1, Math.abs(x));
    const at = (dx: number) => {
      arr[i] = x + dx;
      return f();
    };
    const fd = (8 * (at(h) - at(-h)) - (at(2 * h) - at(-2 * h))) / (12 * h);
    arr[i] = x;
    return fd;
  }

  /** Check `g` against FD of f at `indices` of arr (all when omitted): per element and rms. */
  check(
    what: string,
    g: ArrayLike<number>,
    f: () => number,
    arr: Float64Array,
    indices?: number[],
    h0 = 1e-4,
  ): void {
    const TOL = this.tol, worst = this.worst;
    assert(g.length === arr.length, `${what}: gradient length ${g.length} vs ${arr.length}`);
    const idx = indices ?? Array.from(arr, (_, i) => i);
    let num = 0, den = 0;
    for (const i of idx) {
      const fd = this.fdAt(f, arr, i, h0);
      const e = Math.abs(g[i] - fd);
      assert(Number.isFinite(g[i]), `${what}[${i}] = ${g[i]}`);
      assert(e <= TOL * Math.max(1, Math.abs(fd)), `${what}[${i}]: analytic ${g[i]} vs FD ${fd}`);
      worst.elem = Math.max(worst.elem, e / Math.max(1, Math.abs(fd)));
      num += e * e;
      den += fd * fd;
    }
    const rms = den > 0 ? Math.sqrt(num / den) : Math.sqrt(num);
    worst.rms = Math.max(worst.rms, rms);
    assert(rms <= TOL, `${what}: rms-relative error ${rms.toExponential(2)} > ${TOL}`);
  }

  /** Directional check over the whole of arr: g·δ vs FD along a random δ. */
  checkDir(
    what: string,
    g: ArrayLike<number>,
    f: () => number,
    arr: Float64Array,
    h0 = 1e-4,
  ): void {
    // δ = unit(ĝ + random unit vector): a random direction that keeps g·δ away from 0
    const dir = this.rand(arr.length);
    const rn = Math.sqrt(dot(dir, dir)), gn = Math.sqrt(dot(g, g));
    dir.forEach((x, i) => (dir[i] = x / rn + (gn > 0 ? g[i] / gn : 0)));
    const dn = Math.sqrt(dot(dir, dir));
    dir.forEach((x, i) => (dir[i] = x / dn));
    const save = arr.slice();
    const h = h0 * Math.max(1, ...Array.from(arr, Math.abs));
    const at = (eps: number) => {
      for (let i = 0; i < arr.length; i++) arr[i] = save[i] + eps * dir[i];
      return f();
    };
    const fd = (8 * (at(h) - at(-h)) - (at(2 * h) - at(-2 * h))) / (12 * h);
    arr.set(save);
    const an = dot(g, dir);
    const rel = Math.abs(an - fd) / Math.max(Math.abs(fd), 1e-300);
    this.worst.dir = Math.max(this.worst.dir, rel);
    assert(rel <= this.tol, `${what}: directional ${an} vs FD ${fd} (rel ${rel.toExponential(2)})`);
  }

  /** Print and reset the worst errors. */
  report(name: string): void {
    const w = this.worst, e = (x: number) => x.toExponential(2);
    console.log(`${name}: worst per-element ${e(w.elem)}, rms-rel ${e(w.rms)}, dir ${e(w.dir)}`);
    w.elem = w.rms = w.dir = 0;
  }

  /** `k` distinct random indices in [0, n). */
  pick(n: number, k: number): number[] {
    const s = new Set<number>();
    while (s.size < Math.min(k, n)) s.add(this.rng.int(n));
    return [...s];
  }

  /**
   * At most `k` random indices among the entries of `g` with |g| ≥ 0.1·max|g|: spot checks
   * where the gradient is large enough that round-off in the loss cannot swamp the FD.
   * Directional checks cover every entry.
   */
  pickBig(g: ArrayLike<number>, k: number): number[] {
    const big = maxAbs(g);
    const cand: number[] = [];
    for (let i = 0; i < g.length; i++) if (Math.abs(g[i]) >= 0.1 * big) cand.push(i);
    return this.pick(cand.length, k).map((j) => cand[j]);
  }
}
