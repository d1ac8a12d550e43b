/**
 * Reference of `shaders/gates.wgsl` (decay, value residual; the low-rank products before them
 * are `matmul`) and of `shaders/gates_backward.wgsl` (decay, value residual, the activation
 * derivatives of the low-rank paths).
 *
 * @module
 */
import type { LayerWeights } from "../model/types.ts";
import { matmul, matmulBackward } from "./linear.ts";

/** Logistic sigmoid. */
export const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));

/** e^(−1/2): the decay is d = exp(−e^(−1/2) σ(z)). */
export const DECAY_SCALE = Math.exp(-0.5);

/**
 * The decay `d = exp(−e^(−1/2) σ(z))`, `z = w0 + tanh(mix_w · w1) · w2`.
 *
 * @param mixW (T, C); w0 (C); w1 (C, Dw); w2 (Dw, C)
 * @returns wHidden = tanh(mix_w · w1) (T, Dw), z and d (T, C)
 */
export function decay(
  mixW: Float64Array,
  w: Pick<LayerWeights, "w0" | "w1" | "w2">,
  T: number,
  C: number,
  Dw: number,
): { wHidden: Float64Array; z: Float64Array; d: Float64Array } {
  const wHidden = matmul(mixW, w.w1, T, C, Dw).map(Math.tanh);
  const z = matmul(wHidden, w.w2, T, Dw, C);
  const d = new Float64Array(T * C);
  for (let i = 0; i < T * C; i++) {
    z[i] += w.w0[i % C];
    d[i] = Math.exp(-DECAY_SCALE * sigmoid(z[i]));
  }
  return { wHidden, z, d };
}

/** Backward of {@link decay} from d to z: `dz = −e^(−1/2) dd ⊙ d σ(z)(1 − σ(z))`. */
export function decayBackward(dd: Float64Array, z: Float64Array, d: Float64Array): Float64Array {
  const dz = new Float64Array(dd.length);
  for (let i = 0; i < dd.length; i++) {
    const s = sigmoid(z[i]);
    dz[i] = -dd[i] * DECAY_SCALE * d[i] * s * (1 - s);
  }
  return dz;
}

/**
 * The value residual. Layer 0 (`vFirst` undefined): v = v0, which becomes v_first. Layers ≥ 1:
 * `v = v0 + (v_first − v0) ⊙ vGate`, `vGate = σ(v0_bias + (mix_v · v1) · v2)`.
 *
 * @returns v, v_first (T, C); layers ≥ 1: vGate (T, C) and vHidden = mix_v · v1 (T, Dv)
 */
export function valueResidual(
  mixV: Float64Array,
  v0: Float64Array,
  vFirst: Float64Array | undefined,
  w: Pick<LayerWeights, "v0" | "v1" | "v2">,
  T: number,
  C: number,
  Dv: number,
): { v: Float64Array; vFirst: Float64Array; vGate?: Float64Array; vHidden?: Float64Array } {
  if (vFirst === undefined) return { v: v0, vFirst: v0 };
  const vHidden = matmul(mixV, w.v1!, T, C, Dv);
  const vGate = matmul(vHidden, w.v2!, T, Dv, C);
  const v = new Float64Array(T * C);
  for (let i = 0; i < T * C; i++) {
    vGate[i] = sigmoid(w.v0![i % C] + vGate[i]);
    v[i] = v0[i] + (vFirst[i] - v0[i]) * vGate[i];
  }
  return { v, vFirst, vGate, vHidden };
}

/** The forward values {@link valueResidualBackward} reads. */
export interface ValueCache {
  /** layer 0's v as passed in (layers ≥ 1) */
  vFirst?: Float64Array;
  v0: Float64Array;
  mix: { v: Float64Array };
  vGate?: Float64Array;
  vHidden?: Float64Array;
}

/**
 * Backward of a low-rank path `pre = act(x · m1) · m2 (+ bias)`, `hidden = act(x · m1)`.
 *
 * @param dPre gradient of `pre` (T, C)
 * @param x (T, C); m1 (C, D); m2 (D, C); hidden (T, D)
 * @returns dx (T, C); when `wantW`: dm1 (C, D), dm2 (D, C), dbias = Σ_t dPre (C)
 */
export function lowRankBackward(
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
export function valueResidualBackward(
  w: Pick<LayerWeights, "v1" | "v2">,
  c: ValueCache,
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
