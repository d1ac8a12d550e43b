/**
 * Full-weight training (weight gradients on) of a small RWKV-7 from a seeded random start: how
 * the embedded default model is made. Engines: "cpu" (the float64 reference backward in
 * `lib/ref`, exact and fast for models this small) and, where wired, the WebGPU backward.
 *
 * @module
 */
import { z } from "zod";
import type { LayerWeights, RwkvConfig, RwkvWeights } from "../model/types.ts";
import { randomWeights } from "../model/random.ts";
import { refBatchLossAndGrad, type RefWeightGrads } from "../ref/backward.ts";
import { Rng } from "../util/rng.ts";
import { createProgress, type Progress } from "../plot/progress.ts";
import { learningRate, type LrSchedule } from "./schedule.ts";

/** Options of {@link pretrain}. */
export const PretrainOptionsSchema = z.object({
  steps: z.number().int().positive().default(2000),
  batch: z.number().int().positive().default(16),
  lrInit: z.number().positive().default(3e-3),
  lrFinal: z.number().positive().default(1e-4),
  warmupSteps: z.number().int().min(0).default(50),
  /** Clip the global gradient norm (0 = off). */
  clip: z.number().min(0).default(1),
  seed: z.number().int().default(0),
  progress: z.boolean().default(true),
});
/** Pretraining options (input form). */
export type PretrainOptions = z.input<typeof PretrainOptionsSchema>;

/** A source of training sequences: returns `batch` token sequences for step `step`. */
export type SequenceSource = (step: number, batch: number, rng: Rng) => number[][];

/** Every trainable tensor of a model, in a fixed order, with its gradient accessor. */
function parameterList(w: RwkvWeights): { name: string; p: Float32Array }[] {
  const out = [
    { name: "emb", p: w.emb },
    { name: "ln0_w", p: w.ln0_w },
    { name: "ln0_b", p: w.ln0_b },
    { name: "ln_out_w", p: w.ln_out_w },
    { name: "ln_out_b", p: w.ln_out_b },
    { name: "head", p: w.head },
  ];
  w.blocks.forEach((b, l) => {
    for (const [k, v] of Object.entries(b) as [keyof LayerWeights, Float32Array | undefined][]) {
      if (v) out.push({ name: `blocks.${l}.${k}`, p: v });
    }
  });
  return out;
}

function gradOf(g: RefWeightGrads, name: string): Float64Array {
  const m = /^blocks\.(\d+)\.(.+)$/.exec(name);
  if (m) return g.blocks[Number(m[1])][m[2] as keyof LayerWeights]!;
  return g[name as "emb"] as Float64Array;
}

/**
 * What both pretraining engines set up the same way: the data RNG (seed + 1), the schedule,
 * the history and the progress reporter.
 */
export function pretrainLoop(
  o: z.output<typeof PretrainOptionsSchema>,
  label: string,
): { rng: Rng; sched: LrSchedule; history: PretrainRow[]; progress: Progress } {
  return {
    rng: new Rng(o.seed + 1),
    sched: {
      lrInit: o.lrInit,
      lrFinal: o.lrFinal,
      warmupSteps: o.warmupSteps,
      totalSteps: o.steps,
    },
    history: [],
    progress: createProgress({ total: o.steps, label, unit: "step", silent: !o.progress }),
  };
}

/** One row of the pretraining history. */
export interface PretrainRow {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
}

/**
 * Train every weight of a fresh model of `config` with Adam (β 0.9/0.99) on sequences from
 * `source`, with the CPU reference engine. Deterministic for a seed.
 *
 * @returns the trained weights and the loss history
 */
export function pretrain(
  config: RwkvConfig,
  source: SequenceSource,
  options: PretrainOptions = {},
): { weights: RwkvWeights; history: PretrainRow[] } {
  const o = PretrainOptionsSchema.parse(options);
  const weights = randomWeights(config, o.seed);
  const params = parameterList(weights);
  const m = params.map(({ p }) => new Float64Array(p.length));
  const v = params.map(({ p }) => new Float64Array(p.length));
  const { rng, sched, history, progress } = pretrainLoop(o, "pretrain");
  for (let step = 0; step < o.steps; step++) {
    const seqs = source(step, o.batch, rng).map((ids) => ({
      tokens: ids.slice(0, -1),
      targets: ids.slice(1),
    }));
    const r = refBatchLossAndGrad(weights, seqs, undefined, { weightGrads: true });
    if (!Number.isFinite(r.loss)) {
      throw new Error(`pretrain: loss became ${r.loss} at step ${step}; lower lrInit`);
    }
    const grads = params.map(({ name }) => gradOf(r.dWeights!, name));
    let sq = 0;
    for (const g of grads) for (let i = 0; i < g.length; i++) sq += g[i] * g[i];
    const gradNorm = Math.sqrt(sq);
    const scale = o.clip > 0 && gradNorm > o.clip ? o.clip / gradNorm : 1;
    const lr = learningRate(sched, step);
    const c1 = 1 - 0.9 ** (step + 1), c2 = 1 - 0.99 ** (step + 1);
    params.forEach(({ p }, i) => {
      const g = grads[i], mi = m[i], vi = v[i];
      for (let j = 0; j < p.length; j++) {
        const gj = g[j] * scale;
        mi[j] = 0.9 * mi[j] + 0.1 * gj;
        vi[j] = 0.99 * vi[j] + 0.01 * gj * gj;
        p[j] -= (lr * (mi[j] / c1)) / (Math.sqrt(vi[j] / c2) + 1e-8);
      }
    });
    history.push({ step: step + 1, loss: r.loss, lr, gradNorm });
    progress.update(step + 1, { loss: r.loss.toFixed(4) });
  }
  void progress.finish();
  return { weights, history };
}
