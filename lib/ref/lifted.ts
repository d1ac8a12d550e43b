/**
 * Reference kernel-upscaled ("lifted") state branch of one layer (SPEC §6) and its backward.
 * Float64 throughout.
 *
 * Per head h (Ŝ is N×M, row i = value index, column m = feature index, memory [h][i][m]):
 *
 *     φ(u)_m = exp(−γ_h ‖u − c_{h,m}‖²)     (or φ(u) = u with the identity map, M = N)
 *     z_t = R_h φ(kk_t);   e_t = z_t / max(‖z_t‖, 1e-12)
 *     q_t = R_h φ(r_t)                        (r unnormalised)
 *     q_t = ‖r_t‖ R_h φ(r_t / ‖r_t‖)          (instead, with the `normalisedRead` option)
 *     Ŝ_t = Ŝ_{t−1} D_t − (Ŝ_{t−1} e_t) b_tᵀ
 *     y_t = Ŝ_t q_t                           (added to the WKV output before GroupNorm)
 *
 * with, when `headMeans`, D_t = d̄_t I and b_t = ā_t e_t (d̄ = geometric mean of d over the
 * head's N channels, ā = arithmetic mean of a), i.e. Ŝ_t = Ŝ_{t−1}(d̄ I − ā e eᵀ); otherwise
 * (M = N) D_t = diag(d_t) and b_t = e_t ⊙ a_t, i.e. Ŝ_{t−1}(diag(d) − e (e ⊙ a)ᵀ).
 *
 * Backward, walking t = T−1 … 0 with G = dL/dŜ_T (zero or the final-state gradient):
 *
 *     dq = Ŝ_tᵀ dy_t;  G += dy_t q_tᵀ
 *     p = Ŝ_{t−1} e;  db = −Gᵀ p;  dp = −G b;  dD_m = Σ_i G[i,m] Ŝ_{t−1}[i,m]
 *     de = Ŝ_{t−1}ᵀ dp + ∂b/∂e · db;   G ← G D + dp eᵀ
 *
 * then through d̄ (∂d̄/∂d_j = d̄ / (N d_j)), ā (∂ā/∂a_j = 1/N), the normalisation, R and φ
 * (∂φ_m/∂u = −2γ φ_m (u − c_m)). R gets no gradient: it is not trained by the task loss.
 *
 * @module
 */
import { checkLiftedState, type LiftedState } from "./lifted_types.ts";

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
}

/** Intermediates of {@link liftedForward}; feature vectors are (T, H, M). */
export interface LiftedCache {
  state: LiftedState;
  H: number;
  N: number;
  inp: LiftedInputs;
  /** Ŝ0 in float64, (H, N, M) */
  s0: Float64Array;
  /** φ(kk) */
  phiK: Float64Array;
  /** max(‖R φ(kk)‖, 1e-12), (T, H) */
  zNorm: Float64Array;
  /** unit edit direction e */
  e: Float64Array;
  /** φ(r), or φ(r/‖r‖) with `normalisedRead` */
  phiR: Float64Array;
  /** max(‖r‖, 1e-12) per (T, H) with `normalisedRead`; ones otherwise */
  rNorm: Float64Array;
  /** read vector q = R φ(r) */
  q: Float64Array;
  /** d̄ and ā, (T, H) (head-mean mode only; zeros otherwise) */
  dBar: Float64Array;
  aBar: Float64Array;
}

/**
 * φ of one head for one vector.
 *
 * @param u input vectors; the N values at `uOff` are used
 * @param out (M) written with φ(u)
 */
export function liftedPhi(
  s: LiftedState,
  h: number,
  N: number,
  u: ArrayLike<number>,
  uOff: number,
  out: Float64Array,
): Float64Array {
  const M = s.M;
  if (s.featureMap === "identity") {
    for (let m = 0; m < M; m++) out[m] = u[uOff + m];
    return out;
  }
  const c = s.support!, g = s.gamma![h];
  for (let m = 0; m < M; m++) {
    const co = (h * M + m) * N;
    let d2 = 0;
    for (let j = 0; j < N; j++) d2 += (u[uOff + j] - c[co + j]) ** 2;
    out[m] = Math.exp(-g * d2);
  }
  return out;
}

