/**
 * Reference RWKV-7 time mix (the attention block of one layer, docs/MATH.md §2) and its backward, for
 * one sequence.
 *
 * @module
 */
import type { LayerWeights } from "../model/types.ts";
import type { LayerGrads } from "./grads.ts";
import { linear, linearBackward, matmul } from "./linear.ts";
import { groupNormBackward, layerNorm, layerNormBackward } from "./norm.ts";
import { shiftMix, shiftMixBackward, tokenShift, tokenShiftBackward } from "./shift.ts";
import { wkvBackward, wkvForward } from "./wkv.ts";
import type { LiftedState } from "./lifted_types.ts";
import { type LiftedCache, liftedForward } from "./lifted.ts";
import { liftedBackward } from "./lifted_backward.ts";
import {
  decay,
  decayBackward,
  lowRankBackward,
  sigmoid,
  valueResidual,
  valueResidualBackward,
} from "./gates.ts";
import { keyNorm, keyNormBackward } from "./key_norm.ts";
import { bonusBackward, groupNormBonus } from "./groupnorm_bonus.ts";

/** Sizes the time mix needs. */
export interface TimeMixDims {
  T: number;
  H: number;
  N: number;
  dimW: number;
  dimA: number;
  dimV: number;
  dimG: number;
}

export { sigmoid } from "./gates.ts";

/** The six token-shift mixes of the time mix. */
export type MixName = "r" | "w" | "k" | "v" | "a" | "g";
const MIXES: MixName[] = ["r", "w", "k", "v", "a", "g"];

/** Every intermediate of the time mix (the backward reads them). All (T, C) unless noted. */
export interface TimeMixCache {
  /** the layer input (residual stream) */
  x: ArrayLike<number>;
  /** the wkv state before the first token, float64 (H·N·N) */
  s0: Float64Array;
  /** layer 0's v as passed in (layers ≥ 1) */
  vFirst?: Float64Array;
  /** ln1 output */
  u: Float64Array;
  /** u of the previous token (the shift state at t = 0) */
  uPrev: Float64Array;
  mix: Record<MixName, Float64Array>;
  r: Float64Array;
  /** k before the k_a update */
  k0: Float64Array;
  /** k after the k_a update (fed to WKV and the bonus term) */
  k: Float64Array;
  /** v before the value residual */
  v0: Float64Array;
  /** v after the value residual */
  v: Float64Array;
  /** tanh(mix_w · w1), (T, Dw) */
  wHidden: Float64Array;
  /** z = w0 + tanh(mix_w · w1) · w2 */
  z: Float64Array;
  d: Float64Array;
  /** mix_a · a1, (T, Da) */
  aHidden: Float64Array;
  a: Float64Array;
  /** σ(mix_g · g1), (T, Dg) */
  gHidden: Float64Array;
  g: Float64Array;
  /** σ(v0 + (mix_v · v1) · v2) (layers ≥ 1) */
  vGate?: Float64Array;
  /** mix_v · v1, (T, Dv) (layers ≥ 1) */
  vHidden?: Float64Array;
  kk: Float64Array;
  /** α = −kk */
  alpha: Float64Array;
  /** β = kk ⊙ a */
  beta: Float64Array;
  /** GroupNorm input: the WKV output, plus the lifted branch's increment when present */
  y: Float64Array;
  /** the lifted branch's intermediates (docs/MATH.md §5), when the layer has one */
  lifted?: LiftedCache;
  /** GroupNorm output plus the bonus term, before the gate */
  o: Float64Array;
}

/**
 * Time mix of layer `w` over T tokens.
 *
 * @param x residual stream (T, C)
 * @param shift ln1 output of the token before this sequence (C)
 * @param s0 wkv state (H·N·N)
 * @param vFirst layer 0's v (T, C), or undefined when this is layer 0
 * @param lifted this layer's kernel-upscaled state (docs/MATH.md §5), absent for none: its output
 *   `Ŝ_t q_t` is added to the WKV output before GroupNorm
 * @returns the residual increment `Wo·(o ⊙ g)` (T, C), layer-0 v, new shift (C) and wkv state
 *   (H·N·N, float64), the final lifted state Ŝ_T (H·N·M) when `lifted`, cache
 */
