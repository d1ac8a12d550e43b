/**
 * The variant kinds of the decisive ablation (docs/MATH.md §10; docs/EXPERIMENTS.md): how a cell tunes.
 * Every kind runs on either engine with the same maths — `cpu` (`cpuTune` and the parts of
 * `cpu_parts.ts`, float64, for small models) or `gpu` (`tune` with `StatePart`, `LiftedPart`,
 * `LoraPart`) — and hands back what the scorer needs: the tuned S0, the lifted layers, or the
 * merged LoRA model.
 *
 * Kinds: `untuned` (zero state), `state` (S0), `lifted-memory` and `lifted-writes` (S0 + Ŝ0 at
 * M = `M` features per head, memory or writes mode), `dbp` (`lifted-*` + DBP; `writes` option),
 * `lora` (S0 untouched, LoRA at the rank whose count is nearest `equalTo`).
 *
 * @module
 */
import { z } from "zod";
import { GpuModel } from "../model/gpu_model.ts";
import { GpuLifted } from "../model/gpu_lifted.ts";
import { type RwkvState, type RwkvWeights, zeroState } from "../model/types.ts";
import { initLora, type LoraAdapter, loraTrainableCount, rankForCount } from "../model/lora.ts";
import { mergeLoraWeights } from "../model/lora_file.ts";
import type { LiftedLayers } from "../ref/lifted_types.ts";
import { LiftedConfigSchema } from "../parts/config.ts";
import { initLiftedLayers } from "../parts/support.ts";
import { LiftedPart } from "../parts/lifted_part.ts";
import { createLoraPart } from "../parts/lora.ts";
import type { Dataset, Example, TextEncoder } from "../train/data.ts";
import type { HistoryRow } from "../train/history.ts";
import { tune } from "../train/tune.ts";
import { StatePart } from "../train/state_part.ts";
import type { TrainablePart } from "../train/parts.ts";
import { Rng } from "../util/rng.ts";
import { type CpuPart, cpuStatePart, cpuTune } from "./cpu_tune.ts";
import { cpuLiftedPart, cpuLoraPart } from "./cpu_parts.ts";
import type { Cell } from "./grid.ts";
import type { HarnessRun, Testbed } from "./testbeds.ts";

/** Options every cell shares (the grid's `options`). */
export const CellOptionsSchema = z.object({
  /** "cpu": the float64 reference (small models; 2 worker processes); "gpu": `tune` on WebGPU */
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
  /** facts testbed: instructed-skill items scored after tuning, per skill (0 = skip) */
  sideItems: z.number().int().min(0).default(100),
}).strict();
/** Cell options with defaults. */
export type CellOptions = z.output<typeof CellOptionsSchema>;

/** Options of the lifted kinds (`lifted-memory`, `lifted-writes`, `dbp`). */
export const LiftedVariantSchema = z.object({
  /** features per head; the cell's `M` sweep value wins; default N */
  M: z.number().int().positive().optional(),
  /** Ŝ0's learning rate relative to S0's (docs/MATH.md §10: 0.3) */
  lrScale: z.number().positive().default(0.3),
  /** dbp kind: build the branch in writes mode */
  writes: z.boolean().default(false),
  /** dbp kind: η_R and κ */
  dbpLr: z.number().min(0).default(1e-3),
  dbpKappa: z.number().min(0).max(1).default(0.5),
}).strict();

/** Options of the `lora` kind. */
export const LoraVariantSchema = z.object({
  /** trainable count to match: "state" (L·H·N²), "lifted" (state + Ŝ0 at M = `M`), or a number */
  equalTo: z.union([z.enum(["state", "lifted"]), z.number().int().positive()]).default("state"),
  /** with equalTo "lifted": features per head (default N) */
  M: z.number().int().positive().optional(),
  /** a fixed rank instead of equalTo */
  r: z.number().int().positive().optional(),
  /** LoRA's learning rate relative to the schedule (docs/MATH.md §10: 1e-2) */
  lrScale: z.number().positive().default(1e-2),
}).strict();

