/**
 * The statistics of evaluations and ablations (docs/MATH.md §10), in one place: Student's t
 * distribution (CDF and quantile, implemented here), the mean with a t interval over seeds,
 * the bootstrap over items, the paired difference against a baseline (interval and paired-t
 * p-value), McNemar's exact test for one seed, and the convergence measures of a loss curve
 * (steps to a target loss, area under the curve). Pure maths, no dependencies.
 *
 * @module
 */
import { Rng } from "./rng.ts";

/** ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; |rel err| < 1e-14). */
export function logGamma(x: number): number {
  const c = [
    0.99999999999980993,
    676.5203681218851,
    -1259.1392167224028,
    771.32342877765313,
    -176.61502916214059,
    12.507343278686905,
    -0.13857109526572012,
    9.9843695780195716e-6,
    1.5056327351493116e-7,
  ];
  if (x < 0.5) return Math.log(Math.PI / Math.abs(Math.sin(Math.PI * x))) - logGamma(1 - x);
  x -= 1;
  let a = c[0];
  const t = x + 7.5;
  for (let i = 1; i < 9; i++) a += c[i] / (x + i);
  return 0.5 * Math.log(2 * Math.PI) + (x + 0.5) * Math.log(t) - t + Math.log(a);
}

/** Continued fraction of the incomplete beta (modified Lentz). */
function betaCf(a: number, b: number, x: number): number {
  const tiny = 1e-300;
  let c = 1, d = 1 - (a + b) * x / (a + 1);
  if (Math.abs(d) < tiny) d = tiny;
  d = 1 / d;
  let h = d;
  for (let m = 1; m <= 300; m++) {
    const m2 = 2 * m;
    let aa = m * (b - m) * x / ((a + m2 - 1) * (a + m2));
    d = 1 + aa * d;
    c = 1 + aa / c;
    d = 1 / (Math.abs(d) < tiny ? tiny : d);
    c = Math.abs(c) < tiny ? tiny : c;
    h *= d * c;
    aa = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1));
    d = 1 + aa * d;
    c = 1 + aa / c;
    d = 1 / (Math.abs(d) < tiny ? tiny : d);
    c = Math.abs(c) < tiny ? tiny : c;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 1e-15) break;
  }
  return h;
}

/** The regularised incomplete beta function I_x(a, b), 0 ≤ x ≤ 1. */
export function incompleteBeta(x: number, a: number, b: number): number {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const lbt = logGamma(a + b) - logGamma(a) - logGamma(b) + a * Math.log(x) +
    b * Math.log(1 - x);
  if (x < (a + 1) / (a + b + 2)) return Math.exp(lbt) * betaCf(a, b, x) / a;
  return 1 - Math.exp(lbt) * betaCf(b, a, 1 - x) / b;
}

function checkDf(df: number): void {
  if (!(df > 0)) throw new RangeError(`t distribution: degrees of freedom ${df}; expected > 0`);
}

/**
 * P(T ≤ t) for Student's t with `df` degrees of freedom.
 *
 * @example
 * ```ts
 * import { tCdf } from "./stats.ts";
 * console.assert(Math.abs(tCdf(2, 5) - 0.9490302605850708) < 1e-12);
 * ```
 */
export function tCdf(t: number, df: number): number {
  checkDf(df);
  if (Number.isNaN(t)) return NaN;
  if (!Number.isFinite(t)) return t > 0 ? 1 : 0;
  const tail = 0.5 * incompleteBeta(df / (df + t * t), df / 2, 0.5);
  return t >= 0 ? 1 - tail : tail;
}

/**
 * The quantile of Student's t: the t with P(T ≤ t) = p (bisection on {@link tCdf}).
 *
 * @example
 * ```ts
 * import { tQuantile } from "./stats.ts";
 * console.assert(Math.abs(tQuantile(0.975, 4) - 2.7764451051977987) < 1e-9);
 * ```
 */
