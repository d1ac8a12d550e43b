/**
 * Learning-rate schedule: linear warmup, then cosine decay from lrInit to lrFinal.
 *
 * @module
 */

/** Schedule parameters. */
export interface LrSchedule {
  lrInit: number;
  lrFinal: number;
  warmupSteps: number;
  totalSteps: number;
}

/**
 * The learning rate at optimiser step `step` (0-based).
 *
 * @example
 * ```ts
 * import { learningRate } from "./schedule.ts";
 * const s = { lrInit: 1, lrFinal: 0.01, warmupSteps: 0, totalSteps: 100 };
 * console.assert(learningRate(s, 0) === 1);
 * console.assert(Math.abs(learningRate(s, 99) - 0.01) < 1e-12);
 * ```
 */
export function learningRate(s: LrSchedule, step: number): number {
  if (step < s.warmupSteps) return s.lrInit * (step + 1) / s.warmupSteps;
  const span = Math.max(1, s.totalSteps - s.warmupSteps - 1);
  const p = Math.min(1, (step - s.warmupSteps) / span);
  return s.lrFinal + (s.lrInit - s.lrFinal) * 0.5 * (1 + Math.cos(Math.PI * p));
}
