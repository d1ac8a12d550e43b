/**
 * Reference RWKV-7 time mix (the attention block of one layer, SPEC §1) and its backward, for
 * one sequence.
 *
 * @module
 */
import type { LayerWeights } from "../model/types.ts";
import type { LayerGrads } from "./grads.ts";
import { linear, linearBackward, matmul, matmulBackward } from "./linear.ts";
import { groupNorm, groupNormBackward, layerNorm, layerNormBackward } from "./norm.ts";
import { shiftMix, shiftMixBackward, tokenShift, tokenShiftBackward } from "./shift.ts";
import { wkvBackward, wkvForward } from "./wkv.ts";
import type { LiftedState } from "./lifted_types.ts";
import { liftedBackward, type LiftedCache, liftedForward } from "./lifted.ts";

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

/** Logistic sigmoid. */
export const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));

/** e^(−1/2): the decay is d = exp(−e^(−1/2) σ(z)). */
const DECAY_SCALE = Math.exp(-0.5);

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
  /** the lifted branch's intermediates (SPEC §6), when the layer has one */
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
 * @param lifted this layer's kernel-upscaled state (SPEC §6), absent for none: its output
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
  const wHidden = matmul(mix.w, w.w1, T, C, dims.dimW).map(Math.tanh);
  const z = matmul(wHidden, w.w2, T, dims.dimW, C);
  const d = new Float64Array(T * C);
  for (let i = 0; i < T * C; i++) {
    z[i] += w.w0[i % C];
    d[i] = Math.exp(-DECAY_SCALE * sigmoid(z[i]));
  }
  const vFirstIn = vFirst;
  let v = v0;
  let vGate: Float64Array | undefined, vHidden: Float64Array | undefined;
  if (vFirst === undefined) {
    vFirst = v0;
  } else {
    vHidden = matmul(mix.v, w.v1!, T, C, dims.dimV);
    vGate = matmul(vHidden, w.v2!, T, dims.dimV, C);
    v = new Float64Array(T * C);
    for (let i = 0; i < T * C; i++) {
      vGate[i] = sigmoid(w.v0![i % C] + vGate[i]);
      v[i] = v0[i] + (vFirst[i] - v0[i]) * vGate[i];
    }
  }
  const aHidden = matmul(mix.a, w.a1, T, C, dims.dimA);
  const a = matmul(aHidden, w.a2, T, dims.dimA, C).map((s, i) => sigmoid(w.a0[i % C] + s));
  const gHidden = matmul(mix.g, w.g1, T, C, dims.dimG).map(sigmoid);
  const g = matmul(gHidden, w.g2, T, dims.dimG, C);
  // kk = per-head L2-normalise(k ⊙ k_k), from k before its k_a update
  const kk = new Float64Array(T * C);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < H; h++) {
      const o = t * C + h * N;
      let n2 = 0;
      for (let j = 0; j < N; j++) n2 += (k0[o + j] * w.k_k[h * N + j]) ** 2;
      const inv = 1 / Math.max(Math.sqrt(n2), 1e-12);
      for (let j = 0; j < N; j++) kk[o + j] = k0[o + j] * w.k_k[h * N + j] * inv;
    }
  }
  const k = new Float64Array(T * C);
  const alpha = new Float64Array(T * C);
  const beta = new Float64Array(T * C);
  for (let i = 0; i < T * C; i++) {
    k[i] = k0[i] * (1 + (a[i] - 1) * w.k_a[i % C]);
    alpha[i] = -kk[i];
    beta[i] = kk[i] * a[i];
  }
  const s0f = Float64Array.from(s0);
  const { y, state } = wkvForward({ r, d, k, v, alpha, beta }, s0f, T, H, N);
  const lf = lifted ? liftedForward({ kk, r, d, a, k, v }, lifted, T, H, N) : undefined;
  if (lf) { for (let i = 0; i < T * C; i++) y[i] += lf.y[i]; }
  const o = groupNorm(y, w.lnx_w, w.lnx_b, T, H, N, N * 1e-5);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < H; h++) {
      const base = t * C + h * N;
      let s = 0;
      for (let j = 0; j < N; j++) s += r[base + j] * k[base + j] * w.r_k[h * N + j];
      for (let j = 0; j < N; j++) o[base + j] += s * v[base + j];
    }
  }
  const og = new Float64Array(T * C);
  for (let i = 0; i < T * C; i++) og[i] = o[i] * g[i];
  const out = linear(og, w.Wo, T, C, C);
  const cache: TimeMixCache = {
    ...{ x, s0: s0f, vFirst: vFirstIn, u, uPrev, mix, r, k0, k, v0, v, wHidden, z, d },
    ...{ aHidden, a, gHidden, g, vGate, vHidden, kk, alpha, beta, y, o, lifted: lf?.cache },
  };
  return { out, vFirst, shift: u.slice((T - 1) * C), state, lifted: lf?.state, cache };
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
 * Backward of {@link timeMixForward} through every path of SPEC §1.
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
  options: {
    dState?: ArrayLike<number>;
    dShiftOut?: ArrayLike<number>;
    dvFirst?: ArrayLike<number>;
    weightGrads?: boolean;
    dLiftedState?: ArrayLike<number>;
  } = {},
): TimeMixGrads {
  const { T, H, N } = dims;
  const C = H * N, TC = T * C;
  const c = cache;
  const wg = options.weightGrads ?? false;
  // out = Wo · (o ⊙ g)
  const og = new Float64Array(TC);
  for (let i = 0; i < TC; i++) og[i] = c.o[i] * c.g[i];
  const lo = linearBackward(dOut, og, w.Wo, T, C, C, wg);
  const dO = new Float64Array(TC), dg = new Float64Array(TC);
  for (let i = 0; i < TC; i++) {
    dO[i] = lo.dx[i] * c.g[i];
    dg[i] = lo.dx[i] * c.o[i];
  }
  // o = GroupNorm(y) + bonus; y = WKV(r, d, k, v, α, β)
  const dr = new Float64Array(TC), dk = new Float64Array(TC), dv = new Float64Array(TC);
  const dr_k = bonusBackward(dO, c, w.r_k, dr, dk, dv, T, H, N);
  const gn = groupNormBackward(dO, c.y, w.lnx_w, T, H, N, N * 1e-5, wg);
  const wkvIn = { r: c.r, d: c.d, k: c.k, v: c.v, alpha: c.alpha, beta: c.beta };
  const wk = wkvBackward(wkvIn, c.s0, gn.dx, T, H, N, options.dState);
  for (let i = 0; i < TC; i++) {
    dr[i] += wk.dr[i];
    dk[i] += wk.dk[i];
    dv[i] += wk.dv[i];
  }
  // the lifted branch reads kk, r, d, a (and the written k, v in writes mode)
  const lb = c.lifted && liftedBackward(c.lifted, gn.dx, T, H, N, options.dLiftedState);
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
  const key = keyBackward(w, c, dk, wk.dalpha, wk.dbeta, da, T, H, N, lb?.dkk);
  // decay: d = exp(−e^(−1/2) σ(z))  ⇒  ∂d/∂z = −e^(−1/2) d σ(z)(1 − σ(z))
  const dz = new Float64Array(TC);
  for (let i = 0; i < TC; i++) {
    const s = sigmoid(c.z[i]);
    dz[i] = -wk.dd[i] * DECAY_SCALE * c.d[i] * s * (1 - s);
  }
  const lw = lowRankBackward(dz, c.mix.w, w.w1, w.w2, c.wHidden, "tanh", T, C, dims.dimW, wg);
  // a = σ(a0 + (mix_a · a1) · a2)
  const dpa = da.map((x, i) => x * c.a[i] * (1 - c.a[i]));
  const la = lowRankBackward(dpa, c.mix.a, w.a1, w.a2, c.aHidden, "none", T, C, dims.dimA, wg);
  // g = σ(mix_g · g1) · g2
  const lg = lowRankBackward(dg, c.mix.g, w.g1, w.g2, c.gHidden, "sigmoid", T, C, dims.dimG, wg);
  // value residual
  const vr = valueResidualBackward(w, c, dv, options.dvFirst, T, C, dims.dimV, wg);
  // projections
  const lr = linearBackward(dr, c.mix.r, w.Wr, T, C, C, wg);
  const lk = linearBackward(key.dk0, c.mix.k, w.Wk, T, C, C, wg);
  const lv = linearBackward(vr.dv0, c.mix.v, w.Wv, T, C, C, wg);
  if (vr.dmixV) { for (let i = 0; i < TC; i++) lv.dx[i] += vr.dmixV[i]; }
  const dmix: Record<MixName, Float64Array> = {
    r: lr.dx,
    w: lw.dx,
    k: lk.dx,
    v: lv.dx,
    a: la.dx,
    g: lg.dx,
  };
  // token shift and ln1
  const du = new Float64Array(TC), duPrev = new Float64Array(TC);
  const dxm = {} as Record<MixName, Float64Array>;
  for (const m of MIXES) {
    dxm[m] = shiftMixBackward(dmix[m], c.u, c.uPrev, w[`x_${m}`], du, duPrev, T, C);
  }
  if (options.dShiftOut) { for (let j = 0; j < C; j++) du[TC - C + j] += options.dShiftOut[j]; }
  const dShift = tokenShiftBackward(duPrev, du, T, C);
  const ln = layerNormBackward(du, c.x, w.ln1_w, T, C, 1e-5, wg);
  const result: TimeMixGrads = { dx: ln.dx, dShift, dS0: wk.dS0, dvFirst: vr.dvFirst };
  if (lb) {
    result.dLiftedS0 = lb.dS0;
    result.dLiftedGate = lb.dGate;
  }
  if (wg) {
    const zeros = (a?: ArrayLike<number>) => (a ? new Float64Array(a.length) : undefined);
    result.dWeights = {
      ...{ ln1_w: ln.dw!, ln1_b: ln.db!, x_r: dxm.r, x_w: dxm.w, x_k: dxm.k, x_v: dxm.v },
      ...{ x_a: dxm.a, x_g: dxm.g, w0: lw.dbias!, w1: lw.dm1!, w2: lw.dm2! },
      ...{ a0: la.dbias!, a1: la.dm1!, a2: la.dm2!, g1: lg.dm1!, g2: lg.dm2! },
      v0: vr.dv0b ?? zeros(w.v0),
      v1: vr.dv1 ?? zeros(w.v1),
      v2: vr.dv2 ?? zeros(w.v2),
      ...{ k_k: key.dk_k, k_a: key.dk_a, r_k: dr_k, Wr: lr.dW!, Wk: lk.dW!, Wv: lv.dW! },
      ...{ Wo: lo.dW!, lnx_w: gn.dw!, lnx_b: gn.db! },
    };
  }
  return result;
}