/** dL/du of φ of one head given dL/dφ: accumulates into `du` at `uOff` (N values). */
function liftedPhiBackward(
  s: LiftedState,
  h: number,
  N: number,
  u: ArrayLike<number>,
  uOff: number,
  phi: Float64Array,
  phiOff: number,
  dphi: Float64Array,
  du: Float64Array,
): void {
  const M = s.M;
  if (s.featureMap === "identity") {
    for (let m = 0; m < M; m++) du[uOff + m] += dphi[m];
    return;
  }
  // du = −2γ Σ_m dφ_m φ_m (u − c_m)
  const c = s.support!, g2 = -2 * s.gamma![h];
  for (let m = 0; m < M; m++) {
    const wm = g2 * dphi[m] * phi[phiOff + m];
    if (wm === 0) continue;
    const co = (h * M + m) * N;
    for (let j = 0; j < N; j++) du[uOff + j] += wm * (u[uOff + j] - c[co + j]);
  }
}

/** out = R_h x (transpose: out = R_hᵀ x); x at `xOff` in `x`, M values. */
function mixR(
  R: ArrayLike<number>,
  h: number,
  M: number,
  x: ArrayLike<number>,
  xOff: number,
  out: Float64Array,
  outOff: number,
  transpose = false,
): void {
  const base = h * M * M;
  for (let i = 0; i < M; i++) {
    let s = 0;
    if (transpose) { for (let j = 0; j < M; j++) s += R[base + j * M + i] * x[xOff + j]; }
    else for (let j = 0; j < M; j++) s += R[base + i * M + j] * x[xOff + j];
    out[outOff + i] = s;
  }
}

/**
 * One token of one head, in place: `S ← S diag(D) − (S e) bᵀ` on an N×M block.
 * Head-mean mode passes `D = d̄·1` and `b = ā e`, which is `S(d̄ I − ā e eᵀ)`.
 *
 * @param S (N, M) block at `off`
 * @param e, D, b (M) at offsets `eOff`, 0, 0
 * @example
 * ```ts
 * import { liftedStep } from "./lifted.ts";
 * const S = Float64Array.of(1, 0, 0, 1); // N = M = 2
 * const e = Float64Array.of(1, 0);
 * liftedStep(S, 0, 2, 2, e, 0, Float64Array.of(0.9, 0.9), Float64Array.of(0.5, 0));
 * console.assert(Math.abs(S[0] - 0.4) < 1e-15 && S[3] === 0.9);
 * ```
 */
export function liftedStep(
  S: Float64Array,
  off: number,
  N: number,
  M: number,
  e: ArrayLike<number>,
  eOff: number,
  D: ArrayLike<number>,
  b: ArrayLike<number>,
): void {
  for (let i = 0; i < N; i++) {
    const row = off + i * M;
    let p = 0;
    for (let m = 0; m < M; m++) p += S[row + m] * e[eOff + m];
    for (let m = 0; m < M; m++) S[row + m] = S[row + m] * D[m] - p * b[m];
  }
}

/** max(‖u‖, 1e-12) of the N values at `off`. */
function headNorm(u: ArrayLike<number>, off: number, N: number): number {
  let n2 = 0;
  for (let j = 0; j < N; j++) n2 += u[off + j] ** 2;
  return Math.max(Math.sqrt(n2), 1e-12);
}

/**
 * Backward of the normalised read q = ρ R φ(r̂), ρ = max(‖r‖, 1e-12), r̂ = r/ρ: accumulates dL/dr
 * of token t, head h into `dr` given dq (M); `dphi` is scratch (M).
 */
function readBackward(
  c: LiftedCache,
  t: number,
  h: number,
  dq: Float64Array,
  dphi: Float64Array,
  dr: Float64Array,
): void {
  const s = c.state, M = s.M, N = c.N, th = t * c.H + h, fo = th * M, o = t * c.H * N + h * N;
  const rn = c.rNorm[th];
  let dRho = 0; // dL/dρ = (q/ρ)·dq
  for (let m = 0; m < M; m++) {
    dRho += (c.q[fo + m] / rn) * dq[m];
    dq[m] *= rn;
  }
  mixR(s.R, h, M, dq, 0, dphi, 0, true);
  const rHat = new Float64Array(N), dHat = new Float64Array(N);
  for (let j = 0; j < N; j++) rHat[j] = c.inp.r[o + j] / rn;
  liftedPhiBackward(s, h, N, rHat, 0, c.phiR, fo, dphi, dHat);
  // r̂ = r/ρ: dr = (dr̂ − r̂ (r̂·dr̂))/ρ + r̂ dρ  (below the floor ρ is constant: dr = dr̂/ρ)
  let dot = 0;
  for (let j = 0; j < N; j++) dot += rHat[j] * dHat[j];
  for (let j = 0; j < N; j++) {
    dr[o + j] += rn > 1e-12 ? (dHat[j] - rHat[j] * dot) / rn + rHat[j] * dRho : dHat[j] / rn;
  }
}

