/**
 * Reference matrix products and their backwards.
 *
 * @module
 */

/**
 * `y = x · Wᵀ` for a Linear layer: x is (T, inDim), W is (outDim, inDim), y is (T, outDim).
 */
export function linear(
  x: ArrayLike<number>,
  W: ArrayLike<number>,
  T: number,
  inDim: number,
  outDim: number,
): Float64Array {
  const y = new Float64Array(T * outDim);
  for (let t = 0; t < T; t++) {
    const xo = t * inDim;
    for (let o = 0; o < outDim; o++) {
      const wo = o * inDim;
      let s = 0;
      for (let i = 0; i < inDim; i++) s += x[xo + i] * W[wo + i];
      y[t * outDim + o] = s;
    }
  }
  return y;
}

/**
 * Backward of {@link linear}.
 *
 * @param dy (T, outDim)
 * @param x (T, inDim) the forward input (read only when `wantDW`)
 * @param W (outDim, inDim)
 * @param wantDW also compute the weight gradient
 * @returns dx = dy · W (T, inDim); dW = dyᵀ · x (outDim, inDim) when `wantDW`
 */
export function linearBackward(
  dy: ArrayLike<number>,
  x: ArrayLike<number>,
  W: ArrayLike<number>,
  T: number,
  inDim: number,
  outDim: number,
  wantDW = false,
): { dx: Float64Array; dW?: Float64Array } {
  const dx = new Float64Array(T * inDim);
  const dW = wantDW ? new Float64Array(outDim * inDim) : undefined;
  for (let t = 0; t < T; t++) {
    const xo = t * inDim;
    for (let o = 0; o < outDim; o++) {
      const g = dy[t * outDim + o];
      if (g === 0) continue;
      const wo = o * inDim;
      for (let i = 0; i < inDim; i++) dx[xo + i] += g * W[wo + i];
      if (dW) { for (let i = 0; i < inDim; i++) dW[wo + i] += g * x[xo + i]; }
    }
  }
  return { dx, dW };
}

/**
 * `y = x · M` for a low-rank factor: x is (T, inDim), M is (inDim, outDim), y is (T, outDim).
 */
export function matmul(
  x: ArrayLike<number>,
  M: ArrayLike<number>,
  T: number,
  inDim: number,
  outDim: number,
): Float64Array {
  const y = new Float64Array(T * outDim);
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < inDim; i++) {
      const xv = x[t * inDim + i];
      if (xv === 0) continue;
      const mo = i * outDim;
      const yo = t * outDim;
      for (let o = 0; o < outDim; o++) y[yo + o] += xv * M[mo + o];
    }
  }
  return y;
}

/**
 * Backward of {@link matmul}.
 *
 * @param dy (T, outDim)
 * @param x (T, inDim) the forward input (read only when `wantDM`)
 * @param M (inDim, outDim)
 * @param wantDM also compute the matrix gradient
 * @returns dx = dy · Mᵀ (T, inDim); dM = xᵀ · dy (inDim, outDim) when `wantDM`
 */
export function matmulBackward(
  dy: ArrayLike<number>,
  x: ArrayLike<number>,
  M: ArrayLike<number>,
  T: number,
  inDim: number,
  outDim: number,
  wantDM = false,
): { dx: Float64Array; dM?: Float64Array } {
  const dx = new Float64Array(T * inDim);
  const dM = wantDM ? new Float64Array(inDim * outDim) : undefined;
  for (let t = 0; t < T; t++) {
    const yo = t * outDim;
    for (let i = 0; i < inDim; i++) {
      const mo = i * outDim;
      let s = 0;
      for (let o = 0; o < outDim; o++) s += dy[yo + o] * M[mo + o];
      dx[t * inDim + i] = s;
      if (dM) {
        const xv = x[t * inDim + i];
        for (let o = 0; o < outDim; o++) dM[mo + o] += xv * dy[yo + o];
      }
    }
  }
  return { dx, dM };
}