/**
 * Backward of the bonus term `o += (Σ_j r_j k_j r_k[h, j]) · v` per head: accumulates into
 * dr, dk, dv (T, C) and returns dL/dr_k (H·N).
 */
function bonusBackward(
  dO: Float64Array,
  c: TimeMixCache,
  r_k: ArrayLike<number>,
  dr: Float64Array,
  dk: Float64Array,
  dv: Float64Array,
  T: number,
  H: number,
  N: number,
): Float64Array {
  const C = H * N;
  const dr_k = new Float64Array(C);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < H; h++) {
      const o = t * C + h * N;
      let s = 0, ds = 0;
      for (let j = 0; j < N; j++) {
        s += c.r[o + j] * c.k[o + j] * r_k[h * N + j];
        ds += dO[o + j] * c.v[o + j];
      }
      for (let j = 0; j < N; j++) {
        dv[o + j] += s * dO[o + j];
        dr[o + j] += ds * c.k[o + j] * r_k[h * N + j];
        dk[o + j] += ds * c.r[o + j] * r_k[h * N + j];
        dr_k[h * N + j] += ds * c.r[o + j] * c.k[o + j];
      }
    }
  }
  return dr_k;
}

/**
 * Backward of `α = −kk`, `β = kk ⊙ a`, `k = k0 ⊙ (1 + (a − 1) ⊙ k_a)` and
 * `kk = q / max(‖q‖, 1e-12)` with `q = k0 ⊙ k_k` per head. Accumulates dL/da into `da`.
 *
 * @param dk gradient of the modified k (T, C)
 * @param dkkExtra gradient reaching kk by other paths (the lifted branch) (T, C)
 * @returns dk0 (T, C), dk_k (C), dk_a (C)
 */
