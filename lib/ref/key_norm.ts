/**
 * Reference of `shaders/key_norm.wgsl` (kk normalisation and the k_a update) and of its
 * backward `shaders/key_norm_backward.wgsl` (which also takes α = −kk, β = kk ⊙ a and the `a`
 * sigmoid's input gradient).
 *
 * @module
 */
import type { LayerWeights } from "../model/types.ts";

/** The forward values {@link keyNormBackward} reads, all (T, C). */
export interface KeyNormCache {
  /** k before the k_a update */
  k0: Float64Array;
  /** the in-context rate */
  a: Float64Array;
  kk: Float64Array;
}

/**
 * `kk = normalise(k0 ⊙ k_k)` per head (L2, floor 1e-12) and `k = k0 ⊙ (1 + (a − 1) ⊙ k_a)`.
 *
 * @param k0 (T, C); a (T, C); k_k, k_a (C)
 * @returns kk (T, C) and the updated k (T, C)
 * @example
 * ```ts
 * import { keyNorm } from "./key_norm.ts";
 * const { kk, k } = keyNorm([3, 4], [0.5, 0.5], [1, 1], [0, 0], 1, 1, 2); // kk = [0.6, 0.8], k = k0
 * ```
 */
export function keyNorm(
  k0: ArrayLike<number>,
  a: ArrayLike<number>,
  k_k: ArrayLike<number>,
  k_a: ArrayLike<number>,
  T: number,
  H: number,
  N: number,
): { kk: Float64Array; k: Float64Array } {
  const C = H * N;
  // kk = per-head L2-normalise(k ⊙ k_k), from k before its k_a update
  const kk = new Float64Array(T * C);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < H; h++) {
      const o = t * C + h * N;
      let n2 = 0;
      for (let j = 0; j < N; j++) n2 += (k0[o + j] * k_k[h * N + j]) ** 2;
      const inv = 1 / Math.max(Math.sqrt(n2), 1e-12);
      for (let j = 0; j < N; j++) kk[o + j] = k0[o + j] * k_k[h * N + j] * inv;
    }
  }
  const k = new Float64Array(T * C);
  for (let i = 0; i < T * C; i++) k[i] = k0[i] * (1 + (a[i] - 1) * k_a[i % C]);
  return { kk, k };
}

/**
 * Backward of `α = −kk`, `β = kk ⊙ a`, `k = k0 ⊙ (1 + (a − 1) ⊙ k_a)` and
 * `kk = q / max(‖q‖, 1e-12)` with `q = k0 ⊙ k_k` per head. Accumulates dL/da into `da`.
 *
 * @param dk gradient of the modified k (T, C)
 * @param dkkExtra gradient reaching kk by other paths (the lifted branch) (T, C)
 * @returns dk0 (T, C), dk_k (C), dk_a (C)
 */
export function keyNormBackward(
  w: Pick<LayerWeights, "k_k" | "k_a">,
  c: KeyNormCache,
  dk: Float64Array,
  dalpha: Float64Array,
  dbeta: Float64Array,
  da: Float64Array,
  T: number,
  H: number,
  N: number,
  dkkExtra?: Float64Array,
): { dk0: Float64Array; dk_k: Float64Array; dk_a: Float64Array } {
  const C = H * N;
  const dk0 = new Float64Array(T * C), dk_k = new Float64Array(C), dk_a = new Float64Array(C);
  const dkk = new Float64Array(N);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < H; h++) {
      const o = t * C + h * N;
      let n2 = 0, dot = 0;
      for (let j = 0; j < N; j++) {
        const i = o + j, ch = h * N + j;
        dkk[j] = -dalpha[i] + dbeta[i] * c.a[i];
        if (dkkExtra) dkk[j] += dkkExtra[i];
        da[i] += dbeta[i] * c.kk[i] + dk[i] * c.k0[i] * w.k_a[ch];
        dk0[i] = dk[i] * (1 + (c.a[i] - 1) * w.k_a[ch]);
        dk_a[ch] += dk[i] * c.k0[i] * (c.a[i] - 1);
        n2 += (c.k0[i] * w.k_k[ch]) ** 2;
        dot += c.kk[i] * dkk[j];
      }
      const norm = Math.sqrt(n2);
      for (let j = 0; j < N; j++) {
        const i = o + j, ch = h * N + j;
        // d(q/‖q‖) = (dkk − kk (kk·dkk)) / ‖q‖; below the 1e-12 floor kk = q / 1e-12 is linear
        const dq = norm > 1e-12 ? (dkk[j] - c.kk[i] * dot) / norm : dkk[j] / 1e-12;
        dk0[i] += dq * w.k_k[ch];
        dk_k[ch] += dq * c.k0[i];
      }
    }
  }
  return { dk0, dk_k, dk_a };
}
