/**
 * What a model shape costs per token, for expressing measured speeds as fractions of an
 * adapter's peak FLOP/s and memory bandwidth (`deno task gpu-check`).
 *
 * FLOPs count the matrix products only (2 per multiply-add; the element-wise kernels and the WKV
 * recurrence are left out, so the fractions are lower bounds of the work done):
 *
 * - forward (prefill, generation): 2·P per token, P = the multiply-adds of every Linear and
 *   low-rank weight plus the head (the embedding is a gather);
 * - state-tuning step: 6·P per token: the forward, the recomputed layer forwards of the backward,
 *   and the input-gradient products (the weights are frozen: no weight-gradient products).
 *
 * Bytes are the ideal minimum traffic: every weight read once per pass (one pass per prefill
 * call, per generated token, and three per step), activations not counted. So a fraction near 1
 * means the kernel time is at the hardware limit, never that it is over-counted.
 *
 * @module
 */
import type { RwkvConfig } from "../model/types.ts";

/** Per-token costs of one model shape. */
export interface ShapeCost {
  /** multiply-adds of the matrix weights read per token (Linear + low-rank + head) */
  matmulParams: number;
  /** bytes of those weights in the benchmarked storage dtype */
  weightBytes: number;
}

/**
 * The per-token costs of `cfg` with weights stored as `dtype`.
 *
 * @example
 * ```ts
 * import { shapeCost } from "./cost.ts";
 * import { OFFICIAL_SHAPES } from "../model/random.ts";
 * const c = shapeCost(OFFICIAL_SHAPES["0.1B"], "f32");
 * if (c.matmulParams < 1e8 || c.matmulParams > 2e8) throw new Error(String(c.matmulParams));
 * ```
 */
export function shapeCost(cfg: RwkvConfig, dtype: "f32" | "f16"): ShapeCost {
  const { nLayer: L, nEmbd: C, dimFfn: F, vocabSize: V } = cfg;
  const lowrank = (d: number) => 2 * C * d;
  const perLayer = 4 * C * C + 2 * C * F + lowrank(cfg.dimW) + lowrank(cfg.dimA) +
    lowrank(cfg.dimG) + lowrank(cfg.dimV);
  // layer 0 has no value-residual low-rank (v1, v2)
  const matmulParams = L * perLayer - lowrank(cfg.dimV) + V * C;
  return { matmulParams, weightBytes: matmulParams * (dtype === "f16" ? 2 : 4) };
}

/** A model-level measurement kind. */
export type Phase = "prefill" | "generate" | "step";

/** FLOPs per token and weight passes per call of each phase (see the module comment). */
const PER_TOKEN = { prefill: 2, generate: 2, step: 6 } as const;
const PASSES = { prefill: 1, generate: 1, step: 3 } as const;

/** The peak figures a fraction is taken of (either may be unknown). */
export interface PeakFigures {
  gflops: number | null;
  gbs: number | null;
}

/**
 * Achieved GFLOP/s and GB/s of a phase measured at `tokensPerSecond` over calls of `T` tokens
 * (generation: T = 1), and their fractions of the peak (null where the peak is unknown).
 */
export function phaseFractions(
  cost: ShapeCost,
  phase: Phase,
  T: number,
  tokensPerSecond: number,
  peak: PeakFigures,
): { gflops: number; gbs: number; flopFraction: number | null; bandwidthFraction: number | null } {
  const gflops = PER_TOKEN[phase] * cost.matmulParams * tokensPerSecond / 1e9;
  const callsPerSecond = tokensPerSecond / T;
  const gbs = PASSES[phase] * cost.weightBytes * callsPerSecond / 1e9;
  return {
    gflops,
    gbs,
    flopFraction: peak.gflops ? gflops / peak.gflops : null,
    bandwidthFraction: peak.gbs ? gbs / peak.gbs : null,
  };
}
