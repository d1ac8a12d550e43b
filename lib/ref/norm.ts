/**
 * Reference LayerNorm and GroupNorm (biased variance) and their backwards.
 *
 * @module
 */

/** LayerNorm over the last dim: x is (T, C); eps 1e-5 as in RWKV-7. Returns (T, C). */
export function layerNorm(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  b: ArrayLike<number>,
  T: number,
  C: number,
  eps = 1e-5,
): Float64Array {
  return groupNorm(x, w, b, T, 1, C, eps);
}

/**
 * GroupNorm with H groups of N channels per token: x is (T, H·N), affine w, b of length H·N.
 * RWKV-7's ln_x uses eps = 64e-5 (head size 64 × 1e-5).
 */
export function groupNorm(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  b: ArrayLike<number>,
  T: number,
  H: number,
  N: number,
  eps = 64e-5,
): Float64Array {
  const C = H * N;
  const y = new Float64Array(T * C);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < H; h++) {
      const o = t * C + h * N;
      const { mean, inv } = groupStats(x, o, N, eps);
      for (let i = 0; i < N; i++) {
        y[o + i] = (x[o + i] - mean) * inv * w[h * N + i] + b[h * N + i];
      }
    }
  }
  return y;
}

/** Mean and 1/sqrt(biased variance + eps) of x[o … o+N). */
function groupStats(
  x: ArrayLike<number>,
  o: number,
  N: number,
  eps: number,
): { mean: number; inv: number } {
  let mean = 0;
  for (let i = 0; i < N; i++) mean += x[o + i];
  mean /= N;
  let v = 0;
  for (let i = 0; i < N; i++) v += (x[o + i] - mean) ** 2;
  return { mean, inv: 1 / Math.sqrt(v / N + eps) };
}

/** Backward of {@link layerNorm}; see {@link groupNormBackward} (H = 1, N = C). */
export function layerNormBackward(
  dy: ArrayLike<number>,
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  T: number,
  C: number,
  eps = 1e-5,
  wantParams = false,
): { dx: Float64Array; dw?: Float64Array; db?: Float64Array } {
  return groupNormBackward(dy, x, w, T, 1, C, eps, wantParams);
}

/**
 * Backward of {@link groupNorm}. With x̂ = (x − mean)·inv per group:
 *
 *     dx̂ = dy ⊙ w;   dx = inv · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ ⊙ x̂))
 *     dw = Σ_t dy ⊙ x̂;   db = Σ_t dy
 *
 * @param dy (T, H·N)
 * @param x (T, H·N) the forward input
 * @param w (H·N) affine weight
 * @param wantParams also compute dw, db (H·N)
 * @returns dx (T, H·N), and dw, db when `wantParams`
 */
export function groupNormBackward(
  dy: ArrayLike<number>,
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  T: number,
  H: number,
  N: number,
  eps = 64e-5,
  wantParams = false,
): { dx: Float64Array; dw?: Float64Array; db?: Float64Array } {
  const C = H * N;
  const dx = new Float64Array(T * C);
  const dw = wantParams ? new Float64Array(C) : undefined;
  const db = wantParams ? new Float64Array(C) : undefined;
  const xhat = new Float64Array(N);
  const dxhat = new Float64Array(N);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < H; h++) {
      const o = t * C + h * N;
      const { mean, inv } = groupStats(x, o, N, eps);
      let mDx = 0, mDxX = 0;
      for (let i = 0; i < N; i++) {
        xhat[i] = (x[o + i] - mean) * inv;
        dxhat[i] = dy[o + i] * w[h * N + i];
        mDx += dxhat[i];
        mDxX += dxhat[i] * xhat[i];
        if (dw && db) {
          dw[h * N + i] += dy[o + i] * xhat[i];
          db[h * N + i] += dy[o + i];
        }
      }
      mDx /= N;
      mDxX /= N;
      for (let i = 0; i < N; i++) dx[o + i] = inv * (dxhat[i] - mDx - xhat[i] * mDxX);
    }
  }
  return { dx, dw, db };
}