export function tQuantile(p: number, df: number): number {
  checkDf(df);
  if (!(p > 0 && p < 1)) throw new RangeError(`tQuantile: p = ${p}; expected 0 < p < 1`);
  if (p === 0.5) return 0;
  if (p < 0.5) return -tQuantile(1 - p, df);
  let lo = 0, hi = 1;
  while (tCdf(hi, df) < p) hi *= 2;
  for (let i = 0; i < 200 && hi - lo > 1e-13 * hi; i++) {
    const mid = (lo + hi) / 2;
    if (tCdf(mid, df) < p) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}

/** Mean and standard error (sample standard deviation / √n) of per-item values. */
export interface MeanStderr {
  mean: number;
  stderr: number;
  n: number;
}

/** Sample standard deviation (n − 1 in the denominator); NaN for fewer than two values. */
export function sampleSd(xs: number[]): number {
  const n = xs.length;
  if (n < 2) return NaN;
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  return Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1));
}

/** Mean and standard error of `xs` (stderr is NaN for fewer than two values). */
export function meanStderr(xs: number[]): MeanStderr {
  const n = xs.length;
  if (n === 0) return { mean: NaN, stderr: NaN, n };
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  if (n < 2) return { mean, stderr: NaN, n };
  const v = xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1);
  return { mean, stderr: Math.sqrt(v / n), n };
}

/** A mean with a confidence interval. */
export interface Interval {
  mean: number;
  lo: number;
  hi: number;
  /** sample standard deviation (NaN for n < 2) */
  sd: number;
  n: number;
  /** the confidence level, e.g. 0.95 */
  level: number;
}

/**
 * Mean of `xs` with a t interval (over seeds): mean ± t_{(1+level)/2, n−1} · sd/√n. The bounds
 * are NaN for fewer than two values.
 *
 * @example
 * ```ts
 * import { meanInterval } from "./stats.ts";
 * const r = meanInterval([1, 2, 3, 4, 5]);
 * console.assert(r.mean === 3 && Math.abs(r.hi - 4.963243161) < 1e-8);
 * ```
 */
export function meanInterval(xs: number[], level = 0.95): Interval {
  const { mean, stderr, n } = meanStderr(xs);
  const sd = sampleSd(xs);
  if (n < 2) return { mean, lo: NaN, hi: NaN, sd: NaN, n, level };
  const h = tQuantile((1 + level) / 2, n - 1) * stderr;
  return { mean, lo: mean - h, hi: mean + h, sd, n, level };
}

/**
 * Percentile bootstrap interval of the mean over items (when seeds are few): `resamples` seeded
 * resamples with replacement.
 */
export function bootstrapInterval(
  xs: number[],
  options: { level?: number; resamples?: number; seed?: number } = {},
): Interval {
  const level = options.level ?? 0.95, R = options.resamples ?? 2000;
  const { mean, n } = meanStderr(xs);
  const sd = sampleSd(xs);
  if (n < 2) return { mean, lo: NaN, hi: NaN, sd: NaN, n, level };
  const rng = new Rng(options.seed ?? 0);
  const means = new Float64Array(R);
  for (let r = 0; r < R; r++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += xs[rng.int(n)];
    means[r] = s / n;
  }
  means.sort();
  const at = (q: number) => means[Math.min(R - 1, Math.max(0, Math.floor(q * R)))];
  return { mean, lo: at((1 - level) / 2), hi: at((1 + level) / 2), sd, n, level };
}

/** A paired difference (variant − baseline) with its interval and two-sided p-value. */
export interface PairedDifference extends Interval {
  /** paired t statistic (NaN when undefined) */
  t: number;
  /** two-sided p-value (paired t over seeds, or McNemar over items) */
  p: number;
  /** false when the interval covers 0 ("no significant difference") */
  significant: boolean;
}

/**
 * Paired t over seeds: the differences `a[i] − b[i]`, their mean with a t interval, and the
 * two-sided p-value of mean = 0. With zero spread the p-value is 0 (≠ 0 mean) or 1.
 *
 * @example
 * ```ts
 * import { pairedDifference } from "./stats.ts";
 * const d = pairedDifference([1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 0, 1.5]);
 * console.assert(Math.abs(d.p - 0.003567754691277745) < 1e-9 && d.significant);
 * ```
 */
export function pairedDifference(a: number[], b: number[], level = 0.95): PairedDifference {
  if (a.length !== b.length) {
    throw new RangeError(`paired difference: ${a.length} vs ${b.length} values; pair them by seed`);
  }
  const d = a.map((x, i) => x - b[i]);
  const iv = meanInterval(d, level);
  if (iv.n < 2) return { ...iv, t: NaN, p: NaN, significant: false };
  const se = iv.sd / Math.sqrt(iv.n);
  if (se === 0) {
    const p = iv.mean === 0 ? 1 : 0;
    return { ...iv, t: iv.mean === 0 ? 0 : Math.sign(iv.mean) * Infinity, p, significant: p < 1 };
  }
  const t = iv.mean / se;
  const p = Math.min(1, 2 * tCdf(-Math.abs(t), iv.n - 1));
  return { ...iv, t, p, significant: iv.lo > 0 || iv.hi < 0 };
}

