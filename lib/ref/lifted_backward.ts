/**
 * Reference of `shaders/lifted_backward.wgsl`: the backward of the lifted branch of
 * `lifted.ts` (whose module comment gives the formulas), one head and token at a time.
 *
 * @module
 */
import {
  E_SHAPE,
  editTerms,
  featureGrad,
  type LiftedCache,
  readShape,
  tokenStep,
  U_SHAPE,
} from "./lifted.ts";

/** Gradients of {@link liftedBackward}: vectors (T, H·N), `dS0` (H, N, M), `dGate` (H). */
export interface LiftedGrads {
  dkk: Float64Array;
  dr: Float64Array;
  dd: Float64Array;
  da: Float64Array;
  /** dL/dk and dL/dv of the key and value that write into S (zeros in memory mode) */
  dk: Float64Array;
  dv: Float64Array;
  /** dL/dŜ0, [h][i][m] */
  dS0: Float64Array;
  /** dL/dg per head (zeros in memory mode, where g = 1 is fixed) */
  dGate: Float64Array;
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
  const vec = () => new Float64Array(T * C);
  const g: LiftedGrads = {
    ...{ dkk: vec(), dr: vec(), dd: vec(), da: vec(), dk: vec(), dv: vec() },
    dS0: new Float64Array(H * NM),
    dGate: new Float64Array(H),
  };
  const hist = new Float64Array((T + 1) * NM), G = new Float64Array(NM);
  for (let h = 0; h < H; h++) {
    hist.set(c.s0.subarray(h * NM, (h + 1) * NM), 0);
    for (let t = 0; t < T; t++) {
      hist.copyWithin((t + 1) * NM, t * NM, (t + 1) * NM);
      tokenStep(c, hist, (t + 1) * NM, t, h);
    }
    for (let k = 0; k < NM; k++) G[k] = dSFinal ? dSFinal[h * NM + k] : 0;
    let dGate = 0;
    for (let t = T - 1; t >= 0; t--) dGate += tokenBackward(c, g, hist, G, dy, t, h);
    g.dS0.set(G, h * NM);
    if (s.writes) g.dGate[h] = dGate;
  }
  return g;
}

/** One token of {@link liftedBackward} for head h: updates G and `g`, returns dL/dg's share. */
function tokenBackward(
  c: LiftedCache,
  g: LiftedGrads,
  hist: Float64Array,
  G: Float64Array,
  dy: ArrayLike<number>,
  t: number,
  h: number,
): number {
  const s = c.state, at: TokenAt = tokenAt(c, t, h);
  const D = new Float64Array(s.M), b = new Float64Array(s.M);
  editTerms(c, t, h, D, b);
  const { dq, dGate } = readBackward(c, at, hist, G, dy);
  const du = s.writes ? writeBackward(c, at, g, G) : new Float64Array(s.M);
  const { db, de, dDsum } = editBackward(c, at, g, hist, G, D, b);
  editTermsBackward(c, at, g, db, de, dDsum);
  featureGrad(c, c.e, c.inp.kk, E_SHAPE, t, h, de, g.dkk);
  featureGrad(c, c.q, c.inp.r, readShape(s), t, h, dq, g.dr);
  if (s.writes) featureGrad(c, c.u, c.inp.k!, U_SHAPE, t, h, du, g.dk);
  return dGate;
}

/** Offsets of token t, head h: channel `o`, (t, h) index `th`, feature `fo`, states in `hist`. */
interface TokenAt {
  o: number;
  th: number;
  fo: number;
  prev: number;
  cur: number;
  h: number;
}

function tokenAt(c: LiftedCache, t: number, h: number): TokenAt {
  const M = c.state.M, N = c.N, H = c.H, NM = N * M, th = t * H + h;
  return { o: t * H * N + h * N, th, fo: th * M, prev: t * NM, cur: (t + 1) * NM, h };
}

