/**
 * Setting up the kernel-upscaled state (docs/MATH.md §5): support vectors from calibration keys
 * (k-means++ or a random sample), γ by the median heuristic, R's initial value (identity or
 * Nyström whitening), and the collection of kk vectors per layer and head from the reference
 * forward. Float64 throughout.
 *
 * Conventions:
 * - γ = 1 / median{‖x_i − x_j‖² : i < j} over the calibration vectors of one layer and head
 *   (all pairs, or `maxPairs` seeded random pairs when there are more), so φ between two
 *   typical calibration vectors is e^(−1). The median of an even count is the mean of the two
 *   middle values.
 * - k-means++: first centre uniform, each next one with probability ∝ squared distance to the
 *   nearest centre so far, then Lloyd iterations (a centre with no points stays put). Centres
 *   are cluster means, not renormalised to unit length.
 * - Nyström whitening: R0 = V diag(1 / √(max(λ, 0) + ridge)) Vᵀ with K_MM = V Λ Vᵀ,
 *   K_MM[m, n] = exp(−γ ‖c_m − c_n‖²), eigendecomposition by cyclic Jacobi.
 *
 * @module
 */
import type { RwkvWeights } from "../model/types.ts";
import { refForward } from "../ref/model.ts";
import { Rng } from "../util/rng.ts";
import type { LiftedConfig } from "./config.ts";
import type { LiftedLayers, LiftedState } from "../ref/lifted_types.ts";

/** Squared distance between row i of `a` and row j of `b` (rows of N). */
function dist2(a: ArrayLike<number>, i: number, b: ArrayLike<number>, j: number, N: number) {
  let s = 0;
  for (let k = 0; k < N; k++) s += (a[i * N + k] - b[j * N + k]) ** 2;
  return s;
}

function needCount(count: number, M: number, what: string): void {
  if (count < M) {
    throw new RangeError(
      `${what}: ${count} calibration vectors for ${M} support vectors; use more calibration ` +
        `tokens (at least M per head) or fewer features`,
    );
  }
}

/**
 * M distinct calibration vectors drawn uniformly without replacement.
 *
 * @param x (count, N) calibration vectors
 * @returns (M, N)
 * @throws {RangeError} when count < M
 */
export function randomSupport(
  x: ArrayLike<number>,
  count: number,
  N: number,
  M: number,
  rng: Rng,
): Float64Array {
  needCount(count, M, "randomSupport");
  const idx = rng.shuffle(Array.from({ length: count }, (_, i) => i)).slice(0, M);
  const c = new Float64Array(M * N);
  idx.forEach((i, m) => {
    for (let k = 0; k < N; k++) c[m * N + k] = x[i * N + k];
  });
  return c;
}

/**
 * k-means++ seeding followed by `iters` Lloyd iterations.
 *
 * @param x (count, N) calibration vectors
 * @returns (M, N) centres
 * @throws {RangeError} when count < M
 * @example
 * ```ts
 * import { kmeansPlusPlus } from "./support.ts";
 * import { Rng } from "../util/rng.ts";
 * const x = Float64Array.of(0, 0, 0.1, 0, 5, 5, 5.1, 5); // two clusters in 2-D
 * const c = kmeansPlusPlus(x, 4, 2, 2, new Rng(1), 3);
 * console.assert(Math.abs(c[0] + c[2] - 5.1) < 1e-9); // one centre per cluster
 * ```
 */
