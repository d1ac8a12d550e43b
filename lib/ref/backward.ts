/**
 * Reference RWKV-7 backward for whole sequences: the definition the GPU backward is tested
 * against. Float64 throughout. The gradient state tuning needs is `dState[l].wkv` = dL/dS0.
 *
 * @module
 */
import type { RwkvState, RwkvWeights } from "../model/types.ts";
import { channelMixBackward } from "./channel_mix.ts";
import { linearBackward } from "./linear.ts";
import { crossEntropy } from "./loss.ts";
import {
  refForward,
  type RefLayerState,
  type RefLayerState64,
  type RefModelCache,
} from "./model.ts";
import { layerNormBackward } from "./norm.ts";
import { embedLayerNormBackward } from "./embed_layernorm.ts";
import { timeMixBackward, type TimeMixDims } from "./time_mix.ts";
import type { LiftedLayers } from "./lifted_types.ts";

export type { LayerGrads } from "./grads.ts";
import type { LayerGrads } from "./grads.ts";

/** Gradients of a whole model, same structure and shapes as {@link RwkvWeights}. */
export interface RefWeightGrads {
  /** [V, C] */
  emb: Float64Array;
  ln0_w: Float64Array;
  ln0_b: Float64Array;
  blocks: LayerGrads[];
  ln_out_w: Float64Array;
  ln_out_b: Float64Array;
  /** [V, C] */
  head: Float64Array;
}

/** Gradient of one layer's initial state: att, ffn (C) = dL/d(shift); wkv (H·N·N) = dL/dS0. */
export type RefStateGrad = RefLayerState64;

/** Result of {@link refBackward}. */
export interface RefBackwardResult {
  /** per layer: gradient of the initial state */
  dState: RefStateGrad[];
  /** present when `weightGrads` */
  dWeights?: RefWeightGrads;
  /** when the forward had lifted branches: per layer dL/dŜ0 (H·N·M), or undefined */
  dLifted?: (Float64Array | undefined)[];
  /** with `dLifted`: per layer dL/dg (H; zeros in memory mode), or undefined */
  dLiftedGate?: (Float64Array | undefined)[];
}

/**
 * Backward of {@link refForward} given dL/dlogits.
 *
 * @param cache `refForward(…, { keepCache: true })`.cache (not `lastOnly`)
 * @param dLogits (T, V)
 * @param options.dFinalState gradient of the final state per layer (zero when omitted): lets a
 *   caller chain chunks of a long sequence
 * @param options.weightGrads also return every weight gradient (memory: a float64 copy of the
 *   model)
 * @param options.dFinalLifted gradient of the final lifted state Ŝ_T per layer (zero or
 *   undefined when omitted)
 */
export function refBackward(
  weights: RwkvWeights,
  cache: RefModelCache,
  dLogits: ArrayLike<number>,
  options: RefBackwardOptions = {},
): RefBackwardResult {
  const cfg = weights.config;
  const { nEmbd: C, nHead: H, headSize: N, vocabSize: V, nLayer: L } = cfg;
  const T = cache.tokens.length, TC = T * C;
  if (cache.xNorm.length !== TC) {
    throw new RangeError("refBackward needs the cache of a forward without lastOnly");
  }
  const wg = options.weightGrads ?? false;
  const dims = { T, H, N, dimW: cfg.dimW, dimA: cfg.dimA, dimV: cfg.dimV, dimG: cfg.dimG };
  // logits = head · LN(xOut; ln_out)
  const lh = linearBackward(dLogits, cache.xNorm, weights.head, T, C, V, wg);
  const lo = layerNormBackward(lh.dx, cache.xOut, weights.ln_out_w, T, C, 1e-5, wg);
  let dx = lo.dx;
  const dvFirst = new Float64Array(TC); // Σ over layers ≥ 1 of dL/dv_first
  const dState: RefStateGrad[] = new Array(L);
  const blocks: LayerGrads[] = new Array(L);
  const hasLifted = cache.layers.some((lc) => lc.att.lifted !== undefined);
  const dLifted: (Float64Array | undefined)[] = new Array(L).fill(undefined);
  const dLiftedGate: (Float64Array | undefined)[] = new Array(L).fill(undefined);
  for (let l = L - 1; l >= 0; l--) {
    const r = layerBackward(weights, cache, l, dx, dvFirst, dims, options);
    dx = r.dx;
    dLifted[l] = r.tm.dLiftedS0;
    dLiftedGate[l] = r.tm.dLiftedGate;
    dState[l] = { att: r.tm.dShift, wkv: r.tm.dS0, ffn: r.cm.dShift };
    if (wg) blocks[l] = { ...r.tm.dWeights!, ...r.cm.dWeights! };
  }
  const lifted = hasLifted ? { dLifted, dLiftedGate } : {};
  if (!wg) return { dState, ...lifted };
  // x0 = LN(emb[token]; ln0)
  const l0 = embedLayerNormBackward(dx, cache.emb, cache.tokens, weights.ln0_w, V, C);
  const dWeights: RefWeightGrads = {
    emb: l0.dEmb,
    ln0_w: l0.dw,
    ln0_b: l0.db,
    blocks,
    ln_out_w: lo.dw!,
    ln_out_b: lo.db!,
    head: lh.dW!,
  };
  return { dState, dWeights, ...lifted };
}