/** `y_t = g Ŝ_t q_t`: adds dy q_tᵀ g into G; returns dq (M) and dL/dg's share. */
function readBackward(
  c: LiftedCache,
  at: TokenAt,
  hist: Float64Array,
  G: Float64Array,
  dy: ArrayLike<number>,
): { dq: Float64Array; dGate: number } {
  const M = c.state.M, N = c.N, gh = c.gate[at.h], { o, fo, cur } = at;
  const dq = new Float64Array(M);
  let dGate = 0;
  for (let i = 0; i < N; i++) {
    const dyi = dy[o + i];
    for (let m = 0; m < M; m++) {
      const sq = hist[cur + i * M + m];
      dGate += dyi * sq * c.q.out[fo + m];
      dq[m] += gh * sq * dyi;
      G[i * M + m] += gh * dyi * c.q.out[fo + m];
    }
  }
  return { dq, dGate };
}

/** `+ v uᵀ` (writes mode): adds dL/dv into `g.dv`; returns du (M). */
function writeBackward(c: LiftedCache, at: TokenAt, g: LiftedGrads, G: Float64Array): Float64Array {
  const M = c.state.M, N = c.N, { o, fo } = at, v = c.inp.v!;
  const du = new Float64Array(M);
  for (let i = 0; i < N; i++) {
    let dv = 0;
    for (let m = 0; m < M; m++) {
      dv += G[i * M + m] * c.u.out[fo + m];
      du[m] += G[i * M + m] * v[o + i];
    }
    g.dv[o + i] += dv;
  }
  return du;
}

/**
 * `Ŝ_t = Ŝ_{t−1} diag(D) − p bᵀ`, `p = Ŝ_{t−1} e`: turns G into dL/dŜ_{t−1}, adds dL/dD into
 * `g.dd` (per channel) or returns its sum (head means); returns db, de (M).
 */
function editBackward(
  c: LiftedCache,
  at: TokenAt,
  g: LiftedGrads,
  hist: Float64Array,
  G: Float64Array,
  D: Float64Array,
  b: Float64Array,
): { db: Float64Array; de: Float64Array; dDsum: number } {
  const s = c.state, M = s.M, N = c.N, { o, fo, prev } = at, e = c.e.out;
  const p = new Float64Array(N), dp = new Float64Array(N);
  const db = new Float64Array(M), de = new Float64Array(M);
  for (let i = 0; i < N; i++) {
    for (let m = 0; m < M; m++) {
      p[i] += hist[prev + i * M + m] * e[fo + m];
      dp[i] -= G[i * M + m] * b[m];
    }
  }
  let dDsum = 0;
  for (let i = 0; i < N; i++) {
    for (let m = 0; m < M; m++) {
      const k = i * M + m, sPrev = hist[prev + k];
      db[m] -= G[k] * p[i];
      de[m] += sPrev * dp[i];
      const dD = G[k] * sPrev;
      if (s.headMeans) dDsum += dD;
      else g.dd[o + m] += dD;
      G[k] = G[k] * D[m] + dp[i] * e[fo + m];
    }
  }
  return { db, de, dDsum };
}

/** Back through the edit terms b (and D with head means) into `g.dd`, `g.da` and `de`. */
function editTermsBackward(
  c: LiftedCache,
  at: TokenAt,
  g: LiftedGrads,
  db: Float64Array,
  de: Float64Array,
  dDsum: number,
): void {
  const M = c.state.M, N = c.N, { o, th, fo } = at, e = c.e.out;
  if (c.state.headMeans) {
    // b = ā e;  d̄ = exp(mean log d);  ā = mean a
    let dA = 0;
    for (let m = 0; m < M; m++) {
      de[m] += c.aBar[th] * db[m];
      dA += e[fo + m] * db[m];
    }
    for (let j = 0; j < N; j++) {
      g.dd[o + j] += (dDsum * c.dBar[th]) / (N * c.inp.d[o + j]);
      g.da[o + j] += dA / N;
    }
  } else {
    // b = e ⊙ a
    for (let m = 0; m < M; m++) {
      de[m] += c.inp.a[o + m] * db[m];
      g.da[o + m] += e[fo + m] * db[m];
    }
  }
}