export function kmeansPlusPlus(
  x: ArrayLike<number>,
  count: number,
  N: number,
  M: number,
  rng: Rng,
  iters = 5,
): Float64Array {
  needCount(count, M, "kmeansPlusPlus");
  const c = new Float64Array(M * N);
  const take = (m: number, i: number) => {
    for (let k = 0; k < N; k++) c[m * N + k] = x[i * N + k];
  };
  take(0, rng.int(count));
  const near = new Float64Array(count).fill(Infinity);
  for (let m = 1; m < M; m++) {
    let total = 0;
    for (let i = 0; i < count; i++) {
      near[i] = Math.min(near[i], dist2(x, i, c, m - 1, N));
      total += near[i];
    }
    let pick = count - 1;
    if (total > 0) {
      let u = rng.next() * total;
      for (let i = 0; i < count; i++) {
        u -= near[i];
        if (u < 0) {
          pick = i;
          break;
        }
      }
    } else {
      pick = rng.int(count); // every vector already coincides with a centre
    }
    take(m, pick);
  }
  const sums = new Float64Array(M * N), sizes = new Float64Array(M);
  for (let it = 0; it < iters; it++) {
    sums.fill(0);
    sizes.fill(0);
    for (let i = 0; i < count; i++) {
      let best = 0, bestD = Infinity;
      for (let m = 0; m < M; m++) {
        const d = dist2(x, i, c, m, N);
        if (d < bestD) [best, bestD] = [m, d];
      }
      sizes[best]++;
      for (let k = 0; k < N; k++) sums[best * N + k] += x[i * N + k];
    }
    for (let m = 0; m < M; m++) {
      if (sizes[m] === 0) continue;
      for (let k = 0; k < N; k++) c[m * N + k] = sums[m * N + k] / sizes[m];
    }
  }
  return c;
}

/**
 * The median heuristic: γ = 1 / median of the squared pairwise distances.
 *
 * @param x (count, N) calibration vectors, count ≥ 2
 * @param maxPairs above this many pairs, that many seeded random pairs (i ≠ j) are used
 * @throws {RangeError} when count < 2 or every distance is 0
 * @example
 * ```ts
 * import { medianGamma } from "./support.ts";
 * import { Rng } from "../util/rng.ts";
 * const g = medianGamma(Float64Array.of(0, 1, 3), 3, 1, 100, new Rng(0)); // d² = 1, 4, 9
 * console.assert(g === 0.25);
 * ```
 */
export function medianGamma(
  x: ArrayLike<number>,
  count: number,
  N: number,
  maxPairs: number,
  rng: Rng,
): number {
  if (count < 2) throw new RangeError(`medianGamma needs at least 2 vectors, got ${count}`);
  const all = (count * (count - 1)) / 2;
  const d: number[] = [];
  if (all <= maxPairs) {
    for (let i = 0; i < count; i++) {
      for (let j = i + 1; j < count; j++) d.push(dist2(x, i, x, j, N));
    }
  } else {
    while (d.length < maxPairs) {
      const i = rng.int(count), j = rng.int(count);
      if (i !== j) d.push(dist2(x, i, x, j, N));
    }
  }
  d.sort((a, b) => a - b);
  const n = d.length;
  const med = n % 2 ? d[(n - 1) / 2] : (d[n / 2 - 1] + d[n / 2]) / 2;
  if (!(med > 0)) {
    throw new RangeError(`medianGamma: the median squared distance is ${med}; vectors coincide`);
  }
  return 1 / med;
}

/** K[m, n] = exp(−γ ‖c_m − c_n‖²) for support vectors c (M, N); returns (M, M). */
export function gaussianKernelMatrix(
  c: ArrayLike<number>,
  M: number,
  N: number,
  gamma: number,
): Float64Array {
  const K = new Float64Array(M * M);
  for (let m = 0; m < M; m++) {
    for (let n = m; n < M; n++) {
      K[m * M + n] = K[n * M + m] = Math.exp(-gamma * dist2(c, m, c, n, N));
    }
  }
  return K;
}

/**
 * Eigendecomposition of a symmetric n×n matrix by cyclic Jacobi rotations:
 * A = V diag(values) Vᵀ, eigenvectors in the columns of V (row-major n×n).
 *
 * @param A (n, n) symmetric; not modified
 * @example
 * ```ts
 * import { symmetricEigen } from "./support.ts";
 * const { values } = symmetricEigen(Float64Array.of(2, 1, 1, 2), 2);
 * console.assert(Math.abs(Math.min(...values) - 1) < 1e-12 && Math.abs(Math.max(...values) - 3) < 1e-12);
 * ```
 */
