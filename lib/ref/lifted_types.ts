/**
 * Types of the kernel-upscaled ("lifted") state (docs/MATH.md §5; docs/MATH.md): what one layer's
 * branch holds, shared by the CPU reference, the GPU set and the trainable part.
 *
 * Letters: `H` heads, `N` head size, `M` lifted features per head (default 4N). Layouts, all
 * row-major and float64 in the reference:
 * - lifted state Ŝ: (H, N, M), `[h][value i][feature m]`, feature fastest (like S's key);
 * - mixing matrix R: (H, M, M), `[h][row][col]`, so `z = R φ` per head;
 * - support vectors: (H, M, N), `[h][m][j]`;
 * - γ: (H).
 *
 * @module
 */
/** Feature map φ: Gaussian RBF over support vectors, or the identity (M = N, for the limit test). */
export type FeatureMap = "gaussian" | "identity";

/**
 * One layer's lifted branch: the trained Ŝ0 and the fixed (or DBP-updated) parts.
 *
 * With `featureMap: "gaussian"`, `φ(u)_m = exp(−γ_h ‖u − c_{h,m}‖²)`. With `"identity"`,
 * `φ(u) = u` and `M` must equal `N` (`support`/`gamma` are not read).
 * With `headMeans: true` the edit uses the head means (`d̄` geometric, `ā` arithmetic):
 * `Ŝ_t = Ŝ_{t−1}(d̄ I − ā e eᵀ)`. With `false` (needs M = N) it uses the per-channel d and a:
 * `Ŝ_t = Ŝ_{t−1}(diag(d) − e (e ⊙ a)ᵀ)` — with the identity map and R = I this is exactly the
 * homogeneous part of the WKV recurrence, so the branch is a second copy of S0.
 */
export interface LiftedState {
  /** M, features per head */
  M: number;
  featureMap: FeatureMap;
  headMeans: boolean;
  /** Ŝ0, (H, N, M): the trained tensor */
  s0: ArrayLike<number>;
  /** R, (H, M, M) */
  R: ArrayLike<number>;
  /** support vectors c, (H, M, N); gaussian map only */
  support?: ArrayLike<number>;
  /** γ per head, (H); gaussian map only */
  gamma?: ArrayLike<number>;
  /**
   * The read (docs/MATH.md §5): `"normalised"` (default when absent) reads `q = ‖r‖ · R φ(r / ‖r‖)`,
   * so φ sees r on the unit sphere where the support vectors (from unit kk) live; `"raw"` is
   * version 1's `q = R φ(r)`, kept only for that comparison. Equal for the identity map.
   */
  read?: LiftedRead;
  /**
   * Writes mode (docs/MATH.md §5; absent = false, memory mode): the frozen v and k also write
   * `v uᵀ` with `u = ‖k‖ · normalise(R φ(k / ‖k‖))`, and the read-out is scaled by {@link gate}.
   */
  writes?: boolean;
  /** Per-head gate g (H), writes mode only (absent = zeros); memory mode reads with g = 1. */
  gate?: ArrayLike<number>;
}

/** How the branch reads (see {@link LiftedState.read}). */
export type LiftedRead = "normalised" | "raw";

/** The read of `s`, `"normalised"` when absent. */
export function liftedRead(s: LiftedState): LiftedRead {
  return s.read ?? "normalised";
}

/** The gate of head h that scales the read-out: 1 in memory mode, `gate[h]` (or 0) in writes. */
export function liftedGate(s: LiftedState, h: number): number {
  return s.writes ? (s.gate?.[h] ?? 0) : 1;
}

/** Per-layer lifted branches of a model: `undefined` where a layer has none. */
export type LiftedLayers = (LiftedState | undefined)[];

/**
 * Validate a lifted state against the model shape.
 *
 * @throws {RangeError} naming the bad field, its length and the expected one
 */
export function checkLiftedState(s: LiftedState, H: number, N: number, where = "lifted"): void {
  const { M } = s;
  if (!Number.isInteger(M) || M < 1) throw new RangeError(`${where}.M = ${M}: expected ≥ 1`);
  const need = (name: string, a: ArrayLike<number> | undefined, n: number) => {
    if (!a || a.length !== n) {
      throw new RangeError(`${where}.${name} has length ${a?.length}, expected ${n}`);
    }
  };
  need("s0", s.s0, H * N * M);
  need("R", s.R, H * M * M);
  if (s.featureMap === "gaussian") {
    need("support", s.support, H * M * N);
    need("gamma", s.gamma, H);
  } else if (M !== N) {
    throw new RangeError(`${where}: featureMap "identity" needs M = N = ${N}, got M = ${M}`);
  }
  if (s.gate !== undefined) need("gate", s.gate, H);
  if (s.read !== undefined && s.read !== "normalised" && s.read !== "raw") {
    throw new RangeError(
      `${where}.read = ${JSON.stringify(s.read)}: expected "normalised" or "raw"`,
    );
  }
  if (!s.headMeans && M !== N) {
    throw new RangeError(`${where}: headMeans false needs M = N = ${N}, got M = ${M}`);
  }
}
