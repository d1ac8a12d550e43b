/**
 * Reference RWKV-7 channel mix (the feed-forward block, docs/MATH.md §2) and its backward, for one
 * sequence:
 *
 *     u = LN(x; ln2);  mix = u + (uPrev − u) ⊙ x_k;  out = ffn.value · relu(ffn.key · mix)²
 *
 * @module
 */
import type { LayerWeights } from "../model/types.ts";
import type { LayerGrads } from "./grads.ts";
import { linear, linearBackward } from "./linear.ts";
import { layerNorm, layerNormBackward } from "./norm.ts";
import { shiftMix, shiftMixBackward, tokenShift, tokenShiftBackward } from "./shift.ts";

/** Intermediates of the channel mix (the backward reads them). */
export interface ChannelMixCache {
  /** the block input (residual stream) (T, C) */
  x: ArrayLike<number>;
  /** ln2 output (T, C) */
  u: Float64Array;
  /** u of the previous token (T, C) */
  uPrev: Float64Array;
  /** u + (uPrev − u) ⊙ x_k (T, C) */
  mix: Float64Array;
  /** ffn.key · mix before relu (T, F) */
  pre: Float64Array;
  /** relu(pre)² (T, F) */
  act: Float64Array;
}

/**
 * Channel mix over T tokens.
 *
 * @param x residual stream (T, C)
 * @param shift ln2 output of the token before this sequence (C)
 * @returns the residual increment (T, C), the new shift (C) and the cache
 */
export function channelMixForward(
  w: LayerWeights,
  x: ArrayLike<number>,
  shift: ArrayLike<number>,
  T: number,
  C: number,
  F: number,
): { out: Float64Array; shift: Float64Array; cache: ChannelMixCache } {
  const u = layerNorm(x, w.ln2_w, w.ln2_b, T, C);
  const uPrev = tokenShift(u, shift, T, C);
  const mix = shiftMix(u, uPrev, w.ffn_x_k, T, C);
  const pre = linear(mix, w.ffn_key, T, C, F);
  const act = pre.map((p) => (p > 0 ? p * p : 0));
  const out = linear(act, w.ffn_value, T, F, C);
  return { out, shift: u.slice((T - 1) * C), cache: { x, u, uPrev, mix, pre, act } };
}

/** Weight gradients of the channel mix: the {@link LayerGrads} fields it owns. */
export type ChannelMixWeightGrads = Pick<
  LayerGrads,
  "ln2_w" | "ln2_b" | "ffn_x_k" | "ffn_key" | "ffn_value"
>;

/**
 * Backward of {@link channelMixForward}.
 *
 * @param dOut gradient of the residual increment (T, C)
 * @param options.dShiftOut gradient of the outgoing shift state (C), zero when omitted
 * @param options.weightGrads also return the weight gradients
 * @returns dx (T, C), dShift = dL/d(incoming shift) (C), and dWeights when asked
 */
export function channelMixBackward(
  w: LayerWeights,
  cache: ChannelMixCache,
  dOut: ArrayLike<number>,
  T: number,
  C: number,
  F: number,
  options: { dShiftOut?: ArrayLike<number>; weightGrads?: boolean } = {},
): { dx: Float64Array; dShift: Float64Array; dWeights?: ChannelMixWeightGrads } {
  const c = cache;
  const wg = options.weightGrads ?? false;
  const lv = linearBackward(dOut, c.act, w.ffn_value, T, F, C, wg);
  // act = relu(pre)²  ⇒  ∂act/∂pre = 2·max(pre, 0)
  const dpre = lv.dx.map((g, i) => (c.pre[i] > 0 ? 2 * c.pre[i] * g : 0));
  const lk = linearBackward(dpre, c.mix, w.ffn_key, T, C, F, wg);
  const du = new Float64Array(T * C), duPrev = new Float64Array(T * C);
  const dx_k = shiftMixBackward(lk.dx, c.u, c.uPrev, w.ffn_x_k, du, duPrev, T, C);
  if (options.dShiftOut) {
    for (let j = 0; j < C; j++) {
      du[(T - 1) * C + j] += options.dShiftOut[j];
    }
  }
  const dShift = tokenShiftBackward(duPrev, du, T, C);
  const ln = layerNormBackward(du, c.x, w.ln2_w, T, C, 1e-5, wg);
  const dWeights = wg
    ? { ln2_w: ln.dw!, ln2_b: ln.db!, ffn_x_k: dx_k, ffn_key: lk.dW!, ffn_value: lv.dW! }
    : undefined;
  return { dx: ln.dx, dShift, dWeights };
}