/** What a cell runner needs: the model (GPU for scoring; weights for the CPU engine). */
export interface CellContext {
  weights: RwkvWeights;
  model: GpuModel;
  tokenizer: TextEncoder;
  options: CellOptions;
  /** the jsonl testbed's data (train and held-out split) */
  dataset?: Dataset;
  /** the jsonl testbed's harness task, scored after tuning (`harnessTask`) */
  harness?: HarnessRun;
  /** called every `progressEvery` steps of a run (e.g. a log line) */
  onProgress?: (cell: Cell, row: HistoryRow, steps: number) => void;
  progressEvery?: number;
}

/** Result of one variant's tuning: what to score with, and what it trained. */
export interface VariantResult {
  state?: RwkvState;
  history: HistoryRow[];
  trainable: number;
  /** score on this model instead of the context's (a merged LoRA model) */
  model?: GpuModel;
  /** undo anything the variant set (lifted set on the model, merged LoRA model) after scoring */
  cleanup?: () => void;
}

/** A variant kind: tune on `testbed.train` for `steps` from the cell's seed. */
export type VariantKind = (
  ctx: CellContext,
  cell: Cell,
  testbed: Testbed,
  steps: number,
) => Promise<VariantResult>;

const stateCount = (w: RwkvWeights) => {
  const { nLayer: L, nHead: H, headSize: N } = w.config;
  return L * H * N * N;
};

function stateOf(w: RwkvWeights, flat?: Float32Array): RwkvState {
  const st = zeroState(w.config), per = stateCount(w) / w.config.nLayer;
  if (flat) st.forEach((s, l) => s.wkv.set(flat.subarray(l * per, (l + 1) * per)));
  return st;
}

