/**
 * Option schemas of the kernel-upscaled state and of decorrelated backpropagation (DBP),
 * docs/MATH.md §5 and §6: how a lifted branch is built (support vectors, γ, R) and how DBP
 * moves R.
 *
 * @module
 */
import { z } from "zod";
import type { FeatureMap, LiftedRead } from "../ref/lifted_types.ts";

/** A number schema that must satisfy `ok`; the message quotes the bad value. */
function ranged(name: string, expected: string, ok: (v: number) => boolean) {
  return z.number({ error: (iss) => `${name} must be a number, got ${JSON.stringify(iss.input)}` })
    .refine(ok, { error: (iss) => `${name} must be ${expected}, got ${iss.input}` });
}

/** Options of the lifted state with every default filled in. */
export interface LiftedConfig {
  /** Add the lifted branch. Default false. */
  enabled: boolean;
  /** Which layers get a branch: "all" or layer indices. Default "all". */
  layers: "all" | number[];
  /** M = featureRatio · N (an integer). Default 4. The identity map needs 1. */
  featureRatio: number;
  /** φ. Default "gaussian". */
  featureMap: FeatureMap;
  /** Head-mean d̄, ā in the edit (true) or per-channel d, a (false, needs M = N). Default true. */
  headMeans: boolean;
  /** Support-vector selection over the calibration kk vectors. Default "kmeans" (k-means++). */
  support: "kmeans" | "random";
  /** Lloyd iterations after the k-means++ seeding. Default 5. */
  kmeansIters: number;
  /** Calibration sequences taken from the training data. Default 8. */
  calibrationSequences: number;
  /** Most vector pairs the median heuristic looks at (a seeded sample above). Default 20000. */
  medianPairs: number;
  /** R at the start: identity, or Nyström whitening (K_MM + ridge·I)^(−1/2). Default "identity". */
  rInit: "identity" | "nystrom";
  /** Ridge added to K_MM's diagonal before the inverse square root. Default 1e-3. */
  nystromRidge: number;
  /** Seed of support selection and pair sampling. Default 0. */
  seed: number;
  /**
   * The read (docs/MATH.md §5): "normalised" `q = ‖r‖ R φ(r/‖r‖)` (default), or version 1's "raw"
   * `R φ(r)`, kept only for that comparison.
   */
  read: LiftedRead;
  /** Writes mode (docs/MATH.md §5): v and k also write `v uᵀ` into Ŝ, a per-head gate (init 0) is trained. Default false (memory mode). */
  writes: boolean;
}

/** Lifted-state options as a caller writes them. */
export type LiftedConfigInput = Partial<LiftedConfig>;

const int = (name: string, min: number) =>
  ranged(name, `an integer ≥ ${min}`, (v) => Number.isInteger(v) && v >= min);

/**
 * Lifted-state options (docs/MATH.md §5, "Kernel-upscaled state"); defaults in {@link DEFAULT_LIFTED}.
 *
 * @example
 * ```ts
 * import { LiftedConfigSchema } from "./config.ts";
 * const c = LiftedConfigSchema.parse({ enabled: true });
 * console.assert(c.featureRatio === 4 && c.headMeans && c.featureMap === "gaussian");
 * ```
 */
export const LiftedConfigSchema: z.ZodType<LiftedConfig, LiftedConfigInput> = z.object({
  enabled: z.boolean().default(false),
  layers: z.union([z.literal("all"), z.array(int("layers[i]", 0))]).default("all"),
  featureRatio: ranged("featureRatio", "> 0", (v) => v > 0).default(4),
  featureMap: z.enum(["gaussian", "identity"]).default("gaussian"),
  headMeans: z.boolean().default(true),
  support: z.enum(["kmeans", "random"]).default("kmeans"),
  kmeansIters: int("kmeansIters", 0).default(5),
  calibrationSequences: int("calibrationSequences", 1).default(8),
  medianPairs: int("medianPairs", 1).default(20000),
  rInit: z.enum(["identity", "nystrom"]).default("identity"),
  nystromRidge: ranged("nystromRidge", "≥ 0", (v) => v >= 0).default(1e-3),
  seed: int("seed", 0).default(0),
  read: z.enum(["normalised", "raw"]).default("normalised"),
  writes: z.boolean().default(false),
}).strict().refine(
  (c) => c.featureMap === "gaussian" || (c.featureRatio === 1 && c.rInit === "identity"),
  { error: 'featureMap "identity" needs featureRatio 1 and rInit "identity"' },
);

/** The lifted-state defaults (disabled, M = 4N, Gaussian, head means, k-means++, R = I). */
export const DEFAULT_LIFTED: LiftedConfig = LiftedConfigSchema.parse({});

/** DBP options with every default filled in. */
export interface DbpConfig {
  /** Move R after each optimiser step (only acts with the lifted state). Default true. */
  enabled: boolean;
  /** η_R. Default 1e-3. */
  lr: number;
  /** κ in [0, 1]: weight of the whitening (diagonal) term. Default 0.5. */
  kappa: number;
  /** Vectors per head used for C each step; 0 = all the step's kk and r vectors. Default 0. */
  sample: number;
  /** Seed of the sampling. Default 0. */
  seed: number;
}

/** DBP options as a caller writes them. */
export type DbpConfigInput = Partial<DbpConfig>;

/**
 * DBP options (docs/MATH.md §6, "Decorrelated backpropagation"); defaults in {@link DEFAULT_DBP}.
 *
 * @example
 * ```ts
 * import { DbpConfigSchema } from "./config.ts";
 * console.assert(DbpConfigSchema.parse({}).kappa === 0.5);
 * ```
 */
export const DbpConfigSchema: z.ZodType<DbpConfig, DbpConfigInput> = z.object({
  enabled: z.boolean().default(true),
  lr: ranged("lr", "≥ 0", (v) => v >= 0).default(1e-3),
  kappa: ranged("kappa", "in [0, 1]", (v) => v >= 0 && v <= 1).default(0.5),
  sample: int("sample", 0).default(0),
  seed: int("seed", 0).default(0),
}).strict();

/** The DBP defaults (on, η_R 1e-3, κ 0.5, all vectors). */
export const DEFAULT_DBP: DbpConfig = DbpConfigSchema.parse({});
