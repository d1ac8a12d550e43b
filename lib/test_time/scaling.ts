/**
 * Test-time-scaling curves: accuracy of guided test-time scaling (docs/MATH.md §5) against K (the
 * optimiser steps per item) and against the guide's cost (tokens it writes per item), each
 * point with a 95% Wilson interval over the items, and the figures of both.
 *
 * @module
 */
import { evaluateTask, type TaskResult } from "../eval/evaluate.ts";
import type { Scorer } from "../eval/scorer.ts";
import type { PreparedTask } from "../eval/tasks.ts";
import type { RwkvState } from "../model/types.ts";
import { Figure } from "../plot/figure.ts";
import type { Guide } from "./guide.ts";
import { guidedEvaluate, type TtsCost, type TtsOptions } from "./tts.ts";

/**
 * The 95% Wilson score interval of a binomial proportion.
 *
 * @example
 * ```ts
 * import { wilson95 } from "./scaling.ts";
 * const [lo, hi] = wilson95(50, 100);
 * console.assert(lo > 0.40 && lo < 0.41 && hi > 0.59 && hi < 0.60);
 * ```
 */
export function wilson95(successes: number, n: number): [number, number] {
  if (n <= 0) return [NaN, NaN];
  const z = 1.959963984540054, p = successes / n, z2 = z * z;
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = (z / (1 + z2 / n)) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  const lo = successes <= 0 ? 0 : Math.max(0, centre - half);
  return [lo, successes >= n ? 1 : Math.min(1, centre + half)];
}

/** One point of a curve. */
export interface ScalingPoint {
  /** Optimiser steps per item. */
  k: number;
  /** Most tokens the guide wrote per item. */
  guideMaxTokens: number;
  /** The task's first metric (acc / exact_match), its correct count and item count. */
  metric: string;
  accuracy: number;
  correct: number;
  n: number;
  /** 95% Wilson interval. */
  lo: number;
  hi: number;
  /** Mean guide tokens per item actually written (0 at K = 0: the guide is not called). */
  guideTokensPerItem: number;
  /** Total cost of the run. */
  cost: TtsCost;
  /** Seconds for the whole run (scoring included). */
  seconds: number;
}

/** Options of {@link scalingCurve}. */
export interface ScalingOptions {
  /** K values (0 = the untuned student). */
  ks: number[];
  /** Guide lengths for the cost sweep, run at the largest K (may be empty). */
  guideTokens?: number[];
  /** Guide length of the K sweep (default 64). */
  guideMaxTokens?: number;
  /** Everything else of {@link guidedEvaluate}'s options (lr, objective, …). */
  tts?: Omit<TtsOptions, "steps" | "guideMaxTokens" | "label">;
  /** The student's start state. */
  base?: RwkvState;
  /** After each point. */
  onPoint?: (p: ScalingPoint, sweep: "k" | "cost") => void;
}

function point(r: TaskResult, k: number, g: number, cost: TtsCost, t0: number): ScalingPoint {
  const m = r.metrics[0];
  const correct = Math.round(m.value * r.n);
  const [lo, hi] = wilson95(correct, r.n);
  return {
    k,
    guideMaxTokens: g,
    metric: m.metric,
    accuracy: m.value,
    correct,
    n: r.n,
    lo,
    hi,
    guideTokensPerItem: cost.guideTokens / Math.max(1, r.n),
    cost,
    seconds: (performance.now() - t0) / 1000,
  };
}

/**
 * Measure accuracy against K, then against the guide's length at the largest K.
 *
 * @returns the two sweeps' points
 */
export async function scalingCurve(
  scorer: Scorer,
  task: PreparedTask,
  guide: Guide,
  o: ScalingOptions,
): Promise<{ byK: ScalingPoint[]; byCost: ScalingPoint[] }> {
  const gmax = o.guideMaxTokens ?? 64;
  const run = async (k: number, g: number): Promise<ScalingPoint> => {
    const t0 = performance.now();
    if (k === 0) {
      const r = await evaluateTask(scorer, task, {
        state: "K=0",
        maxGenTokens: o.tts?.maxGenTokens,
      });
      return point(r, 0, g, { ...ZERO }, t0);
    }
    const r = await guidedEvaluate(scorer, task, guide, {
      ...o.tts,
      steps: k,
      guideMaxTokens: g,
      label: `K=${k},guide=${g}`,
    }, o.base);
    return point(r.result, k, g, r.total, t0);
  };
  const byK: ScalingPoint[] = [], byCost: ScalingPoint[] = [];
  for (const k of o.ks) {
    byK.push(await run(k, gmax));
    o.onPoint?.(byK[byK.length - 1], "k");
  }
  const kmax = Math.max(...o.ks);
  for (const g of o.guideTokens ?? []) {
    byCost.push(kmax > 0 ? await run(kmax, g) : byK[0]);
    o.onPoint?.(byCost[byCost.length - 1], "cost");
  }
  return { byK, byCost };
}

const ZERO: TtsCost = {
  guideTokens: 0,
  guideRequests: 0,
  guideMs: 0,
  optimiserSteps: 0,
  tuneMs: 0,
  ms: 0,
};

/** Accuracy against K (and, when given, against guide tokens per item), 95% bands. */
export function scalingFigure(
  byK: ScalingPoint[],
  byCost: ScalingPoint[] = [],
  title = "guided test-time scaling",
): Figure[] {
  const band = (ps: ScalingPoint[]) => ({ lo: ps.map((p) => p.lo), hi: ps.map((p) => p.hi) });
  const n = byK[0]?.n ?? 0;
  const figs = [
    new Figure({
      title: `${title}: accuracy against K (n = ${n}, 95% Wilson)`,
      xLabel: "K (optimiser steps per item)",
      yLabel: byK[0]?.metric ?? "accuracy",
      series: [{
        type: "line",
        name: "guided TTS",
        x: byK.map((p) => p.k),
        y: byK.map((p) => p.accuracy),
        band: band(byK),
      }],
    }),
  ];
  if (byCost.length) {
    figs.push(
      new Figure({
        title: `${title}: accuracy against the guide's cost (K = ${byCost[0].k})`,
        xLabel: "guide tokens per item",
        yLabel: byCost[0].metric,
        series: [{
          type: "line",
          name: "guided TTS",
          x: byCost.map((p) => p.guideTokensPerItem),
          y: byCost.map((p) => p.accuracy),
          band: band(byCost),
        }],
      }),
    );
  }
  return figs;
}

/** A plain-text table of points: K, guide tokens, accuracy [95% CI], cost, time. */
export function formatScaling(points: ScalingPoint[]): string {
  const rows = [["K", "guide max", "guide tok/item", "accuracy", "95% CI", "steps", "s"]];
  for (const p of points) {
    rows.push([
      String(p.k),
      String(p.guideMaxTokens),
      p.guideTokensPerItem.toFixed(1),
      `${p.correct}/${p.n} = ${p.accuracy.toFixed(3)}`,
      `[${p.lo.toFixed(3)}, ${p.hi.toFixed(3)}]`,
      String(p.cost.optimiserSteps),
      p.seconds.toFixed(1),
    ]);
  }
  const w = rows[0].map((_, j) => Math.max(...rows.map((r) => r[j].length)));
  return rows.map((r) => r.map((c, j) => c.padEnd(w[j])).join("  ")).join("\n");
}