/** D and b (M) of token t, head h (see the module doc). */
function editTerms(c: LiftedCache, t: number, h: number, D: Float64Array, b: Float64Array): void {
  const { M, headMeans } = c.state;
  const th = t * c.H + h, fo = th * M;
  if (headMeans) {
    for (let m = 0; m < M; m++) {
      D[m] = c.dBar[th];
      b[m] = c.aBar[th] * c.e[fo + m];
    }
  } else {
    const o = t * c.H * c.N + h * c.N;
    for (let m = 0; m < M; m++) {
      D[m] = c.inp.d[o + m];
      b[m] = c.e[fo + m] * c.inp.a[o + m];
    }
  }
}

/**
 * The lifted branch of one layer over T tokens, all heads.
 *
 * @param inp kk, r, d, a of the time mix, each (T, H·N)
 * @param s the layer's lifted state (Ŝ0 (H, N, M), R, support vectors, γ, options)
 * @returns y: the increment to the WKV output (T, H·N); state: Ŝ_T (H, N, M); cache
 * @throws {RangeError} when a tensor of `s` has the wrong length for (H, N, M)
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
  const S = Float64Array.from(s.s0);
  const cache: LiftedCache = {
    state: s,
    H,
    N,
    inp,
    s0: Float64Array.from(s.s0),
    phiK: new Float64Array(TH * M),
    zNorm: new Float64Array(TH),
    e: new Float64Array(TH * M),
    phiR: new Float64Array(TH * M),
    rNorm: new Float64Array(TH).fill(1),
    q: new Float64Array(TH * M),
    dBar: new Float64Array(TH),
    aBar: new Float64Array(TH),
  };
  const y = new Float64Array(T * C);
  const tmp = new Float64Array(M), D = new Float64Array(M), b = new Float64Array(M);
  const rHat = new Float64Array(N);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < H; h++) {
      const o = t * C + h * N, th = t * H + h, fo = th * M;
      cache.phiK.set(liftedPhi(s, h, N, inp.kk, o, tmp), fo);
      mixR(s.R, h, M, cache.phiK, fo, cache.e, fo);
      let n2 = 0;
      for (let m = 0; m < M; m++) n2 += cache.e[fo + m] ** 2;
      const n = Math.max(Math.sqrt(n2), 1e-12);
      cache.zNorm[th] = n;
      for (let m = 0; m < M; m++) cache.e[fo + m] /= n;
      if (s.normalisedRead) {
        const rn = (cache.rNorm[th] = headNorm(inp.r, o, N));
        for (let j = 0; j < N; j++) rHat[j] = inp.r[o + j] / rn;
        cache.phiR.set(liftedPhi(s, h, N, rHat, 0, tmp), fo);
      } else {
        cache.phiR.set(liftedPhi(s, h, N, inp.r, o, tmp), fo);
      }
      mixR(s.R, h, M, cache.phiR, fo, cache.q, fo);
      for (let m = 0; m < M; m++) cache.q[fo + m] *= cache.rNorm[th];
      if (s.headMeans) {
        let logSum = 0, aSum = 0;
        for (let j = 0; j < N; j++) {
          logSum += Math.log(inp.d[o + j]);
          aSum += inp.a[o + j];
        }
        cache.dBar[th] = Math.exp(logSum / N);
        cache.aBar[th] = aSum / N;
      }
      editTerms(cache, t, h, D, b);
      liftedStep(S, h * N * M, N, M, cache.e, fo, D, b);
      for (let i = 0; i < N; i++) {
        const row = h * N * M + i * M;
        let yi = 0;
        for (let m = 0; m < M; m++) yi += S[row + m] * cache.q[fo + m];
        y[o + i] = yi;
      }
    }
  }
  return { y, state: S, cache };
}

/** Gradients of {@link liftedBackward}: vectors (T, H·N), `dS0` (H, N, M). */
export interface LiftedGrads {
  dkk: Float64Array;
  dr: Float64Array;
  dd: Float64Array;
  da: Float64Array;
  /** dL/dŜ0, [h][i][m] */
  dS0: Float64Array;
}

/**
 * Backward of {@link liftedForward}: per head, rebuild Ŝ_0 … Ŝ_T from the cached Ŝ0 (memory
 * (T+1)·N·M for one head at a time), then walk back (see the module doc).
 *
 * @param dy gradient of the branch output (T, H·N) (= the gradient of the GroupNorm input)
 * @param dSFinal gradient of Ŝ_T (H, N, M), zero when omitted
 */