/**
 * Layer l of {@link refBackward}: the channel mix, then the time mix, from dL/d(layer output)
 * `dxOut`; accumulates dL/dv_first of layers ≥ 1 into `dvFirst` (read by layer 0).
 */
function layerBackward(
  weights: RwkvWeights,
  cache: RefModelCache,
  l: number,
  dxOut: Float64Array,
  dvFirst: Float64Array,
  dims: TimeMixDims,
  options: RefBackwardOptions,
) {
  const cfg = weights.config, C = cfg.nEmbd, T = dims.T, TC = T * C;
  const wg = options.weightGrads ?? false;
  const w = weights.blocks[l], lc = cache.layers[l], fin = options.dFinalState?.[l];
  const cm = channelMixBackward(w, lc.ffn, dxOut, T, C, cfg.dimFfn, {
    dShiftOut: fin?.ffn,
    weightGrads: wg,
  });
  const dxMid = new Float64Array(TC);
  for (let i = 0; i < TC; i++) dxMid[i] = dxOut[i] + cm.dx[i];
  const tm = timeMixBackward(w, lc.att, dxMid, dims, {
    dState: fin?.wkv,
    dShiftOut: fin?.att,
    dvFirst: l === 0 ? dvFirst : undefined,
    weightGrads: wg,
    dLiftedState: options.dFinalLifted?.[l],
  });
  if (tm.dvFirst) { for (let i = 0; i < TC; i++) dvFirst[i] += tm.dvFirst[i]; }
  const dx = new Float64Array(TC);
  for (let i = 0; i < TC; i++) dx[i] = dxMid[i] + tm.dx[i];
  return { dx, cm, tm };
}

/** Options of {@link refBackward}. */
export interface RefBackwardOptions {
  dFinalState?: RefLayerState[];
  weightGrads?: boolean;
  dFinalLifted?: (ArrayLike<number> | undefined)[];
}

/** Options of {@link refLossAndGrad} and {@link refBatchLossAndGrad}. */
export interface RefLossOptions {
  /** also return every weight gradient */
  weightGrads?: boolean;
  /** add the L2Wrap term to the logit gradient (see `crossEntropy`); the loss is unchanged */
  l2wrap?: boolean;
  /** per layer a kernel-upscaled state (docs/MATH.md §5) or undefined: adds the lifted branches */
  lifted?: LiftedLayers;
  /** called with each sequence's forward cache (e.g. DBP reads the step's kk, r and k) */
  onForward?: (cache: RefModelCache, index: number) => void;
}