export function symmetricEigen(
  A: ArrayLike<number>,
  n: number,
): { values: Float64Array; vectors: Float64Array } {
  const a = Float64Array.from(A);
  const V = new Float64Array(n * n);
  for (let i = 0; i < n; i++) V[i * n + i] = 1;
  let scale = 0;
  for (let i = 0; i < n * n; i++) scale += a[i] * a[i];
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p * n + q] ** 2;
    if (off <= 1e-30 * scale || off === 0) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q];
        if (apq === 0) continue;
        const theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const cs = 1 / Math.sqrt(t * t + 1), sn = t * cs;
        for (let k = 0; k < n; k++) { // A ← A J
          const akp = a[k * n + p], akq = a[k * n + q];
          a[k * n + p] = cs * akp - sn * akq;
          a[k * n + q] = sn * akp + cs * akq;
        }
        for (let k = 0; k < n; k++) { // A ← Jᵀ A
          const apk = a[p * n + k], aqk = a[q * n + k];
          a[p * n + k] = cs * apk - sn * aqk;
          a[q * n + k] = sn * apk + cs * aqk;
        }
        for (let k = 0; k < n; k++) { // V ← V J
          const vkp = V[k * n + p], vkq = V[k * n + q];
          V[k * n + p] = cs * vkp - sn * vkq;
          V[k * n + q] = sn * vkp + cs * vkq;
        }
      }
    }
  }
  const values = new Float64Array(n);
  for (let i = 0; i < n; i++) values[i] = a[i * n + i];
  return { values, vectors: V };
}

/**
 * (A + ridge·I)^(−1/2) of a symmetric positive semi-definite matrix, negative eigenvalues
 * (round-off) clamped to 0.
 *
 * @throws {RangeError} when an eigenvalue plus the ridge is not positive
 */
export function inverseSqrtSym(A: ArrayLike<number>, n: number, ridge: number): Float64Array {
  const { values, vectors: V } = symmetricEigen(A, n);
  const s = values.map((l) => {
    const v = Math.max(l, 0) + ridge;
    if (!(v > 0)) {
      throw new RangeError(`inverseSqrtSym: eigenvalue ${l} + ridge ${ridge} is not positive`);
    }
    return 1 / Math.sqrt(v);
  });
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) {
      let x = 0;
      for (let k = 0; k < n; k++) x += V[i * n + k] * s[k] * V[j * n + k];
      out[i * n + j] = out[j * n + i] = x;
    }
  }
  return out;
}

/** Nyström whitening R0 = (K_MM + ridge·I)^(−1/2) of support vectors c (M, N); (M, M). */
export function nystromWhitening(
  c: ArrayLike<number>,
  M: number,
  N: number,
  gamma: number,
  ridge: number,
): Float64Array {
  return inverseSqrtSym(gaussianKernelMatrix(c, M, N, gamma), M, ridge);
}

/**
 * Collect a per-head vector of the time mix (`kk`, the normalised keys, or `r`) for each
 * layer by running the reference forward from a zero state over each calibration sequence.
 *
 * @param sequences token ids of each calibration sequence
 * @param layers which layers to collect (all when omitted); others are left undefined
 * @returns [layer][head] → (count, N) with count = Σ sequence lengths, in token order
 */
