/**
 * The cell runner of the decisive ablation (issue 11): one cell = testbed (with its seed and
 * sweep value) × variant × seed → tune with the chosen engine, score on the GPU model, return
 * the row. Variant kinds are a registry ({@link VARIANT_KINDS}): `untuned` and `state` run
 * today; the lifted, DBP and LoRA kinds register here once the trainable parts (issue 10) land,
 * with the CPU engine's {@link CpuPart} and the GPU loop's `TrainablePart`.
 *
 * @module
 */
import { z } from "zod";
import type { GpuModel } from "../model/gpu_model.ts";
import { type RwkvState, type RwkvWeights, zeroState } from "../model/types.ts";
import type { TextEncoder } from "../train/data.ts";
import type { HistoryRow } from "../train/tune.ts";
import { tuneState } from "../train/tune.ts";
import { cpuTuneState } from "./cpu_tune.ts";
import type { Cell, CellRow, GridSpecInput } from "./grid.ts";
import { addTestbed, factsTestbed, skillTestbed, type Testbed } from "./testbeds.ts";

/** Options every cell shares (the grid's `options`). */
export const CellOptionsSchema = z.object({
  /** "cpu": the float64 reference (small models; 2 worker processes); "gpu": tuneState */
  engine: z.enum(["cpu", "gpu"]).default("cpu"),
  /** optimiser steps; a number, or per value of the testbed's sweep (`{ "128": 1200 }`) */
  steps: z.union([z.number().int().positive(), z.record(z.string(), z.number().int().positive())])
    .default(400),
  batch: z.number().int().positive().default(32),
  lrInit: z.number().positive().default(1),
  lrFinal: z.number().positive().default(0.01),
  clip: z.number().min(0).default(1),
  /** skill testbed: which skill */
  skill: z.string().default("reverse"),
});
/** Cell options with defaults. */
export type CellOptions = z.output<typeof CellOptionsSchema>;

/** What a cell runner needs: the model (GPU for scoring; weights for the CPU engine). */
export interface CellContext {
  weights: RwkvWeights;
  model: GpuModel;
  tokenizer: TextEncoder;
  options: CellOptions;
  /** called every `progressEvery` steps of a run (e.g. a log line) */
  onProgress?: (cell: Cell, row: HistoryRow, steps: number) => void;
  progressEvery?: number;
}

/** Result of one variant's tuning. */
export interface VariantResult {
  state?: RwkvState;
  history: HistoryRow[];
  trainable: number;
  /** undo anything the variant set on the model (lifted set, merged LoRA) after scoring */
  cleanup?: () => void;
}

/** A variant kind: tune on `testbed.train` for `steps` from the cell's seed. */
export type VariantKind = (
  ctx: CellContext,
  cell: Cell,
  testbed: Testbed,
  steps: number,
) => Promise<VariantResult>;

/** The testbed of a cell (its seed is the cell's seed, so variants of a seed are paired). */
export function cellTestbed(ctx: CellContext, cell: Cell): Testbed {
  const seed = cell.seed, tok = ctx.tokenizer;
  switch (cell.testbed) {
    case "facts":
      return factsTestbed(tok, { K: cell.params.K ?? 128, seed });
    case "skill":
      return skillTestbed(tok, { skill: ctx.options.skill as never, seed });
    case "add":
      return addTestbed(tok, { seed });
    default:
      throw new RangeError(
        `testbed "${cell.testbed}" has no cell runner; use facts, skill or add (jsonl: ` +
          `register it with its dataset in the runner)`,
      );
  }
}

/** Steps of a cell: `options.steps`, or its entry for the cell's testbed sweep value. */
export function cellSteps(o: CellOptions, cell: Cell): number {
  if (typeof o.steps === "number") return o.steps;
  const v = Object.values(cell.testbedParams)[0];
  const s = o.steps[String(v)];
  if (s === undefined) {
    throw new RangeError(
      `steps: no entry for ${JSON.stringify(cell.testbedParams)} in ${JSON.stringify(o.steps)}`,
    );
  }
  return s;
}