/** Result of {@link refLossAndGrad} and {@link refBatchLossAndGrad}. */
export interface RefLossAndGrad {
  /** masked mean next-token cross-entropy over all counted positions */
  loss: number;
  /** number of counted positions */
  count: number;
  /** per layer: dL/d(initial state); wkv = dL/dS0 (H·N·N), att/ffn = dL/d(shift) (C) */
  dState: RefStateGrad[];
  /** present when `options.weightGrads` */
  dWeights?: RefWeightGrads;
  /** with `options.lifted`: per layer dL/dŜ0 (H·N·M), or undefined */
  dLifted?: (Float64Array | undefined)[];
  /** with `options.lifted`: per layer dL/dg (H; zeros in memory mode), or undefined */
  dLiftedGate?: (Float64Array | undefined)[];
}

/** One training sequence: position t's logits predict `targets[t]` where `mask[t]` is set. */
export interface RefSequence {
  /** T token ids */
  tokens: number[];
  /** T target ids (usually tokens shifted by one) */
  targets: ArrayLike<number>;
  /** T flags: which positions count (all when omitted) */
  mask?: ArrayLike<number | boolean>;
}

/**
 * Loss and gradients of one sequence from `initialState` (zero when omitted).
 *
 * @param tokens T token ids
 * @param targets (T) targets; callers pass tokens shifted by one
 * @param mask (T) which positions count (e.g. answer tokens only); all when omitted
 * @example
 * ```ts ignore
 * const { loss, dState } = refLossAndGrad(weights, [1, 2, 3], [2, 3, 4], [0, 1, 1]);
 * ```
 */
export function refLossAndGrad(
  weights: RwkvWeights,
  tokens: number[],
  targets: ArrayLike<number>,
  mask?: ArrayLike<number | boolean>,
  initialState?: RwkvState | RefLayerState[],
  options: RefLossOptions = {},
): RefLossAndGrad {
  return refBatchLossAndGrad(weights, [{ tokens, targets, mask }], initialState, options);
}

/**
 * Loss and gradients of a batch of sequences that all start from the same `initialState` (the
 * state being tuned): loss = Σ_seq Σ_counted CE / (all counted tokens); gradients are of that
 * loss, so dState is summed over the sequences. L2Wrap uses the same denominator.
 *
 * @param batch B sequences of any lengths
 */
export function refBatchLossAndGrad(
  weights: RwkvWeights,
  batch: RefSequence[],
  initialState?: RwkvState | RefLayerState[],
  options: RefLossOptions = {},
): RefLossAndGrad {
  const V = weights.config.vocabSize;
  let count = 0;
  for (const s of batch) {
    if (s.targets.length !== s.tokens.length || (s.mask && s.mask.length !== s.tokens.length)) {
      throw new RangeError(
        `tokens (${s.tokens.length}), targets (${s.targets.length}) and mask ` +
          `(${s.mask?.length}) must have the same length`,
      );
    }
    for (let t = 0; t < s.tokens.length; t++) if (!s.mask || s.mask[t]) count++;
  }
  if (count === 0) throw new RangeError("the mask selects no position: the loss is undefined");
  let sum = 0;
  let acc: RefBackwardResult | undefined;
  for (const [index, s] of batch.entries()) {
    const T = s.tokens.length;
    const fwd = refForward(weights, s.tokens, initialState, {
      keepCache: true,
      lifted: options.lifted,
    });
    options.onForward?.(fwd.cache!, index);
    const ce = crossEntropy(fwd.logits, s.targets, T, V, s.mask, {
      denominator: count,
      l2wrap: options.l2wrap,
    });
    sum += ce.sum;
    const g = refBackward(weights, fwd.cache!, ce.dLogits, { weightGrads: options.weightGrads });
    acc = acc ? addGrads(acc, g) : g;
  }
  const { dState, dWeights, dLifted, dLiftedGate } = acc!;
  const lifted = dLifted ? { dLifted, dLiftedGate } : {};
  return { loss: sum / count, count, dState, dWeights, ...lifted };
}

/** Adds every array of `b` into the matching array of `a` (in place) and returns `a`. */
function addGrads<G>(a: G, b: G): G {
  if (a instanceof Float64Array && b instanceof Float64Array) {
    for (let i = 0; i < a.length; i++) a[i] += b[i];
  } else if (a && typeof a === "object") {
    for (const key of Object.keys(a) as (keyof G)[]) {
      if (a[key] !== undefined) addGrads(a[key], b[key]);
    }
  }
  return a;
}
