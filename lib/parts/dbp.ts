/**
 * Decorrelated backpropagation (docs/MATH.md §6), CPU reference in float64: after each optimiser step
 * every head's feature-mixing matrix R moves by
 *
 *     C = E[z zᵀ],  z = R φ(û)   over the step's kk, r (and k in writes mode) vectors (all,
 *                              or a random sample)
 *     R ← R − η_R [(1 − κ) offdiag(C) + κ diag(C − I)] R
 *
 * and the decorrelation loss ‖offdiag(C)‖²_F / M² (C before the update) is recorded. R is never
 * touched by the task gradient; DBP off = R fixed.
 *
 * @module
 */
import { headNorm, liftedPhi } from "../ref/lifted_math.ts";
import { Rng } from "../util/rng.ts";
import type { DbpConfig } from "./config.ts";
import { liftedRead, type LiftedState } from "../ref/lifted_types.ts";

/**
 * C = (1/n) Σ z zᵀ with z = R φ for n feature rows.
 *
 * @param R (M, M) one head's mixing matrix
 * @param phi (n, M) feature rows φ(u)
 * @returns (M, M)
 */
export function featureCovariance(
  R: ArrayLike<number>,
  phi: ArrayLike<number>,
  n: number,
  M: number,
): Float64Array {
  const C = new Float64Array(M * M), z = new Float64Array(M);
  for (let t = 0; t < n; t++) {
    for (let i = 0; i < M; i++) {
      let s = 0;
      for (let j = 0; j < M; j++) s += R[i * M + j] * phi[t * M + j];
      z[i] = s;
    }
    for (let i = 0; i < M; i++) for (let j = i; j < M; j++) C[i * M + j] += z[i] * z[j];
  }
  for (let i = 0; i < M; i++) {
    for (let j = i; j < M; j++) C[j * M + i] = C[i * M + j] /= n;
  }
  return C;
}

/**
 * The decorrelation loss ‖offdiag(C)‖²_F / M².
 *
 * @param C (M, M)
 * @example
 * ```ts
 * import { decorrelationLoss } from "./dbp.ts";
 * console.assert(decorrelationLoss(Float64Array.of(1, 0.5, 0.5, 1), 2) === 0.125);
 * ```
 */
export function decorrelationLoss(C: ArrayLike<number>, M: number): number {
  let s = 0;
  for (let i = 0; i < M; i++) for (let j = 0; j < M; j++) if (i !== j) s += C[i * M + j] ** 2;
  return s / (M * M);
}

/**
 * The scale-free companion of {@link decorrelationLoss}: the same sum over the correlation
 * coefficients, Σ_{i≠j} C_ij² / (C_ii C_jj) / M² (entries with a zero variance count 0).
 * ‖offdiag(C)‖² grows when κ > 0 scales small features up towards unit variance, so plots of
 * decorrelation read better on this one.
 *
 * @example
 * ```ts
 * import { correlationLoss } from "./dbp.ts";
 * console.assert(correlationLoss(Float64Array.of(4, 1, 1, 1), 2) === 0.125);
 * ```
 */
export function correlationLoss(C: ArrayLike<number>, M: number): number {
  let s = 0;
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < M; j++) {
      const v = C[i * M + i] * C[j * M + j];
      if (i !== j && v > 0) s += C[i * M + j] ** 2 / v;
    }
  }
  return s / (M * M);
}

/**
 * One DBP update of one head's R from its covariance C:
 * `R − lr [(1 − κ) offdiag(C) + κ diag(C − I)] R`.
 *
 * @param R (M, M); C (M, M)
 * @returns the new R (M, M)
 */
export function dbpUpdateR(
  R: ArrayLike<number>,
  C: ArrayLike<number>,
  M: number,
  lr: number,
  kappa: number,
): Float64Array {
  const out = new Float64Array(M * M);
  const g = new Float64Array(M);
  for (let i = 0; i < M; i++) {
    for (let k = 0; k < M; k++) {
      g[k] = i === k ? kappa * (C[i * M + i] - 1) : (1 - kappa) * C[i * M + k];
    }
    for (let j = 0; j < M; j++) {
      let s = 0;
      for (let k = 0; k < M; k++) s += g[k] * R[k * M + j];
      out[i * M + j] = R[i * M + j] - lr * s;
    }
  }
  return out;
}

/**
 * One head's DBP step on feature rows: C from the current R, the loss, the new R.
 *
 * @param phi (n, M) feature rows of the step
 * @example
 * ```ts
 * import { dbpHeadStep } from "./dbp.ts";
 * const phi = Float64Array.of(1, 1, 1, 1); // two identical rows: fully correlated
 * const { loss, R } = dbpHeadStep(Float64Array.of(1, 0, 0, 1), phi, 2, 2, 0.1, 0.5);
 * console.assert(loss === 0.5 && R[1] < 0);
 * ```
 */