function keyBackward(
  w: LayerWeights,
  c: TimeMixCache,
  dk: Float64Array,
  dalpha: Float64Array,
  dbeta: Float64Array,
  da: Float64Array,
  T: number,
  H: number,
  N: number,
  dkkExtra?: Float64Array,
): { dk0: Float64Array; dk_k: Float64Array; dk_a: Float64Array } {
  const C = H * N;
  const dk0 = new Float64Array(T * C), dk_k = new Float64Array(C), dk_a = new Float64Array(C);
  const dkk = new Float64Array(N);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < H; h++) {
      const o = t * C + h * N;
      let n2 = 0, dot = 0;
      for (let j = 0; j < N; j++) {
        const i = o + j, ch = h * N + j;
        dkk[j] = -dalpha[i] + dbeta[i] * c.a[i];
        if (dkkExtra) dkk[j] += dkkExtra[i];
        da[i] += dbeta[i] * c.kk[i] + dk[i] * c.k0[i] * w.k_a[ch];
        dk0[i] = dk[i] * (1 + (c.a[i] - 1) * w.k_a[ch]);
        dk_a[ch] += dk[i] * c.k0[i] * (c.a[i] - 1);
        n2 += (c.k0[i] * w.k_k[ch]) ** 2;
        dot += c.kk[i] * dkk[j];
      }
      const norm = Math.sqrt(n2);
      for (let j = 0; j < N; j++) {
        const i = o + j, ch = h * N + j;
        // d(q/‖q‖) = (dkk − kk (kk·dkk)) / ‖q‖; below the 1e-12 floor kk = q / 1e-12 is linear
        const dq = norm > 1e-12 ? (dkk[j] - c.kk[i] * dot) / norm : dkk[j] / 1e-12;
        dk0[i] += dq * w.k_k[ch];
        dk_k[ch] += dq * c.k0[i];
      }
    }
  }
  return { dk0, dk_k, dk_a };
}