/** "+3.2 [+1.0, +5.4], p = 0.012" or "… (no significant difference)". */
export function formatDifference(d: PairedDifference, digits = 1, scale = 1): string {
  const f = (x: number) => (x >= 0 ? "+" : "") + (x * scale).toFixed(digits);
  if (d.n < 2 || Number.isNaN(d.lo)) return `${f(d.mean)} (n = ${d.n}: no interval)`;
  const p = d.p < 1e-4 ? "p < 1e-4" : `p = ${d.p.toPrecision(2)}`;
  return `${f(d.mean)} [${f(d.lo)}, ${f(d.hi)}], ${p}` +
    (d.significant ? "" : " (no significant difference)");
}

/** McNemar's exact test on paired 0/1 outcomes. */
export interface McNemarResult {
  /** items right under A and wrong under B */
  aOnly: number;
  /** items right under B and wrong under A */
  bOnly: number;
  /** two-sided exact p-value (binomial, p = 1/2, over the discordant pairs) */
  p: number;
}

/** log C(n, k) by summation (n is at most the item count). */
function logChoose(n: number, k: number): number {
  let s = 0;
  for (let i = 1; i <= k; i++) s += Math.log(n - k + i) - Math.log(i);
  return s;
}

/**
 * McNemar's exact test: under H0 the discordant pairs split Binomial(b + c, 1/2); the p-value
 * is twice the smaller tail, capped at 1.
 *
 * @example
 * ```ts
 * import { mcnemarExact } from "./stats.ts";
 * const r = mcnemarExact([1, 1, 1, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0, 0]);
 * console.assert(r.aOnly === 6 && Math.abs(r.p - 2 / 64) < 1e-12);
 * ```
 */
export function mcnemarExact(a: number[], b: number[]): McNemarResult {
  if (a.length !== b.length) throw new RangeError(`paired test: ${a.length} vs ${b.length} items`);
  let aOnly = 0, bOnly = 0;
  a.forEach((x, i) => {
    if (x && !b[i]) aOnly++;
    else if (!x && b[i]) bOnly++;
  });
  const n = aOnly + bOnly, k = Math.min(aOnly, bOnly);
  if (n === 0) return { aOnly, bOnly, p: 1 };
  let tail = 0;
  for (let i = 0; i <= k; i++) tail += Math.exp(logChoose(n, i) - n * Math.LN2);
  return { aOnly, bOnly, p: Math.min(1, 2 * tail) };
}

/**
 * The first step at which the loss (a trailing mean over `window` steps, to ride out batch
 * noise) is ≤ `target`; null when it never is.
 *
 * @param steps step numbers, increasing
 * @param losses the loss at each step
 */
export function stepsToTarget(
  steps: number[],
  losses: number[],
  target: number,
  window = 1,
): number | null {
  if (steps.length !== losses.length) {
    throw new RangeError(`stepsToTarget: ${steps.length} steps vs ${losses.length} losses`);
  }
  if (!(window >= 1)) throw new RangeError(`stepsToTarget: window ${window}; expected ≥ 1`);
  let sum = 0;
  for (let i = 0; i < losses.length; i++) {
    sum += losses[i];
    if (i >= window) sum -= losses[i - window];
    if (i >= window - 1 && sum / window <= target) return steps[i];
  }
  return null;
}

/**
 * Area under the loss curve by the trapezoid rule, divided by the step span: the mean loss
 * over training (lower = faster convergence). A single point returns its loss.
 */
export function areaUnderCurve(steps: number[], losses: number[]): number {
  if (steps.length !== losses.length || steps.length === 0) {
    throw new RangeError(`areaUnderCurve: ${steps.length} steps vs ${losses.length} losses`);
  }
  if (steps.length === 1) return losses[0];
  let a = 0;
  for (let i = 1; i < steps.length; i++) {
    a += (steps[i] - steps[i - 1]) * (losses[i] + losses[i - 1]) / 2;
  }
  return a / (steps[steps.length - 1] - steps[0]);
}
