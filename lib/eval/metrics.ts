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

// The statistics live in one module (lib/util/stats.ts); re-exported for existing callers.
export { mcnemarExact, type McNemarResult, type MeanStderr, meanStderr } from "../util/stats.ts";

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