export function timeMixForward(
  w: LayerWeights,
  x: ArrayLike<number>,
  shift: ArrayLike<number>,
  s0: ArrayLike<number>,
  vFirst: Float64Array | undefined,
  dims: TimeMixDims,
  lifted?: LiftedState,
): {
  out: Float64Array;
  vFirst: Float64Array;
  shift: Float64Array;
  state: Float64Array;
  lifted?: Float64Array;
  cache: TimeMixCache;
} {
  const { T, H, N } = dims;
  const C = H * N;
  const u = layerNorm(x, w.ln1_w, w.ln1_b, T, C);
  const uPrev = tokenShift(u, shift, T, C);
  const mix = {} as Record<MixName, Float64Array>;
  for (const m of MIXES) mix[m] = shiftMix(u, uPrev, w[`x_${m}`], T, C);
  const r = linear(mix.r, w.Wr, T, C, C);
  const k0 = linear(mix.k, w.Wk, T, C, C);
  const v0 = linear(mix.v, w.Wv, T, C, C);
  const { wHidden, z, d } = decay(mix.w, w, T, C, dims.dimW);
  const val = valueResidual(mix.v, v0, vFirst, w, T, C, dims.dimV);
  const aHidden = matmul(mix.a, w.a1, T, C, dims.dimA);
  const a = matmul(aHidden, w.a2, T, dims.dimA, C).map((s, i) => sigmoid(w.a0[i % C] + s));
  const gHidden = matmul(mix.g, w.g1, T, C, dims.dimG).map(sigmoid);
  const g = matmul(gHidden, w.g2, T, dims.dimG, C);
  const { kk, k } = keyNorm(k0, a, w.k_k, w.k_a, T, H, N);
  const alpha = new Float64Array(T * C);
  const beta = new Float64Array(T * C);
  for (let i = 0; i < T * C; i++) {
    alpha[i] = -kk[i];
    beta[i] = kk[i] * a[i];
  }
  const v = val.v, s0f = Float64Array.from(s0);
  const { y, state } = wkvForward({ r, d, k, v, alpha, beta }, s0f, T, H, N);
  const lf = lifted ? liftedForward({ kk, r, d, a, k, v }, lifted, T, H, N) : undefined;
  if (lf) { for (let i = 0; i < T * C; i++) y[i] += lf.y[i]; }
  const o = groupNormBonus(y, { r, k, v }, w.lnx_w, w.lnx_b, w.r_k, T, H, N);
  const og = new Float64Array(T * C);
  for (let i = 0; i < T * C; i++) og[i] = o[i] * g[i];
  const out = linear(og, w.Wo, T, C, C);
  const { vGate, vHidden } = val;
  const cache: TimeMixCache = {
    ...{ x, s0: s0f, vFirst, u, uPrev, mix, r, k0, k, v0, v, wHidden, z, d },
    ...{ aHidden, a, gHidden, g, vGate, vHidden, kk, alpha, beta, y, o, lifted: lf?.cache },
  };
  return { out, vFirst: val.vFirst, shift: u.slice((T - 1) * C), state, lifted: lf?.state, cache };
}

/** Weight gradients of the time mix: the {@link LayerGrads} fields it owns. */
export type TimeMixWeightGrads = Omit<
  LayerGrads,
  "ln2_w" | "ln2_b" | "ffn_x_k" | "ffn_key" | "ffn_value"
>;

/** Result of {@link timeMixBackward}. */
export interface TimeMixGrads {
  /** dL/dx (T, C) */
  dx: Float64Array;
  /** dL/d(incoming shift state) (C) */
  dShift: Float64Array;
  /** dL/dS0 (H·N·N) */
  dS0: Float64Array;
  /** dL/dŜ0 (H·N·M), when the layer has a lifted branch */
  dLiftedS0?: Float64Array;
  /** dL/dg (H), when the layer has a lifted branch (zeros in memory mode) */
  dLiftedGate?: Float64Array;
  /** dL/d(v_first) (T, C), layers ≥ 1 only: add it to layer 0's `options.dvFirst` */
  dvFirst?: Float64Array;
  /** present when `options.weightGrads` */
  dWeights?: TimeMixWeightGrads;
}