export function liftedBackward(
  cache: LiftedCache,
  dy: ArrayLike<number>,
  T: number,
  H: number,
  N: number,
  dSFinal?: ArrayLike<number>,
): LiftedGrads {
  const c = cache, s = c.state, M = s.M, C = H * N, NM = N * M;
  const g: LiftedGrads = {
    dkk: new Float64Array(T * C),
    dr: new Float64Array(T * C),
    dd: new Float64Array(T * C),
    da: new Float64Array(T * C),
    dS0: new Float64Array(H * NM),
  };
  const hist = new Float64Array((T + 1) * NM);
  const G = new Float64Array(NM);
  const D = new Float64Array(M), b = new Float64Array(M), dq = new Float64Array(M);
  const p = new Float64Array(N), dp = new Float64Array(N);
  const db = new Float64Array(M), de = new Float64Array(M), dz = new Float64Array(M);
  const dphi = new Float64Array(M);
  for (let h = 0; h < H; h++) {
    hist.set(c.s0.subarray(h * NM, (h + 1) * NM), 0);
    for (let t = 0; t < T; t++) {
      hist.copyWithin((t + 1) * NM, t * NM, (t + 1) * NM);
      editTerms(c, t, h, D, b);
      liftedStep(hist, (t + 1) * NM, N, M, c.e, (t * H + h) * M, D, b);
    }
    for (let k = 0; k < NM; k++) G[k] = dSFinal ? dSFinal[h * NM + k] : 0;
    for (let t = T - 1; t >= 0; t--) {
      const o = t * C + h * N, th = t * H + h, fo = th * M;
      const prev = t * NM, cur = (t + 1) * NM;
      editTerms(c, t, h, D, b);
      // y_t = Ŝ_t q_t
      dq.fill(0);
      for (let i = 0; i < N; i++) {
        const dyi = dy[o + i];
        for (let m = 0; m < M; m++) {
          dq[m] += hist[cur + i * M + m] * dyi;
          G[i * M + m] += dyi * c.q[fo + m];
        }
      }
      // Ŝ_t = Ŝ_{t−1} diag(D) − p bᵀ, p = Ŝ_{t−1} e
      db.fill(0);
      de.fill(0);
      let dDsum = 0;
      for (let i = 0; i < N; i++) {
        let pi = 0, dpi = 0;
        for (let m = 0; m < M; m++) {
          pi += hist[prev + i * M + m] * c.e[fo + m];
          dpi -= G[i * M + m] * b[m];
        }
        p[i] = pi;
        dp[i] = dpi;
      }
      for (let i = 0; i < N; i++) {
        for (let m = 0; m < M; m++) {
          const k = i * M + m, sPrev = hist[prev + k];
          db[m] -= G[k] * p[i];
          de[m] += sPrev * dp[i];
          const dD = G[k] * sPrev;
          if (s.headMeans) dDsum += dD;
          else g.dd[o + m] += dD;
          G[k] = G[k] * D[m] + dp[i] * c.e[fo + m];
        }
      }
      if (s.headMeans) {
        // b = ā e;  d̄ = exp(mean log d);  ā = mean a
        let dA = 0;
        for (let m = 0; m < M; m++) {
          de[m] += c.aBar[th] * db[m];
          dA += c.e[fo + m] * db[m];
        }
        for (let j = 0; j < N; j++) {
          g.dd[o + j] += (dDsum * c.dBar[th]) / (N * c.inp.d[o + j]);
          g.da[o + j] += dA / N;
        }
      } else {
        // b = e ⊙ a
        for (let m = 0; m < M; m++) {
          de[m] += c.inp.a[o + m] * db[m];
          g.da[o + m] += c.e[fo + m] * db[m];
        }
      }
      // e = z / max(‖z‖, 1e-12); z = R φ(kk); q = R φ(r)
      const n = c.zNorm[th];
      let dot = 0;
      for (let m = 0; m < M; m++) dot += c.e[fo + m] * de[m];
      for (let m = 0; m < M; m++) dz[m] = n > 1e-12 ? (de[m] - c.e[fo + m] * dot) / n : de[m] / n;
      mixR(s.R, h, M, dz, 0, dphi, 0, true);
      liftedPhiBackward(s, h, N, c.inp.kk, o, c.phiK, fo, dphi, g.dkk);
      if (s.normalisedRead) readBackward(c, t, h, dq, dphi, g.dr);
      else {
        mixR(s.R, h, M, dq, 0, dphi, 0, true);
        liftedPhiBackward(s, h, N, c.inp.r, o, c.phiR, fo, dphi, g.dr);
      }
    }
    g.dS0.set(G, h * NM);
  }
  return g;
}
