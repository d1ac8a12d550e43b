/**
 * Reference kernel-upscaled ("lifted") state branch of one layer (docs/MATH.md §5, version 2), the
 * reference of `shaders/lifted.wgsl`; its backward (described below) is `lifted_backward.ts`.
 * Float64 throughout.
 *
 * Per head h (Ŝ is N×M, row i = value index, column m = feature index, memory [h][i][m]):
 *
 *     φ(u)_m = exp(−γ_h ‖u − c_{h,m}‖²)     (or φ(u) = u with the identity map, M = N)
 *     e_t = normalise(R_h φ(kk_t))
 *     q_t = ‖r_t‖ R_h φ(r̂_t)                 (read "normalised", the default; "raw": R_h φ(r_t))
 *     u_t = ‖k_t‖ normalise(R_h φ(k̂_t))      (writes mode only)
 *     Ŝ_t = Ŝ_{t−1} D_t − (Ŝ_{t−1} e_t) b_tᵀ  [+ v_t u_tᵀ in writes mode]
 *     y_t = g_h Ŝ_t q_t                       (added to the WKV output before GroupNorm)
 *
 * with, when `headMeans`, D_t = d̄_t I and b_t = ā_t e_t (d̄ = geometric mean of d over the
 * head's N channels, ā = arithmetic mean of a), i.e. Ŝ_t = Ŝ_{t−1}(d̄ I − ā e eᵀ); otherwise
 * (M = N) D_t = diag(d_t) and b_t = e_t ⊙ a_t. g_h = 1 in memory mode, the trained gate in
 * writes mode. k and v are the key and value that write into S (after the k_a modification
 * and the v-first mix).
 *
 * Backward, walking t = T−1 … 0 with G = dL/dŜ_T (zero or the final-state gradient):
 *
 *     dg += dy_t · (Ŝ_t q_t);  dq = g Ŝ_tᵀ dy_t;  G += g dy_t q_tᵀ
 *     writes: dv_t = G u_t;  du_t = Gᵀ v_t
 *     p = Ŝ_{t−1} e;  db = −Gᵀ p;  dp = −G b;  dD_m = Σ_i G[i,m] Ŝ_{t−1}[i,m]
 *     de = Ŝ_{t−1}ᵀ dp + ∂b/∂e · db;   G ← G D + dp eᵀ
 *
 * then through d̄ (∂d̄/∂d_j = d̄ / (N d_j)), ā (∂ā/∂a_j = 1/N) and the scaled features
 * (lib/ref/lifted_math.ts). R gets no gradient: it is not trained by the task loss.
 *
 * @module
 */
import { checkLiftedState, liftedGate, liftedRead, type LiftedState } from "./lifted_types.ts";
import {
  featureBackward,
  featureForward,
  type FeatureShape,
  liftedStep,
  liftedWrite,
} from "./lifted_math.ts";

export { liftedPhi, liftedStep } from "./lifted_math.ts";

/** Inputs the branch reads from the time mix: every vector (T, H·N). */
export interface LiftedInputs {
  /** normalised keys kk */
  kk: ArrayLike<number>;
  /** receptance r */
  r: ArrayLike<number>;
  /** decay d in (0, 1) */
  d: ArrayLike<number>;
  /** in-context learning rate a in (0, 1) */
  a: ArrayLike<number>;
  /** the key that writes into S (after the k_a modification); writes mode only */
  k?: ArrayLike<number>;
  /** the value that writes into S (after the v-first mix); writes mode only */
  v?: ArrayLike<number>;
}

/** One scaled feature of every (t, h): φ, the output, ρ and ‖z‖ per (t, h). */
interface FeatureCache {
  phi: Float64Array;
  out: Float64Array;
  rho: Float64Array;
  zn: Float64Array;
}

/** Intermediates of {@link liftedForward}; feature vectors are (T, H, M). */
export interface LiftedCache {
  state: LiftedState;
  H: number;
  N: number;
  inp: LiftedInputs;
  /** Ŝ0 in float64, (H, N, M) */
  s0: Float64Array;
  /** e = normalise(R φ(kk)) */
  e: FeatureCache;
  /** q, the read vector */
  q: FeatureCache;
  /** u, the write key (writes mode; empty otherwise) */
  u: FeatureCache;
  /** the gate per head (1 in memory mode) */
  gate: Float64Array;
  /** d̄ and ā, (T, H) (head-mean mode only; zeros otherwise) */
  dBar: Float64Array;
  aBar: Float64Array;
}

export const E_SHAPE: FeatureShape = { scaleInput: false, unitOutput: true };
export const U_SHAPE: FeatureShape = { scaleInput: true, unitOutput: true };
export const readShape = (s: LiftedState): FeatureShape => ({
  scaleInput: liftedRead(s) === "normalised",
  unitOutput: false,
});

function featureCache(n: number, M: number): FeatureCache {
  return {
    phi: new Float64Array(n * M),
    out: new Float64Array(n * M),
    rho: new Float64Array(n),
    zn: new Float64Array(n),
  };
}