/**
 * Backward of {@link timeMixForward} through every path of docs/MATH.md §2.
 *
 * @param cache the forward's cache
 * @param dOut gradient of the residual increment (T, C)
 * @param options.dState gradient of the final wkv state (H·N·N), zero when omitted
 * @param options.dShiftOut gradient of the outgoing shift state (C), zero when omitted
 * @param options.dvFirst layer 0 only: the summed `dvFirst` of all later layers (T, C)
 * @param options.weightGrads also return the weight gradients
 * @param options.dLiftedState gradient of the final lifted state Ŝ_T (H·N·M), zero when omitted
 */
export function timeMixBackward(
  w: LayerWeights,
  cache: TimeMixCache,
  dOut: ArrayLike<number>,
  dims: TimeMixDims,
  options: TimeMixBackwardOptions = {},
): TimeMixGrads {
  const { T, H, N } = dims;
  const C = H * N, TC = T * C;
  const c = cache;
  const wg = options.weightGrads ?? false;
  const out = outputBackward(w, c, dOut, T, H, N, wg);
  // y = WKV(r, d, k, v, α, β) (+ the lifted branch, which reads kk, r, d, a and k, v)
  const { dr, dk, dv } = out;
  const wkvIn = { r: c.r, d: c.d, k: c.k, v: c.v, alpha: c.alpha, beta: c.beta };
  const wk = wkvBackward(wkvIn, c.s0, out.gn.dx, T, H, N, options.dState);
  for (let i = 0; i < TC; i++) {
    dr[i] += wk.dr[i];
    dk[i] += wk.dk[i];
    dv[i] += wk.dv[i];
  }
  const lb = c.lifted && liftedBackward(c.lifted, out.gn.dx, T, H, N, options.dLiftedState);
  const da = lb ? lb.da : new Float64Array(TC);
  if (lb) {
    for (let i = 0; i < TC; i++) {
      dr[i] += lb.dr[i];
      wk.dd[i] += lb.dd[i];
      dk[i] += lb.dk[i];
      dv[i] += lb.dv[i];
    }
  }
  // α, β, k_a update, kk normalisation → k0 and a
  const key = keyNormBackward(w, c, dk, wk.dalpha, wk.dbeta, da, T, H, N, lb?.dkk);
  const inp = inputBackward(w, c, { dr, dk0: key.dk0, dv, da, dd: wk.dd, dg: out.dg }, dims, {
    dvFirst: options.dvFirst,
    dShiftOut: options.dShiftOut,
    wg,
  });
  const result: TimeMixGrads = {
    dx: inp.ln.dx,
    dShift: inp.dShift,
    dS0: wk.dS0,
    dvFirst: inp.vr.dvFirst,
  };
  if (lb) {
    result.dLiftedS0 = lb.dS0;
    result.dLiftedGate = lb.dGate;
  }
  if (wg) result.dWeights = weightGrads(w, inp, out, key);
  return result;
}

/** Options of {@link timeMixBackward}. */
export interface TimeMixBackwardOptions {
  dState?: ArrayLike<number>;
  dShiftOut?: ArrayLike<number>;
  dvFirst?: ArrayLike<number>;
  weightGrads?: boolean;
  dLiftedState?: ArrayLike<number>;
}

/**
 * Backward of `out = Wo · (o ⊙ g)`, `o = GroupNorm(y) + bonus`: dg, the bonus parts of dr, dk,
 * dv (each (T, C)), dL/dr_k, and the GroupNorm backward (`gn.dx` = dL/dy).
 */
function outputBackward(
  w: LayerWeights,
  c: TimeMixCache,
  dOut: ArrayLike<number>,
  T: number,
  H: number,
  N: number,
  wg: boolean,
) {
  const C = H * N, TC = T * C;
  const og = new Float64Array(TC);
  for (let i = 0; i < TC; i++) og[i] = c.o[i] * c.g[i];
  const lo = linearBackward(dOut, og, w.Wo, T, C, C, wg);
  const dO = new Float64Array(TC), dg = new Float64Array(TC);
  for (let i = 0; i < TC; i++) {
    dO[i] = lo.dx[i] * c.g[i];
    dg[i] = lo.dx[i] * c.o[i];
  }
  const dr = new Float64Array(TC), dk = new Float64Array(TC), dv = new Float64Array(TC);
  const dr_k = bonusBackward(dO, c, w.r_k, dr, dk, dv, T, H, N);
  const gn = groupNormBackward(dO, c.y, w.lnx_w, T, H, N, N * 1e-5, wg);
  return { lo, dg, dr, dk, dv, dr_k, gn };
}