function schedule(ctx: CellContext, cell: Cell, steps: number) {
  const o = ctx.options;
  return {
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
}

/**
 * The lifted layers of a cell: every layer, support vectors by k-means++ over the kk vectors of
 * calibration sequences drawn from the training set by the cell's seed (so the variants of one
 * seed and M share them: pairing).
 */
export function cellLifted(
  w: RwkvWeights,
  train: Example[],
  seed: number,
  M: number,
  writes: boolean,
): LiftedLayers {
  const order = new Rng(seed * 7919 + 17).shuffle(train.map((_, i) => i));
  const calib: number[][] = [];
  let tokens = 0;
  for (const i of order) {
    if (calib.length >= 8 && tokens >= 4 * M) break;
    calib.push(train[i].ids);
    tokens += train[i].ids.length;
  }
  if (tokens < M) {
    throw new RangeError(
      `lifted M = ${M}: the training set has only ${tokens} tokens to pick ${M} support vectors ` +
        `from; use a smaller M (--M) or more training items (facts: a larger K)`,
    );
  }
  return initLiftedLayers(
    w,
    calib,
    LiftedConfigSchema.parse({
      enabled: true,
      featureRatio: M / w.config.headSize,
      seed,
      writes,
      calibrationSequences: calib.length,
    }),
  );
}

/** Run S0 plus `extra` (CPU or GPU twin) and return S0, the history and the extra's result. */
async function runParts<T>(
  ctx: CellContext,
  cell: Cell,
  tb: Testbed,
  steps: number,
  cpu: () => { part: CpuPart; done: () => T } | undefined,
  gpu: () => Promise<{ part: TrainablePart; done: () => Promise<T> } | undefined>,
  withState = true,
): Promise<{ state: RwkvState; history: HistoryRow[]; extra?: T }> {
  const w = ctx.weights, sch = schedule(ctx, cell, steps);
  if (ctx.options.engine === "cpu") {
    const x = cpu();
    const parts = [...(withState ? [cpuStatePart(w)] : []), ...(x ? [x.part] : [])];
    const res = cpuTune(w, parts, tb.train, sch);
    const s0 = withState ? res.tensors[0].s0 : undefined;
    return { state: stateOf(w, s0), history: res.history, extra: x?.done() };
  }
  const sp = withState ? await StatePart.create(ctx.model) : undefined;
  const x = await gpu();
  try {
    const parts = [...(sp ? [sp] : []), ...(x ? [x.part] : [])];
    const res = await tune(ctx.model, tb.train, {
      ...sch,
      parts,
      progress: false,
      livePlot: false,
    });
    const state = stateOf(w);
    (sp ? await sp.states() : []).forEach((s, l) => state[l].wkv.set(s));
    return { state, history: res.history, extra: await x?.done() };
  } finally {
    sp?.destroy();
    x?.part.destroy?.();
  }
}

function liftedKind(mode: "memory" | "writes" | "dbp"): VariantKind {
  return async (ctx, cell, tb, steps) => {
    const o = LiftedVariantSchema.parse(cell.options), w = ctx.weights;
    const M = cell.params.M ?? o.M ?? w.config.headSize;
    const writes = mode === "writes" || (mode === "dbp" && o.writes);
    const layers = cellLifted(w, tb.train, cell.seed, M, writes);
    const dbp = mode === "dbp" ? { lr: o.dbpLr, kappa: o.dbpKappa, seed: cell.seed } : false;
    const res = await runParts<LiftedLayers>(
      ctx,
      cell,
      tb,
      steps,
      () => {
        const part = cpuLiftedPart(w, layers, { lrScale: o.lrScale, dbp });
        return { part, done: () => part.layers() };
      },
      async () => {
        const part = await LiftedPart.create(ctx.model, { layers, lrScale: o.lrScale, dbp });
        return { part, done: () => part.layers() };
      },
    );
    const trained = res.extra!;
    const lifted = trained.reduce(
      (n, s) => n + (s ? s.s0.length + (s.writes ? w.config.nHead : 0) : 0),
      0,
    );
    const set = await GpuLifted.create(ctx.model.gpu, w.config, trained);
    ctx.model.setLifted(set);
    return {
      state: res.state,
      history: res.history,
      trainable: stateCount(w) + lifted,
      cleanup: () => {
        ctx.model.setLifted(undefined);
        set.destroy();
      },
    };
  };
}

/** The LoRA rank a `lora` cell uses. */
export function loraRank(w: RwkvWeights, options: Record<string, unknown>): number {
  const o = LoraVariantSchema.parse(options);
  if (o.r) return o.r;
  const { nLayer: L, nHead: H, headSize: N } = w.config;
  const count = o.equalTo === "state"
    ? stateCount(w)
    : o.equalTo === "lifted"
    ? stateCount(w) + L * H * N * (o.M ?? N)
    : o.equalTo;
  return rankForCount(w.config, count);
}

const loraKind: VariantKind = async (ctx, cell, tb, steps) => {
  const o = LoraVariantSchema.parse(cell.options), w = ctx.weights;
  const r = loraRank(w, cell.options);
  const init = initLora(w.config, { r, seed: cell.seed });
  const res = await runParts<LoraAdapter>(
    ctx,
    cell,
    tb,
    steps,
    () => {
      const part = cpuLoraPart(w, init, { lrScale: o.lrScale });
      return { part, done: () => part.adapter() };
    },
    async () => {
      const part = await createLoraPart(ctx.model, init, { lrScale: o.lrScale });
      return { part, done: () => part.adapter() };
    },
    false,
  );
  const model = await GpuModel.create(ctx.model.gpu, mergeLoraWeights(w, res.extra!));
  return {
    history: res.history,
    trainable: loraTrainableCount(w.config, { r }),
    model,
    cleanup: () => model.destroy(),
  };
};

/** The variant kinds a grid can name. */
export const VARIANT_KINDS: Record<string, VariantKind> = {
  untuned: () => Promise.resolve({ history: [], trainable: 0 }),
  async state(ctx, cell, tb, steps) {
    const none = () => undefined, noneGpu = () => Promise.resolve(undefined);
    const res = await runParts(ctx, cell, tb, steps, none, noneGpu);
    return { state: res.state, history: res.history, trainable: stateCount(ctx.weights) };
  },
  "lifted-memory": liftedKind("memory"),
  "lifted-writes": liftedKind("writes"),
  dbp: liftedKind("dbp"),
  lora: loraKind,
};