/**
 * Backward of a low-rank path `pre = act(x · m1) · m2 (+ bias)`, `hidden = act(x · m1)`.
 *
 * @param dPre gradient of `pre` (T, C)
 * @param x (T, C); m1 (C, D); m2 (D, C); hidden (T, D)
 * @returns dx (T, C); when `wantW`: dm1 (C, D), dm2 (D, C), dbias = Σ_t dPre (C)
 */
function lowRankBackward(
  dPre: Float64Array,
  x: Float64Array,
  m1: ArrayLike<number>,
  m2: ArrayLike<number>,
  hidden: Float64Array,
  act: "tanh" | "sigmoid" | "none",
  T: number,
  C: number,
  D: number,
  wantW: boolean,
): { dx: Float64Array; dm1?: Float64Array; dm2?: Float64Array; dbias?: Float64Array } {
  const l2 = matmulBackward(dPre, hidden, m2, T, D, C, wantW);
  const dh = l2.dx;
  for (let i = 0; i < T * D; i++) {
    const h = hidden[i];
    if (act === "tanh") dh[i] *= 1 - h * h;
    else if (act === "sigmoid") dh[i] *= h * (1 - h);
  }
  const l1 = matmulBackward(dh, x, m1, T, C, D, wantW);
  let dbias: Float64Array | undefined;
  if (wantW) {
    dbias = new Float64Array(C);
    for (let i = 0; i < T * C; i++) dbias[i % C] += dPre[i];
  }
  return { dx: l1.dx, dm1: l1.dM, dm2: l2.dM, dbias };
}

/**
 * Backward of the value residual. Layer 0 (`cache.vFirst` absent): v = v0 = v_first, so
 * dv0 = dv + dvFirstIn. Layers ≥ 1: v = v0 + (v_first − v0) ⊙ gate with
 * gate = σ(v0_bias + (mix_v · v1) · v2).
 *
 * @returns dv0 (T, C); layers ≥ 1: dvFirst (T, C), the extra dmix_v (T, C) and, when `wantW`,
 *   the gradients of the weights v0 (C), v1 (C, Dv), v2 (Dv, C)
 */
function valueResidualBackward(
  w: LayerWeights,
  c: TimeMixCache,
  dv: Float64Array,
  dvFirstIn: ArrayLike<number> | undefined,
  T: number,
  C: number,
  Dv: number,
  wantW: boolean,
): {
  dv0: Float64Array;
  dvFirst?: Float64Array;
  dmixV?: Float64Array;
  dv0b?: Float64Array;
  dv1?: Float64Array;
  dv2?: Float64Array;
} {
  const TC = T * C;
  if (c.vFirst === undefined) {
    const dv0 = dv.slice();
    if (dvFirstIn) { for (let i = 0; i < TC; i++) dv0[i] += dvFirstIn[i]; }
    return { dv0 };
  }
  const gate = c.vGate!;
  const dv0 = new Float64Array(TC), dvFirst = new Float64Array(TC), dpre = new Float64Array(TC);
  for (let i = 0; i < TC; i++) {
    dv0[i] = dv[i] * (1 - gate[i]);
    dvFirst[i] = dv[i] * gate[i];
    dpre[i] = dv[i] * (c.vFirst[i] - c.v0[i]) * gate[i] * (1 - gate[i]);
  }
  const l = lowRankBackward(dpre, c.mix.v, w.v1!, w.v2!, c.vHidden!, "none", T, C, Dv, wantW);
  return { dv0, dvFirst, dmixV: l.dx, dv0b: l.dbias, dv1: l.dm1, dv2: l.dm2 };
}
