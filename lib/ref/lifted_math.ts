/**
 * Building blocks of the reference lifted branch (docs/MATH.md §5; lib/ref/lifted.ts): the feature map
 * φ and its backward, the mixing by R, one edit step, and the "scaled feature" map shared by
 * the edit direction, the read and the write key:
 *
 *     x̂ = x / ρ,  ρ = max(‖x‖, 1e-12)   (or x̂ = x, ρ = 1 without input scaling)
 *     z = R φ(x̂);  ẑ = z / max(‖z‖, 1e-12)   (or ẑ = z without unit output)
 *     out = ρ ẑ
 *
 * e = normalise(R φ(kk)) (no input scaling), q = ‖r‖ R φ(r̂) (normalised read; the raw read has
 * no input scaling), u = ‖k‖ normalise(R φ(k̂)).
 *
 * @module
 */
import type { LiftedState } from "./lifted_types.ts";

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
export function liftedPhiBackward(
  s: LiftedState,
  h: number,
  N: number,
  u: ArrayLike<number>,
  uOff: number,
  phi: Float64Array,
  phiOff: number,
  dphi: Float64Array,
  du: Float64Array,
  duOff = uOff,
): void {
  const M = s.M;
  if (s.featureMap === "identity") {
    for (let m = 0; m < M; m++) du[duOff + m] += dphi[m];
    return;
  }
  // du = −2γ Σ_m dφ_m φ_m (u − c_m)
  const c = s.support!, g2 = -2 * s.gamma![h];
  for (let m = 0; m < M; m++) {
    const wm = g2 * dphi[m] * phi[phiOff + m];
    if (wm === 0) continue;
    const co = (h * M + m) * N;
    for (let j = 0; j < N; j++) du[duOff + j] += wm * (u[uOff + j] - c[co + j]);
  }
}

/** out = R_h x (transpose: out = R_hᵀ x); x at `xOff` in `x`, M values. */
export function mixR(
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
 * import { liftedStep } from "./lifted_math.ts";
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

/** The write of writes mode, in place: `S += v uᵀ` on an N×M block (v at `vOff`, u at `uOff`). */
export function liftedWrite(
  S: Float64Array,
  off: number,
  N: number,
  M: number,
  v: ArrayLike<number>,
  vOff: number,
  u: ArrayLike<number>,
  uOff: number,
): void {
  for (let i = 0; i < N; i++) {
    const vi = v[vOff + i];
    for (let m = 0; m < M; m++) S[off + i * M + m] += vi * u[uOff + m];
  }
}

/** max(‖u‖, 1e-12) of the N values at `off`. */
export function headNorm(u: ArrayLike<number>, off: number, N: number): number {
  let n2 = 0;
  for (let j = 0; j < N; j++) n2 += u[off + j] ** 2;
  return Math.max(Math.sqrt(n2), 1e-12);
}

/** How a scaled feature is built from its input (see the module doc). */
export interface FeatureShape {
  /** normalise the input and multiply the output by its length */
  scaleInput: boolean;
  /** unit-normalise z = R φ(x̂) */
  unitOutput: boolean;
}

/**
 * Forward of one scaled feature: writes φ(x̂) (M) at `phiOff` and `out = ρ ẑ` (M) at `outOff`.
 *
 * @returns ρ (1 without input scaling) and ‖z‖ floored (1 without unit output)
 */
export function featureForward(
  s: LiftedState,
  h: number,
  N: number,
  x: ArrayLike<number>,
  xOff: number,
  shape: FeatureShape,
  phi: Float64Array,
  out: Float64Array,
  off: number,
): { rho: number; zn: number } {
  const M = s.M, tmp = new Float64Array(M);
  const rho = shape.scaleInput ? headNorm(x, xOff, N) : 1;
  if (shape.scaleInput) {
    const xh = new Float64Array(N);
    for (let j = 0; j < N; j++) xh[j] = x[xOff + j] / rho;
    phi.set(liftedPhi(s, h, N, xh, 0, tmp), off);
  } else phi.set(liftedPhi(s, h, N, x, xOff, tmp), off);
  mixR(s.R, h, M, phi, off, out, off);
  let zn = 1;
  if (shape.unitOutput) {
    let n2 = 0;
    for (let m = 0; m < M; m++) n2 += out[off + m] ** 2;
    zn = Math.max(Math.sqrt(n2), 1e-12);
  }
  for (let m = 0; m < M; m++) out[off + m] *= rho / zn;
  return { rho, zn };
}

/**
 * Backward of {@link featureForward}: accumulates dL/dx (N) at `xOff` in `dx` given dL/dout
 * (M, overwritten). Below a floor (‖x‖ or ‖z‖ < 1e-12) the floored norm is a constant.
 */
export function featureBackward(
  s: LiftedState,
  h: number,
  N: number,
  x: ArrayLike<number>,
  xOff: number,
  shape: FeatureShape,
  f: { phi: Float64Array; out: Float64Array; off: number; rho: number; zn: number },
  dout: Float64Array,
  dx: Float64Array,
): void {
  const M = s.M, { rho, zn, off } = f;
  // out = ρ ẑ: dρ = ẑ·dout, dẑ = ρ dout
  let dRho = 0, dot = 0;
  for (let m = 0; m < M; m++) {
    const zh = f.out[off + m] / rho;
    dRho += zh * dout[m];
    dout[m] *= rho;
    dot += zh * dout[m];
  }
  if (shape.unitOutput) {
    for (let m = 0; m < M; m++) {
      const zh = f.out[off + m] / rho;
      dout[m] = zn > 1e-12 ? (dout[m] - zh * dot) / zn : dout[m] / zn;
    }
  }
  const dphi = new Float64Array(M);
  mixR(s.R, h, M, dout, 0, dphi, 0, true);
  if (!shape.scaleInput) {
    liftedPhiBackward(s, h, N, x, xOff, f.phi, off, dphi, dx);
    return;
  }
  const xh = new Float64Array(N), dh = new Float64Array(N);
  for (let j = 0; j < N; j++) xh[j] = x[xOff + j] / rho;
  liftedPhiBackward(s, h, N, xh, 0, f.phi, off, dphi, dh);
  // x̂ = x/ρ: dx = (dx̂ − x̂ (x̂·dx̂))/ρ + x̂ dρ  (below the floor ρ is constant: dx = dx̂/ρ)
  let d2 = 0;
  for (let j = 0; j < N; j++) d2 += xh[j] * dh[j];
  for (let j = 0; j < N; j++) {
    dx[xOff + j] += rho > 1e-12 ? (dh[j] - xh[j] * d2) / rho + xh[j] * dRho : dh[j] / rho;
  }
}
