/**
 * Reference of `shaders/groupnorm_bonus.wgsl` (GroupNorm of the WKV output plus the bonus term)
 * and of the bonus part of `shaders/groupnorm_bonus_backward.wgsl` (the GroupNorm backward is
 * `groupNormBackward` in `norm.ts`).
 *
 * @module
 */
import { groupNorm } from "./norm.ts";

/** The forward values {@link bonusBackward} reads, all (T, C). */
export interface BonusCache {
  r: Float64Array;
  /** k after the k_a update */
  k: Float64Array;
  /** v after the value residual */
  v: Float64Array;
}

/**
 * `o = GroupNorm(y; lnx, eps N·1e-5) + (Σ_j r_j k_j r_k[h, j]) · v` per head.
 *
 * @param y, r, k, v (T, C); lnx_w, lnx_b, r_k (C)
 * @returns o (T, C)
 */
export function groupNormBonus(
  y: Float64Array,
  f: BonusCache,
  lnx_w: ArrayLike<number>,
  lnx_b: ArrayLike<number>,
  r_k: ArrayLike<number>,
  T: number,
  H: number,
  N: number,
): Float64Array {
  const C = H * N, { r, k, v } = f;
  const o = groupNorm(y, lnx_w, lnx_b, T, H, N, N * 1e-5);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < H; h++) {
      const base = t * C + h * N;
      let s = 0;
      for (let j = 0; j < N; j++) s += r[base + j] * k[base + j] * r_k[h * N + j];
      for (let j = 0; j < N; j++) o[base + j] += s * v[base + j];
    }
  }
  return o;
}

/**
 * Backward of the bonus term `o += (Σ_j r_j k_j r_k[h, j]) · v` per head: accumulates into
 * dr, dk, dv (T, C) and returns dL/dr_k (H·N).
 */
export function bonusBackward(
  dO: Float64Array,
  c: BonusCache,
  r_k: ArrayLike<number>,
  dr: Float64Array,
  dk: Float64Array,
  dv: Float64Array,
  T: number,
  H: number,
  N: number,
): Float64Array {
  const C = H * N;
  const dr_k = new Float64Array(C);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < H; h++) {
      const o = t * C + h * N;
      let s = 0, ds = 0;
      for (let j = 0; j < N; j++) {
        s += c.r[o + j] * c.k[o + j] * r_k[h * N + j];
        ds += dO[o + j] * c.v[o + j];
      }
      for (let j = 0; j < N; j++) {
        dv[o + j] += s * dO[o + j];
        dr[o + j] += ds * c.k[o + j] * r_k[h * N + j];
        dk[o + j] += ds * c.r[o + j] * r_k[h * N + j];
        dr_k[h * N + j] += ds * c.r[o + j] * c.k[o + j];
      }
    }
  }
  return dr_k;
}
