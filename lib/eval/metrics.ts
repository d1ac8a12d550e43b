/**
 * Per-item scoring rules and statistics: acc / acc_norm from choice log-likelihoods, GSM8K
 * answer extraction, mean ± standard error, and McNemar's exact test for paired accuracies.
 *
 * @module
 */

/** Index of the largest value (first one on ties, as numpy's argmax). */
export function argmax(xs: number[]): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i] > xs[best]) best = i;
  return best;
}

/** Length in characters (Unicode code points, as Python's `len`). */
export function charLength(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/**
 * acc_norm's prediction: argmax of log-likelihood / character length of each choice's text.
 * As lm-evaluation-harness does, the length is that of the choice text itself, without the
 * " " that joins it to the context.
 *
 * @param logliks summed log-likelihood of each continuation.
 * @param continuations the scored continuations (a leading " " delimiter is not counted).
 * @example
 * ```ts
 * import { normPrediction } from "./metrics.ts";
 * console.assert(normPrediction([-4, -6], [" ab", " abcd"]) === 1); // -2 vs -1.5
 * ```
 */
export function normPrediction(logliks: number[], continuations: string[]): number {
  return argmax(logliks.map((l, i) => l / charLength(continuations[i].replace(/^ /, ""))));
}

/** Remove "," and "$" and a trailing "." (lm-evaluation-harness' GSM8K filters). */
export function normalizeNumber(s: string): string {
  return s.replaceAll(",", "").replaceAll("$", "").trim().replace(/\.$/, "");
}

/** The strict GSM8K answer: the number after the first `#### `, or null. */
export function extractStrict(text: string): string | null {
  const m = text.match(/#### (-?[0-9.,]+)/);
  return m ? normalizeNumber(m[1]) : null;
}

/** The flexible GSM8K answer: the last number in the text (`$` and `,` allowed), or null. */
export function extractFlexible(text: string): string | null {
  const all = [...text.matchAll(/(-?[$0-9.,]{2,})|(-?[0-9]+)/g)].map((m) => m[0]);
  for (let i = all.length - 1; i >= 0; i--) {
    const v = normalizeNumber(all[i]);
    if (/[0-9]/.test(v)) return v;
  }
  return null;
}

/** Whether an extracted answer equals the target after normalisation. */
export function exactMatch(extracted: string | null, target: string): boolean {
  return extracted !== null && extracted === normalizeNumber(target);
}

/** Mean and standard error (sample standard deviation / √n) of per-item values. */
export interface MeanStderr {
  mean: number;
  stderr: number;
  n: number;
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

/** log C(n, k) via log-gamma-free summation (n is at most the item count). */
function logChoose(n: number, k: number): number {
  let s = 0;
  for (let i = 1; i <= k; i++) s += Math.log(n - k + i) - Math.log(i);
  return s;
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

/**
 * McNemar's exact test: under H0 the discordant pairs split Binomial(b + c, 1/2); the p-value
 * is twice the smaller tail, capped at 1.
 *
 * @example
 * ```ts
 * import { mcnemarExact } from "./metrics.ts";
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

/** Log-softmax of `logits[off, off + V)` evaluated at `token`, and whether it is the argmax. */
export function tokenLogprob(
  logits: Float32Array,
  off: number,
  V: number,
  token: number,
): { logprob: number; greedy: boolean } {
  let max = -Infinity, arg = 0;
  for (let i = 0; i < V; i++) {
    const v = logits[off + i];
    if (v > max) max = v, arg = i;
  }
  let sum = 0;
  for (let i = 0; i < V; i++) sum += Math.exp(logits[off + i] - max);
  return { logprob: logits[off + token] - max - Math.log(sum), greedy: arg === token };
}