/**
 * From dr, dk0, dv, da, dd, dg back through the decay, the low-rank paths, the value residual,
 * the projections, the token-shift mixes and ln1.
 */
function inputBackward(
  w: LayerWeights,
  c: TimeMixCache,
  g: Record<"dr" | "dk0" | "dv" | "da" | "dd" | "dg", Float64Array>,
  dims: TimeMixDims,
  o: { dvFirst?: ArrayLike<number>; dShiftOut?: ArrayLike<number>; wg: boolean },
) {
  const { T, H, N } = dims;
  const C = H * N, TC = T * C, wg = o.wg;
  // decay: d = exp(−e^(−1/2) σ(z))
  const dz = decayBackward(g.dd, c.z, c.d);
  const lw = lowRankBackward(dz, c.mix.w, w.w1, w.w2, c.wHidden, "tanh", T, C, dims.dimW, wg);
  // a = σ(a0 + (mix_a · a1) · a2)
  const dpa = g.da.map((x, i) => x * c.a[i] * (1 - c.a[i]));
  const la = lowRankBackward(dpa, c.mix.a, w.a1, w.a2, c.aHidden, "none", T, C, dims.dimA, wg);
  // g = σ(mix_g · g1) · g2
  const lg = lowRankBackward(g.dg, c.mix.g, w.g1, w.g2, c.gHidden, "sigmoid", T, C, dims.dimG, wg);
  const vr = valueResidualBackward(w, c, g.dv, o.dvFirst, T, C, dims.dimV, wg);
  // projections
  const lr = linearBackward(g.dr, c.mix.r, w.Wr, T, C, C, wg);
  const lk = linearBackward(g.dk0, c.mix.k, w.Wk, T, C, C, wg);
  const lv = linearBackward(vr.dv0, c.mix.v, w.Wv, T, C, C, wg);
  if (vr.dmixV) { for (let i = 0; i < TC; i++) lv.dx[i] += vr.dmixV[i]; }
  const dmix = { r: lr.dx, w: lw.dx, k: lk.dx, v: lv.dx, a: la.dx, g: lg.dx };
  // token shift and ln1
  const du = new Float64Array(TC), duPrev = new Float64Array(TC);
  const dxm = {} as Record<MixName, Float64Array>;
  for (const m of MIXES) {
    dxm[m] = shiftMixBackward(dmix[m], c.u, c.uPrev, w[`x_${m}`], du, duPrev, T, C);
  }
  if (o.dShiftOut) { for (let j = 0; j < C; j++) du[TC - C + j] += o.dShiftOut[j]; }
  const dShift = tokenShiftBackward(duPrev, du, T, C);
  const ln = layerNormBackward(du, c.x, w.ln1_w, T, C, 1e-5, wg);
  return { lw, la, lg, vr, lr, lk, lv, dxm, dShift, ln };
}

/** The weight gradients gathered from the pieces of {@link timeMixBackward}. */
function weightGrads(
  w: LayerWeights,
  i: ReturnType<typeof inputBackward>,
  o: ReturnType<typeof outputBackward>,
  key: ReturnType<typeof keyNormBackward>,
): TimeMixWeightGrads {
  const zeros = (a?: ArrayLike<number>) => (a ? new Float64Array(a.length) : undefined);
  const { lw, la, lg, vr, lr, lk, lv, dxm, ln } = i;
  return {
    ...{ ln1_w: ln.dw!, ln1_b: ln.db!, x_r: dxm.r, x_w: dxm.w, x_k: dxm.k, x_v: dxm.v },
    ...{ x_a: dxm.a, x_g: dxm.g, w0: lw.dbias!, w1: lw.dm1!, w2: lw.dm2! },
    ...{ a0: la.dbias!, a1: la.dm1!, a2: la.dm2!, g1: lg.dm1!, g2: lg.dm2! },
    v0: vr.dv0b ?? zeros(w.v0),
    v1: vr.dv1 ?? zeros(w.v1),
    v2: vr.dv2 ?? zeros(w.v2),
    ...{ k_k: key.dk_k, k_a: key.dk_a, r_k: o.dr_k, Wr: lr.dW!, Wk: lk.dW!, Wv: lv.dW! },
    ...{ Wo: o.lo.dW!, lnx_w: o.gn.dw!, lnx_b: o.gn.db! },
  };
}