export function dbpHeadStep(
  R: ArrayLike<number>,
  phi: ArrayLike<number>,
  n: number,
  M: number,
  lr: number,
  kappa: number,
): { R: Float64Array; C: Float64Array; loss: number } {
  const C = featureCovariance(R, phi, n, M);
  return { R: dbpUpdateR(R, C, M, lr, kappa), C, loss: decorrelationLoss(C, M) };
}

/**
 * One step's vectors of one lifted layer: kk and r of each sequence, (T, H·N) each, and in
 * writes mode the written k (after the k_a modification).
 */
export interface DbpStepVectors {
  kk: ArrayLike<number>;
  r: ArrayLike<number>;
  /** the key that writes into S; measured only when the layer is in writes mode */
  k?: ArrayLike<number>;
}

/**
 * φ rows of head h for the step's vectors (the kk rows of every sequence, then its r rows, then
 * in writes mode its k rows), or `sample` of them drawn without replacement when 0 < sample <
 * the total. φ sees û = u/‖u‖ where the branch does: r with the normalised read, and k.
 *
 * @returns (n, M) and n
 * @throws {RangeError} when a writes-mode layer's vectors lack k
 */
export function stepFeatures(
  s: LiftedState,
  h: number,
  H: number,
  N: number,
  vectors: DbpStepVectors[],
  sample: number,
  rng?: Rng,
): { phi: Float64Array; n: number } {
  const C = H * N, M = s.M;
  const rows: [ArrayLike<number>, number, boolean][] = [];
  const unitR = liftedRead(s) === "normalised";
  for (const v of vectors) {
    const srcs: [ArrayLike<number>, boolean][] = [[v.kk, false], [v.r, unitR]];
    if (s.writes) {
      if (!v.k) throw new RangeError("stepFeatures: a writes-mode layer needs the k vectors");
      srcs.push([v.k, true]);
    }
    for (const [src, unit] of srcs) {
      for (let t = 0; t < src.length / C; t++) rows.push([src, t, unit]);
    }
  }
  let chosen = rows;
  if (sample > 0 && sample < rows.length) {
    chosen = (rng ?? new Rng(0)).shuffle(rows.slice()).slice(0, sample);
  }
  const phi = new Float64Array(chosen.length * M), tmp = new Float64Array(M);
  const unit = new Float64Array(N);
  chosen.forEach(([src, t, scale], i) => {
    const o = t * C + h * N;
    if (scale) {
      const rn = headNorm(src, o, N);
      for (let j = 0; j < N; j++) unit[j] = src[o + j] / rn;
      phi.set(liftedPhi(s, h, N, unit, 0, tmp), i * M);
    } else {
      phi.set(liftedPhi(s, h, N, src, o, tmp), i * M);
    }
  });
  return { phi, n: chosen.length };
}

/**
 * DBP after one optimiser step for one lifted layer, every head: returns the new R (the
 * caller stores it in the state) and the per-head decorrelation losses before the update.
 * With `config.enabled` false, R is returned unchanged (the losses are still measured).
 *
 * @param vectors the step's kk and r (and k in writes mode) per sequence, each (T, H·N)
 * @param rng draws the sample when `config.sample` > 0 (a seeded `Rng(config.seed)` when omitted)
 * @returns R (H, M, M), loss (H) and its mean over heads, and the same for
 *   {@link correlationLoss}
 */
export function dbpLayerStep(
  s: LiftedState,
  H: number,
  N: number,
  vectors: DbpStepVectors[],
  config: DbpConfig,
  rng?: Rng,
): {
  R: Float64Array;
  loss: Float64Array;
  meanLoss: number;
  corrLoss: Float64Array;
  meanCorrLoss: number;
} {
  const M = s.M, MM = M * M;
  const R = Float64Array.from(s.R);
  const loss = new Float64Array(H), corrLoss = new Float64Array(H);
  const r = rng ?? new Rng(config.seed);
  for (let h = 0; h < H; h++) {
    const { phi, n } = stepFeatures(s, h, H, N, vectors, config.sample, r);
    if (n === 0) throw new RangeError("dbpLayerStep: the step has no kk or r vectors");
    const Rh = R.subarray(h * MM, (h + 1) * MM);
    const step = dbpHeadStep(Rh, phi, n, M, config.enabled ? config.lr : 0, config.kappa);
    loss[h] = step.loss;
    corrLoss[h] = correlationLoss(step.C, M);
    if (config.enabled) Rh.set(step.R);
  }
  const mean = (x: Float64Array) => x.reduce((a, b) => a + b, 0) / H;
  return { R, loss, meanLoss: mean(loss), corrLoss, meanCorrLoss: mean(corrLoss) };
}