export function collectHeadVectors(
  weights: RwkvWeights,
  sequences: number[][],
  options: { layers?: number[]; kind?: "kk" | "r" } = {},
): (Float64Array[] | undefined)[] {
  const { nLayer: L, nHead: H, headSize: N, nEmbd: C } = weights.config;
  const layers = options.layers ?? Array.from({ length: L }, (_, l) => l);
  const kind = options.kind ?? "kk";
  const total = sequences.reduce((s, q) => s + q.length, 0);
  const out: (Float64Array[] | undefined)[] = new Array(L).fill(undefined);
  for (const l of layers) out[l] = Array.from({ length: H }, () => new Float64Array(total * N));
  let row = 0;
  for (const tokens of sequences) {
    const { cache } = refForward(weights, tokens, undefined, { keepCache: true });
    for (const l of layers) {
      const src = cache!.layers[l].att[kind];
      for (let t = 0; t < tokens.length; t++) {
        for (let h = 0; h < H; h++) {
          out[l]![h].set(src.subarray(t * C + h * N, t * C + (h + 1) * N), (row + t) * N);
        }
      }
    }
    row += tokens.length;
  }
  return out;
}

/**
 * Build one layer's lifted state from its calibration kk vectors: support vectors (k-means++
 * or random), γ by the median heuristic, R = I or Nyström whitening, Ŝ0 = 0.
 *
 * @param kkPerHead H arrays (count, N) of calibration kk vectors (not read for the identity map)
 * @param rng draws for selection and pair sampling (consumed head by head)
 */
export function initLiftedState(
  kkPerHead: Float64Array[],
  H: number,
  N: number,
  config: LiftedConfig,
  rng: Rng,
): LiftedState {
  const M = Math.round(config.featureRatio * N);
  const R = new Float64Array(H * M * M);
  const base = {
    M,
    featureMap: config.featureMap,
    headMeans: config.headMeans,
    read: config.read,
    writes: config.writes,
    ...(config.writes ? { gate: new Float64Array(H) } : {}),
  };
  const s0 = new Float64Array(H * N * M);
  if (config.featureMap === "identity") {
    for (let h = 0; h < H; h++) for (let m = 0; m < M; m++) R[h * M * M + m * M + m] = 1;
    return { ...base, s0, R };
  }
  const support = new Float64Array(H * M * N), gamma = new Float64Array(H);
  for (let h = 0; h < H; h++) {
    const x = kkPerHead[h], count = x.length / N;
    const c = config.support === "kmeans"
      ? kmeansPlusPlus(x, count, N, M, rng, config.kmeansIters)
      : randomSupport(x, count, N, M, rng);
    support.set(c, h * M * N);
    gamma[h] = medianGamma(x, count, N, config.medianPairs, rng);
    if (config.rInit === "nystrom") {
      R.set(nystromWhitening(c, M, N, gamma[h], config.nystromRidge), h * M * M);
    } else {
      for (let m = 0; m < M; m++) R[h * M * M + m * M + m] = 1;
    }
  }
  return { ...base, s0, R, support, gamma };
}

/**
 * Lifted states for the layers `config.layers` selects, from the reference forward over the
 * calibration sequences (seeded by `config.seed`).
 *
 * @returns L entries, undefined for layers without a branch
 * @example
 * ```ts ignore
 * const lifted = initLiftedLayers(weights, calib, LiftedConfigSchema.parse({ enabled: true }));
 * const { logits } = refForward(weights, tokens, undefined, { lifted });
 * ```
 */
export function initLiftedLayers(
  weights: RwkvWeights,
  sequences: number[][],
  config: LiftedConfig,
): LiftedLayers {
  const { nLayer: L, nHead: H, headSize: N } = weights.config;
  const layers = config.layers === "all" ? Array.from({ length: L }, (_, l) => l) : config.layers;
  for (const l of layers) {
    if (l >= L) throw new RangeError(`lifted layer ${l} does not exist (the model has ${L})`);
  }
  const kk = config.featureMap === "gaussian"
    ? collectHeadVectors(weights, sequences, { layers, kind: "kk" })
    : [];
  const rng = new Rng(config.seed);
  const out: LiftedLayers = new Array(L).fill(undefined);
  for (const l of layers) out[l] = initLiftedState(kk[l] ?? [], H, N, config, rng);
  return out;
}
