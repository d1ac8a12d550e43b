/**
 * Reference WKV-7 recurrence and its backward (docs/MATH.md §3).
 *
 * Per head, S is N×N with row i = value index and column j = key index (memory [h][i][j]):
 *
 *     sa  = S α
 *     S  ← S diag(d) + sa βᵀ + v kᵀ
 *     y   = S r           (the updated state)
 *
 * @module
 */

/** Inputs of the recurrence: every vector is (T, H·N). */
export interface WkvInputs {
  r: ArrayLike<number>;
  /** decay d in (0, 1) */
  d: ArrayLike<number>;
  k: ArrayLike<number>;
  v: ArrayLike<number>;
  /** α = −kk */
  alpha: ArrayLike<number>;
  /** β = kk ⊙ a */
  beta: ArrayLike<number>;
}

/**
 * One token of one head: `dst = src diag(d) + (src α) βᵀ + v kᵀ`, and `y = dst r` when `y` is
 * given. `src` and `dst` are N×N blocks at the given offsets; they may be the same block.
 *
 * @param o offset of this token's head in the (T, H·N) inputs
 */
function wkvStep(
  inp: WkvInputs,
  o: number,
  N: number,
  src: Float64Array,
  srcOff: number,
  dst: Float64Array,
  dstOff: number,
  y?: Float64Array,
): void {
  for (let i = 0; i < N; i++) {
    const sRow = srcOff + i * N;
    const dRow = dstOff + i * N;
    let sa = 0;
    for (let j = 0; j < N; j++) sa += src[sRow + j] * inp.alpha[o + j];
    const vi = inp.v[o + i];
    let yi = 0;
    for (let j = 0; j < N; j++) {
      const s = src[sRow + j] * inp.d[o + j] + sa * inp.beta[o + j] + vi * inp.k[o + j];
      dst[dRow + j] = s;
      yi += s * inp.r[o + j];
    }
    if (y) y[o + i] = yi;
  }
}

/**
 * Run the recurrence over T tokens from `s0`.
 *
 * @param s0 initial state (H·N·N, [h][i][j])
 * @returns y (T, H·N) and the final state (H·N·N)
 */
export function wkvForward(
  inp: WkvInputs,
  s0: ArrayLike<number>,
  T: number,
  H: number,
  N: number,
): { y: Float64Array; state: Float64Array } {
  const C = H * N;
  const S = Float64Array.from(s0);
  const y = new Float64Array(T * C);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < H; h++) wkvStep(inp, t * C + h * N, N, S, h * N * N, S, h * N * N, y);
  }
  return { y, state: S };
}

/** Gradients of {@link wkvBackward}: every vector (T, H·N), `dS0` (H·N·N). */
export interface WkvGrads {
  dr: Float64Array;
  dd: Float64Array;
  dk: Float64Array;
  dv: Float64Array;
  dalpha: Float64Array;
  dbeta: Float64Array;
  /** dL/dS0, [h][i][j] */
  dS0: Float64Array;
}

/** Zero gradients of a (T, H·N) WKV input set and its (H, N, N) initial state. */
export function zeroWkvGrads(T: number, H: number, N: number): WkvGrads {
  const n = T * H * N, z = () => new Float64Array(n);
  return {
    dr: z(),
    dd: z(),
    dk: z(),
    dv: z(),
    dalpha: z(),
    dbeta: z(),
    dS0: new Float64Array(H * N * N),
  };
}

/**
 * Backward of {@link wkvForward}, exactly docs/MATH.md §3: per head, rebuild S_0 … S_T by running
 * forward from `s0` (memory (T+1)·N·N for one head at a time), then walk t = T−1 … 0:
 *
 *     dr_t = S_tᵀ dy_t;  dS += dy_t r_tᵀ
 *     dv_t = dS k_t;  dk_t = dSᵀ v_t;  dβ_t = dSᵀ sa_t;  dsa = dS β_t
 *     dα_t = S_{t−1}ᵀ dsa;  dd_t[j] = Σ_i dS[i,j] S_{t−1}[i,j]
 *     dS ← dS diag(d_t) + dsa α_tᵀ
 *
 * @param dy (T, H·N) gradient of the output
 * @param dSFinal (H·N·N) gradient of the final state (zero when omitted)
 */
export function wkvBackward(
  inp: WkvInputs,
  s0: ArrayLike<number>,
  dy: ArrayLike<number>,
  T: number,
  H: number,
  N: number,
  dSFinal?: ArrayLike<number>,
): WkvGrads {
  const C = H * N, NN = N * N;
  const g = zeroWkvGrads(T, H, N);
  const hist = new Float64Array((T + 1) * NN); // S_0 … S_T of one head
  const dS = new Float64Array(NN);
  for (let h = 0; h < H; h++) {
    for (let e = 0; e < NN; e++) hist[e] = s0[h * NN + e];
    for (let t = 0; t < T; t++) wkvStep(inp, t * C + h * N, N, hist, t * NN, hist, (t + 1) * NN);
    for (let e = 0; e < NN; e++) dS[e] = dSFinal ? dSFinal[h * NN + e] : 0;
    for (let t = T - 1; t >= 0; t--) wkvStepBackward(inp, dy, t * C + h * N, N, hist, t, dS, g);
    g.dS0.set(dS, h * NN);
  }
  return g;
}

/** One token of one head of {@link wkvBackward}; updates `dS` in place (S_t → S_{t−1}). */
function wkvStepBackward(
  inp: WkvInputs,
  dy: ArrayLike<number>,
  o: number,
  N: number,
  hist: Float64Array,
  t: number,
  dS: Float64Array,
  g: WkvGrads,
): void {
  const prev = t * N * N, cur = (t + 1) * N * N;
  const { r, d, k, v, alpha, beta } = inp;
  const sa = new Float64Array(N);
  const dsa = new Float64Array(N);
  for (let i = 0; i < N; i++) {
    const row = i * N;
    const dyi = dy[o + i];
    let s = 0, ds = 0, dvi = 0;
    for (let j = 0; j < N; j++) {
      g.dr[o + j] += hist[cur + row + j] * dyi;
      dS[row + j] += dyi * r[o + j];
      s += hist[prev + row + j] * alpha[o + j];
      ds += dS[row + j] * beta[o + j];
      dvi += dS[row + j] * k[o + j];
    }
    sa[i] = s;
    dsa[i] = ds;
    g.dv[o + i] = dvi;
  }
  for (let i = 0; i < N; i++) {
    const row = i * N;
    for (let j = 0; j < N; j++) {
      const dSij = dS[row + j];
      const sPrev = hist[prev + row + j];
      g.dk[o + j] += dSij * v[o + i];
      g.dbeta[o + j] += dSij * sa[i];
      g.dalpha[o + j] += sPrev * dsa[i];
      g.dd[o + j] += dSij * sPrev;
      dS[row + j] = dSij * d[o + j] + dsa[i] * alpha[o + j];
    }
  }
}