const plainState = (w: RwkvWeights, states: Float32Array[]): RwkvState => {
  const st = zeroState(w.config);
  states.forEach((s, l) => st[l].wkv.set(s));
  return st;
};

/** The variant kinds that run today; issue 10's parts add `lifted-*`, `dbp`, `lora`. */
export const VARIANT_KINDS: Record<string, VariantKind> = {
  untuned: () => Promise.resolve({ history: [], trainable: 0 }),
  async state(ctx, cell, tb, steps) {
    const o = ctx.options, w = ctx.weights;
    const common = {
      steps,
      batch: o.batch,
      lrInit: o.lrInit,
      lrFinal: o.lrFinal,
      clip: o.clip,
      seed: cell.seed,
      onStep: (row: HistoryRow) => {
        const every = ctx.progressEvery ?? 200;
        if (ctx.onProgress && row.step % every === 0) ctx.onProgress(cell, row, steps);
      },
    };
    const { nLayer: L, nHead: H, headSize: N } = w.config;
    const res = o.engine === "cpu"
      ? cpuTuneState(w, tb.train, common)
      : await tuneState(ctx.model, tb.train, { ...common, progress: false, livePlot: false });
    return { state: plainState(w, res.states), history: res.history, trainable: L * H * N * N };
  },
};

/** Run one cell: tune, score the held-out items (and the side scores), return the row. */
export async function runCell(ctx: CellContext, cell: Cell): Promise<Omit<CellRow, "cell">> {
  const kind = VARIANT_KINDS[cell.kind];
  if (!kind) {
    throw new RangeError(
      `variant kind "${cell.kind}" is not available yet (it needs the trainable parts of ` +
        `issue 10); available: ${Object.keys(VARIANT_KINDS).join(", ")}`,
    );
  }
  const t0 = performance.now();
  const tb = cellTestbed(ctx, cell);
  const steps = cell.kind === "untuned" ? 0 : cellSteps(ctx.options, cell);
  const res = await kind(ctx, cell, tb, steps);
  const tuneSeconds = (performance.now() - t0) / 1000;
  try {
    const sc = await tb.score(ctx.model, res.state);
    const side = tb.side ? await tb.side(ctx.model, res.state) : {};
    const last = res.history[res.history.length - 1];
    return {
      metrics: {
        ...sc.metrics,
        ...side,
        trainable: res.trainable,
        steps,
        finalLoss: last?.loss ?? null,
        tuneSeconds,
      },
      items: sc.items,
      ...(res.history.length
        ? {
          curve: { steps: res.history.map((h) => h.step), losses: res.history.map((h) => h.loss) },
        }
        : {}),
      seconds: (performance.now() - t0) / 1000,
    };
  } finally {
    res.cleanup?.();
  }
}

/**
 * The default grids of `deno task reproduce --testbed …` (docs/EXPERIMENTS.md has the budget
 * arithmetic). Variants whose kinds are not registered yet are listed so the grid is fixed now.
 */
export function defaultGrid(testbed: "facts" | "skill" | "add", seeds = 5): GridSpecInput {
  const s = Array.from({ length: seeds }, (_, i) => i);
  const variants = [
    { name: "untuned", kind: "untuned" },
    { name: "state", kind: "state" },
    { name: "lifted-memory", kind: "lifted-memory", options: { featureRatio: 4, lrScale: 0.3 } },
    { name: "lifted-writes", kind: "lifted-writes", options: { featureRatio: 4, lrScale: 0.3 } },
    { name: "lifted-dbp", kind: "dbp", options: { featureRatio: 4, lrScale: 0.3 } },
    { name: "lora-eq", kind: "lora", options: { equalTo: "state", lr: 1e-2 } },
  ];
  if (testbed === "facts") {
    return {
      testbeds: [{ name: "facts", sweep: { key: "K", values: [128] } }],
      variants,
      seeds: s,
      options: { steps: { "16": 400, "64": 800, "128": 1200, "256": 2000 }, batch: 32 },
    };
  }
  return { testbeds: [{ name: testbed }], variants, seeds: s, options: { steps: 400, batch: 32 } };
}
