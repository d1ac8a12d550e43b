/**
 * Reference masked next-token cross-entropy and its gradient with respect to the logits, with
 * the optional L2Wrap logit regulariser of the reference RWKV trainers.
 *
 * @module
 */

/** The L2Wrap coefficient: the reference trainers use 1e-4 / (B·T). */
export const L2WRAP_COEF = 1e-4;

/** Result of {@link crossEntropy}. */
export interface CrossEntropyResult {
  /** Σ over counted positions of −log softmax(logits_t)[target_t] */
  sum: number;
  /** number of counted positions */
  count: number;
  /** dL/dlogits (T, V) for L = sum / denominator (plus L2Wrap when asked) */
  dLogits: Float64Array;
}

/** True where position t counts (all positions when `mask` is omitted). */
export function isCounted(mask: ArrayLike<number | boolean> | undefined, t: number): boolean {
  return mask === undefined || Boolean(mask[t]);
}

/** Number of counted positions among the first T. */
export function countMasked(mask: ArrayLike<number | boolean> | undefined, T: number): number {
  let n = 0;
  for (let t = 0; t < T; t++) if (isCounted(mask, t)) n++;
  return n;
}

/**
 * Masked cross-entropy over T positions: position t's logits predict `targets[t]`; only
 * positions with a non-zero (true) mask count. The loss is `sum / denominator` and
 *
 *     dL/dlogits_t = (softmax(logits_t) − onehot(target_t)) / denominator   (counted t; else 0)
 *
 * L2Wrap (`l2wrap`, backward only, the loss value is unchanged): at each counted position the
 * gradient of the largest logit (first index on ties) gets `+ max_logit · 1e-4 / denominator`.
 * With denominator = the number of counted tokens this is the reference trainers' factor
 * 1e-4/(B·T) with B·T replaced by the counted tokens.
 *
 * @param logits (T, V)
 * @param targets (T) ids in [0, V) (not read where the mask is 0)
 * @param mask (T) which positions count; all when omitted
 * @param options.denominator defaults to the number of counted positions
 */
export function crossEntropy(
  logits: ArrayLike<number>,
  targets: ArrayLike<number>,
  T: number,
  V: number,
  mask?: ArrayLike<number | boolean>,
  options: { denominator?: number; l2wrap?: boolean } = {},
): CrossEntropyResult {
  const count = countMasked(mask, T);
  const denom = options.denominator ?? count;
  const dLogits = new Float64Array(T * V);
  let sum = 0;
  for (let t = 0; t < T; t++) {
    if (!isCounted(mask, t)) continue;
    const target = targets[t];
    if (!Number.isInteger(target) || target < 0 || target >= V) {
      throw new RangeError(`target ${target} at position ${t} is outside [0, ${V})`);
    }
    const o = t * V;
    let max = -Infinity, argmax = 0;
    for (let v = 0; v < V; v++) {
      if (logits[o + v] > max) {
        max = logits[o + v];
        argmax = v;
      }
    }
    let z = 0;
    for (let v = 0; v < V; v++) z += Math.exp(logits[o + v] - max);
    const lse = max + Math.log(z);
    sum += lse - logits[o + target];
    for (let v = 0; v < V; v++) dLogits[o + v] = Math.exp(logits[o + v] - lse) / denom;
    dLogits[o + target] -= 1 / denom;
    if (options.l2wrap) dLogits[o + argmax] += (max * L2WRAP_COEF) / denom;
  }
  return { sum, count, dLogits };
}