/** Compute one scaled feature of (t, h) into its cache. */
function fillFeature(
  c: LiftedCache,
  f: FeatureCache,
  x: ArrayLike<number>,
  shape: FeatureShape,
  t: number,
  h: number,
): void {
  const th = t * c.H + h, o = t * c.H * c.N + h * c.N;
  const r = featureForward(c.state, h, c.N, x, o, shape, f.phi, f.out, th * c.state.M);
  f.rho[th] = r.rho;
  f.zn[th] = r.zn;
}

/** Backward of one scaled feature of (t, h): accumulates dL/dx into `dx`. */
export function featureGrad(
  c: LiftedCache,
  f: FeatureCache,
  x: ArrayLike<number>,
  shape: FeatureShape,
  t: number,
  h: number,
  dout: Float64Array,
  dx: Float64Array,
): void {
  const th = t * c.H + h, o = t * c.H * c.N + h * c.N, off = th * c.state.M;
  const fc = { phi: f.phi, out: f.out, off, rho: f.rho[th], zn: f.zn[th] };
  featureBackward(c.state, h, c.N, x, o, shape, fc, dout, dx);
}

/** D and b (M) of token t, head h (see the module doc). */
export function editTerms(
  c: LiftedCache,
  t: number,
  h: number,
  D: Float64Array,
  b: Float64Array,
): void {
  const { M, headMeans } = c.state;
  const th = t * c.H + h, fo = th * M, e = c.e.out;
  if (headMeans) {
    for (let m = 0; m < M; m++) {
      D[m] = c.dBar[th];
      b[m] = c.aBar[th] * e[fo + m];
    }
  } else {
    const o = t * c.H * c.N + h * c.N;
    for (let m = 0; m < M; m++) {
      D[m] = c.inp.d[o + m];
      b[m] = e[fo + m] * c.inp.a[o + m];
    }
  }
}

/** One full token of head h on the (N, M) block at `off`: edit, then the write. */
export function tokenStep(
  c: LiftedCache,
  S: Float64Array,
  off: number,
  t: number,
  h: number,
): void {
  const { M } = c.state, N = c.N, D = new Float64Array(M), b = new Float64Array(M);
  editTerms(c, t, h, D, b);
  liftedStep(S, off, N, M, c.e.out, (t * c.H + h) * M, D, b);
  if (c.state.writes) {
    liftedWrite(S, off, N, M, c.inp.v!, t * c.H * N + h * N, c.u.out, (t * c.H + h) * M);
  }
}

/** Check the inputs writes mode needs. */
function checkInputs(inp: LiftedInputs, s: LiftedState, n: number): void {
  if (!s.writes) return;
  for (const k of ["k", "v"] as const) {
    if (!inp[k] || inp[k]!.length !== n) {
      throw new RangeError(
        `lifted writes mode needs inputs.${k} of length ${n}, got ${inp[k]?.length}`,
      );
    }
  }
}

/**
 * The lifted branch of one layer over T tokens, all heads.
 *
 * @param inp kk, r, d, a of the time mix, each (T, H·N); k and v too in writes mode
 * @param s the layer's lifted state (Ŝ0 (H, N, M), R, support vectors, γ, gate, options)
 * @returns y: the increment to the WKV output (T, H·N); state: Ŝ_T (H, N, M); cache
 * @throws {RangeError} when a tensor of `s` has the wrong length for (H, N, M), or writes mode
 *   lacks k or v
 */
export function liftedForward(
  inp: LiftedInputs,
  s: LiftedState,
  T: number,
  H: number,
  N: number,
): { y: Float64Array; state: Float64Array; cache: LiftedCache } {
  checkLiftedState(s, H, N);
  const C = H * N, M = s.M, TH = T * H;
  checkInputs(inp, s, T * C);
  const S = Float64Array.from(s.s0);
  const c: LiftedCache = {
    ...{ state: s, H, N, inp, s0: Float64Array.from(s.s0) },
    e: featureCache(TH, M),
    q: featureCache(TH, M),
    u: featureCache(s.writes ? TH : 0, M),
    gate: Float64Array.from({ length: H }, (_, h) => liftedGate(s, h)),
    dBar: new Float64Array(TH),
    aBar: new Float64Array(TH),
  };
  const y = new Float64Array(T * C), rs = readShape(s);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < H; h++) {
      const o = t * C + h * N, th = t * H + h, fo = th * M;
      fillFeature(c, c.e, inp.kk, E_SHAPE, t, h);
      fillFeature(c, c.q, inp.r, rs, t, h);
      if (s.writes) fillFeature(c, c.u, inp.k!, U_SHAPE, t, h);
      if (s.headMeans) {
        let logSum = 0, aSum = 0;
        for (let j = 0; j < N; j++) {
          logSum += Math.log(inp.d[o + j]);
          aSum += inp.a[o + j];
        }
        c.dBar[th] = Math.exp(logSum / N);
        c.aBar[th] = aSum / N;
      }
      tokenStep(c, S, h * N * M, t, h);
      for (let i = 0; i < N; i++) {
        const row = h * N * M + i * M;
        let yi = 0;
        for (let m = 0; m < M; m++) yi += S[row + m] * c.q.out[fo + m];
        y[o + i] = c.gate[h] * yi;
      }
    }
  }
  return { y, state: S, cache: c };
}
