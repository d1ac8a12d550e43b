/**
 * Reference RWKV-7 forward for one sequence: the definition the GPU path is tested against.
 * Its backward is in `backward.ts`.
 *
 * @module
 */
import type { RwkvState, RwkvWeights } from "../model/types.ts";
import { zeroState } from "../model/types.ts";
import { type ChannelMixCache, channelMixForward } from "./channel_mix.ts";
import { linear } from "./linear.ts";
import { layerNorm } from "./norm.ts";
import { embedLayerNorm } from "./embed_layernorm.ts";
import { type TimeMixCache, timeMixForward } from "./time_mix.ts";
import type { LiftedLayers } from "./lifted_types.ts";

/**
 * One layer's state with any numeric arrays (an {@link RwkvState} entry fits; float64 arrays
 * let finite differences perturb the state precisely). att, ffn: (C); wkv: (H·N·N).
 */
export interface RefLayerState {
  att: ArrayLike<number>;
  wkv: ArrayLike<number>;
  ffn: ArrayLike<number>;
}

/** One layer's state in float64: att, ffn (C); wkv (H·N·N). */
export interface RefLayerState64 {
  att: Float64Array;
  wkv: Float64Array;
  ffn: Float64Array;
}

/** Per-layer intermediates of a reference forward (for the reference backward). */
export interface LayerCache {
  /** residual stream entering the layer (T, C) */
  x: Float64Array;
  /** residual stream between the time mix and the channel mix (T, C) */
  xMid: Float64Array;
  att: TimeMixCache;
  ffn: ChannelMixCache;
}

/** Every intermediate of a reference forward (`keepCache`). */
export interface RefModelCache {
  tokens: number[];
  /** emb[token] rows before ln0 (T, C) */
  emb: Float64Array;
  /** ln0 output: the residual stream entering layer 0 (T, C) */
  x0: Float64Array;
  layers: LayerCache[];
  /** residual stream after the last layer (T, C) */
  xOut: Float64Array;
  /** ln_out output ((T or 1), C) */
  xNorm: Float64Array;
}

/** Result of {@link refForward}. */
export interface RefForwardResult {
  /** (T, V) logits, or (1, V) for the last token only when `lastOnly` */
  logits: Float64Array;
  /** the state after the last token (float32) */
  state: RwkvState;
  /** the same state in float64 */
  state64: RefLayerState64[];
  /** with `options.lifted`: per layer the final lifted state Ŝ_T (H·N·M), or undefined */
  lifted?: (Float64Array | undefined)[];
  /** present when `keepCache` */
  cache?: RefModelCache;
}

/**
 * Run the model over `tokens` from `state` (zero state when omitted).
 *
 * @param tokens T token ids in [0, V)
 * @param state L layer states (float32 or float64)
 * @param options.lastOnly compute logits for the last token only
 * @param options.keepCache return every intermediate (needed by `refBackward`)
 * @param options.lifted per layer a kernel-upscaled state (docs/MATH.md §5) or undefined; length L
 * @example
 * ```ts ignore
 * const { logits, state } = refForward(weights, [34, 105, 110]);
 * ```
 */
export function refForward(
  weights: RwkvWeights,
  tokens: number[],
  state?: RwkvState | RefLayerState[],
  options: { lastOnly?: boolean; keepCache?: boolean; lifted?: LiftedLayers } = {},
): RefForwardResult {
  const cfg = weights.config;
  const { nEmbd: C, nHead: H, headSize: N, vocabSize: V } = cfg;
  const T = tokens.length;
  if (T === 0) throw new RangeError("refForward needs at least one token");
  const s: RefLayerState[] = state ?? zeroState(cfg);
  if (s.length !== cfg.nLayer) {
    throw new RangeError(`state has ${s.length} layers, the model has ${cfg.nLayer}`);
  }
  const { emb, x: x0 } = embedLayerNorm(weights.emb, tokens, weights.ln0_w, weights.ln0_b, V, C);
  let x = x0;
  const dims = { T, H, N, dimW: cfg.dimW, dimA: cfg.dimA, dimV: cfg.dimV, dimG: cfg.dimG };
  let vFirst: Float64Array | undefined;
  const state64: RefLayerState64[] = [];
  const layers: LayerCache[] = [];
  const lifted = options.lifted;
  if (lifted && lifted.length !== cfg.nLayer) {
    throw new RangeError(`lifted has ${lifted.length} layers, the model has ${cfg.nLayer}`);
  }
  const liftedOut: (Float64Array | undefined)[] = [];
  weights.blocks.forEach((w, l) => {
    const att = timeMixForward(w, x, s[l].att, s[l].wkv, vFirst, dims, lifted?.[l]);
    liftedOut.push(att.lifted);
    vFirst = att.vFirst;
    const xMid = new Float64Array(T * C);
    for (let i = 0; i < T * C; i++) xMid[i] = x[i] + att.out[i];
    const ffn = channelMixForward(w, xMid, s[l].ffn, T, C, cfg.dimFfn);
    const xNext = new Float64Array(T * C);
    for (let i = 0; i < T * C; i++) xNext[i] = xMid[i] + ffn.out[i];
    if (options.keepCache) layers.push({ x, xMid, att: att.cache, ffn: ffn.cache });
    state64.push({ att: att.shift, wkv: att.state, ffn: ffn.shift });
    x = xNext;
  });
  const rows = options.lastOnly ? 1 : T;
  const xs = x.subarray((T - rows) * C);
  const xNorm = layerNorm(xs, weights.ln_out_w, weights.ln_out_b, rows, C);
  const logits = linear(xNorm, weights.head, rows, C, V);
  const newState: RwkvState = state64.map((ls) => ({
    att: Float32Array.from(ls.att),
    wkv: Float32Array.from(ls.wkv),
    ffn: Float32Array.from(ls.ffn),
  }));
  return {
    logits,
    state: newState,
    state64,
    lifted: lifted ? liftedOut : undefined,
    cache: options.keepCache
      ? { tokens: tokens.slice(), emb, x0, layers, xOut: x, xNorm }
      : undefined,
  };
}
