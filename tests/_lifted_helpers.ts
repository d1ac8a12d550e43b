/**
 * Helpers shared by the lifted-branch GPU tests (`lifted_gpu_test.ts`, `lifted_gpu_logits_test.ts`):
 * a branch case and random lifted layer state for it.
 *
 * @module
 */
import type { LiftedState } from "../lib/ref/lifted_types.ts";
import type { Rng } from "./_helpers.ts";

export const gauss = { featureMap: "gaussian" as const, headMeans: true };

export interface Case {
  T: number;
  N: number;
  M: number;
  featureMap: "gaussian" | "identity";
  headMeans: boolean;
  read?: "normalised" | "raw";
  writes?: boolean;
}

/** A random lifted layer for case `c` over H heads: R near the identity, unit support vectors. */
export function randomLifted(rng: Rng, c: Case, H: number): LiftedState {
  const { N, M } = c;
  const R = new Float32Array(H * M * M);
  for (let h = 0; h < H; h++) {
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < M; j++) R[(h * M + i) * M + j] = (i === j ? 1 : 0) + 0.1 * rng.uniform();
    }
  }
  const support = new Float32Array(H * M * N);
  for (let o = 0; o < support.length; o += N) {
    let s = 0;
    for (let j = 0; j < N; j++) s += (support[o + j] = rng.normal()) ** 2;
    for (let j = 0; j < N; j++) support[o + j] /= Math.sqrt(s);
  }
  return {
    M,
    featureMap: c.featureMap,
    headMeans: c.headMeans,
    read: c.read ?? "normalised",
    writes: c.writes ?? false,
    ...(c.writes ? { gate: rng.f32(H, 0.2, 1) } : {}),
    s0: rng.f32(H * N * M, -0.5, 0.5),
    R: c.featureMap === "identity" ? R.map((_, k) => (k % (M + 1) === 0 ? 1 : 0)) : R,
    support: c.featureMap === "gaussian" ? support : undefined,
    gamma: c.featureMap === "gaussian"
      ? Float32Array.from({ length: H }, () => 0.3 + rng.next())
      : undefined,
  };
}
