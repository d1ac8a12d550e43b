/**
 * Reference token shift and the shift-mix used by the time mix and the channel mix (docs/MATH.md §2):
 *
 *     uPrev_t = u_{t-1}  (uPrev_0 = the carried shift state)
 *     mix     = u + (uPrev − u) ⊙ x_m
 *
 * @module
 */

/**
 * The previous token's row of `u`, with `shift` before the first token.
 *
 * @param u (T, C)
 * @param shift (C) the row before t = 0
 * @returns uPrev (T, C)
 */
export function tokenShift(
  u: Float64Array,
  shift: ArrayLike<number>,
  T: number,
  C: number,
): Float64Array {
  const uPrev = new Float64Array(T * C);
  for (let c = 0; c < C; c++) uPrev[c] = shift[c];
  uPrev.set(u.subarray(0, (T - 1) * C), C);
  return uPrev;
}

/**
 * Backward of {@link tokenShift}: adds `duPrev` shifted by one row into `du` (in place) and
 * returns the gradient of the incoming shift state.
 *
 * @param duPrev (T, C) gradient of uPrev
 * @param du (T, C) gradient of u, accumulated in place
 * @returns dShift (C)
 */
export function tokenShiftBackward(
  duPrev: Float64Array,
  du: Float64Array,
  T: number,
  C: number,
): Float64Array {
  for (let i = C; i < T * C; i++) du[i - C] += duPrev[i];
  return duPrev.slice(0, C);
}

/**
 * `u + (uPrev − u) ⊙ xm` (xm broadcast over T).
 *
 * @param u (T, C)
 * @param uPrev (T, C)
 * @param xm (C)
 * @returns (T, C)
 */
export function shiftMix(
  u: Float64Array,
  uPrev: Float64Array,
  xm: ArrayLike<number>,
  T: number,
  C: number,
): Float64Array {
  const m = new Float64Array(T * C);
  for (let i = 0; i < T * C; i++) m[i] = u[i] + (uPrev[i] - u[i]) * xm[i % C];
  return m;
}

/**
 * Backward of {@link shiftMix}: accumulates into `du` and `duPrev` (in place) and returns
 * dL/dxm (C), summed over T.
 *
 * @param dmix (T, C)
 */
export function shiftMixBackward(
  dmix: Float64Array,
  u: Float64Array,
  uPrev: Float64Array,
  xm: ArrayLike<number>,
  du: Float64Array,
  duPrev: Float64Array,
  T: number,
  C: number,
): Float64Array {
  const dxm = new Float64Array(C);
  for (let i = 0; i < T * C; i++) {
    const c = i % C;
    du[i] += dmix[i] * (1 - xm[c]);
    duPrev[i] += dmix[i] * xm[c];
    dxm[c] += dmix[i] * (uPrev[i] - u[i]);
  }
  return dxm;
}
