/**
 * Tuning: optimise a list of {@link TrainablePart}s (the plain initial state S0, or any other
 * part that implements the interface) of a frozen RWKV-7 on a dataset, on WebGPU (forward,
 * backward and Adam all on the GPU; one CPU sync per step for the loss and gradient norm).
 *
 * Batches are a pure function of (seed, step), and checkpoints hold every part's tensors and
 * Adam moments, so a run resumed from a checkpoint reaches the same result as an uninterrupted
 * one.
 *
 * @module
 */
import { z } from "zod";
import type { GpuModel } from "../model/gpu_model.ts";
import { createProgress } from "../plot/progress.ts";
import { LivePlot } from "../plot/live.ts";
import { lossFigure } from "../plot/loss.ts";
export { lossFigure } from "../plot/loss.ts";
import type { Dataset, Example } from "./data.ts";
import { learningRate, type LrSchedule } from "./schedule.ts";
import { BatchOrder } from "./batches.ts";
import { CheckpointError, loadCheckpoint, prepareOutDir, saveCheckpoint } from "./checkpoint.ts";
import type { TrainablePart } from "./parts.ts";
import { StatePart } from "./state_part.ts";
import { StepRunner } from "./tune_step.ts";
import type { HistoryRow } from "./history.ts";
export type { HistoryRow } from "./history.ts";

/** Options of {@link tune} (defaults: the established recipe of docs/MATH.md §11). */
export const TuneOptionsSchema = z.object({
  lrInit: z.number().positive().default(1),
  lrFinal: z.number().positive().default(0.01),
  warmupSteps: z.number().int().min(0).default(0),
  /** Optimiser steps; when absent, `epochs` passes over the training set. */
  steps: z.number().int().positive().optional(),
  epochs: z.number().positive().default(1),
  /** Sequences per micro-batch. */
  batch: z.number().int().positive().default(4),
  /** Micro-batches per optimiser step. */
  gradAccum: z.number().int().positive().default(1),
  /** Clip the global gradient norm (over every part) to this (0 = off). */
  clip: z.number().min(0).default(1),
  l2wrap: z.boolean().default(false),
  seed: z.number().int().default(0),
  /** Validation loss every this many steps (0 = only at the end); needs a validation set. */
  valEvery: z.number().int().min(0).default(0),
  /** Folder for checkpoints (every `saveEvery` steps, on abort and at the end). */
  outDir: z.string().optional(),
  /**
   * Checkpoint every this many steps (with `outDir`; 0 = only on abort and at the end).
   * Default 50: a killed run loses at most 50 steps.
   */
  saveEvery: z.number().int().min(0).default(50),
  /** Continue from `outDir`'s checkpoint (refused when there is none). */
  resume: z.boolean().default(false),
  /** Progress bar / live output; false for silence. */
  progress: z.boolean().default(true),
  /** Live loss curve in Jupyter. */
  livePlot: z.boolean().default(true),
});

/** Options of {@link tune} (input form). */
export type TuneOptions = z.input<typeof TuneOptionsSchema> & {
  /** Stop early (the parts keep their values so far; a checkpoint is written). */
  signal?: AbortSignal;
  /** Called after every step with its history row. */
  onStep?: (row: HistoryRow) => void;
};

/** Result of {@link tune}: the parts hold the tuned values. */
export interface TuneRunResult {
  history: HistoryRow[];
  /** Step count reached (equals the planned steps unless aborted). */
  steps: number;
  stopReason: "done" | "aborted";
}

/** Result of {@link tuneState}. */
export interface TuneResult extends TuneRunResult {
  /** Per-layer tuned wkv states, each (H, N, N) value×key. */
  states: Float32Array[];
}

/** Training stopped on a non-finite loss or gradient. */
export class NonFiniteError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NonFiniteError";
  }
}

/** Options whose change on resume would change the run (named with their CLI flags). */
const FIXED_ON_RESUME: [key: string, flag: string, why: string][] = [
  ["totalSteps", "--steps/--epochs", "the cosine learning-rate schedule spans the planned steps"],
  ["lrInit", "--lr-init", "it sets the learning-rate schedule"],
  ["lrFinal", "--lr-final", "it sets the learning-rate schedule"],
  ["warmupSteps", "--warmup", "it sets the learning-rate schedule"],
  ["batch", "--batch", "the batches are a function of (seed, step, batch)"],
  ["gradAccum", "--grad-accum", "the batches are a function of (seed, step, batch)"],
  ["seed", "--seed", "the batches are a function of (seed, step, batch)"],
];

/** A list of examples as a dataset with no validation split; refuses an empty training set. */
function asDataset(data: Dataset | Example[]): Dataset {
  const ds: Dataset = Array.isArray(data)
    ? { train: data, val: [], bad: [], dropped: 0, source: "examples" }
    : data;
  if (ds.train.length === 0) throw new RangeError("tune: the training set is empty");
  return ds;
}

/**
 * Prepare the output folder (or load and check the checkpoint when resuming) and create the
 * step runner, holding the checkpoint's tensors when resuming: where the run starts and its
 * history so far.
 */
async function openRun(
  model: GpuModel,
  parts: TrainablePart[],
  o: z.output<typeof TuneOptionsSchema>,
  plan: Record<string, unknown>,
): Promise<{ runner: StepRunner; start: number; history: HistoryRow[] }> {
  let resumed: Awaited<ReturnType<typeof loadCheckpoint>> | undefined;
  if (o.resume) {
    if (!o.outDir) throw new RangeError("tune: resume needs outDir (where the checkpoint is)");
    resumed = await loadCheckpoint(o.outDir);
    checkSamePlan(`${o.outDir}/checkpoint.json`, resumed.options, plan);
  } else if (o.outDir) await prepareOutDir(o.outDir, "the checkpoint folder");
  const runner = await StepRunner.create(model, parts, o);
  if (!resumed) return { runner, start: 0, history: [] };
  try {
    runner.writeAll(resumed.tensors, `${o.outDir}/checkpoint.json`);
  } catch (e) {
    runner.destroy();
    throw e;
  }
  return { runner, start: resumed.step, history: resumed.history };
}

/**
 * Tune `options.parts` of `model` on `data`. The parts stay the caller's (read and destroy
 * them afterwards).
 *
 * @throws {NonFiniteError} on a non-finite loss or gradient norm (nothing is updated)
 * @throws {CheckpointError} on `resume` without a valid checkpoint in `outDir`
 * @example
 * ```ts ignore
 * const s0 = await StatePart.create(model);
 * const { history } = await tune(model, ds, { parts: [s0, ...otherParts], steps: 100 });
 * ```
 */
export async function tune(
  model: GpuModel,
  data: Dataset | Example[],
  options: TuneOptions & { parts: TrainablePart[] },
): Promise<TuneRunResult> {
  const { parts, signal, onStep, ...rest } = options;
  const o = TuneOptionsSchema.parse(rest);
  const ds = asDataset(data);
  const perStep = o.batch * o.gradAccum;
  const totalSteps = o.steps ?? Math.max(1, Math.ceil(o.epochs * ds.train.length / perStep));
  const sched = { lrInit: o.lrInit, lrFinal: o.lrFinal, warmupSteps: o.warmupSteps, totalSteps };
  const plan = { ...o, totalSteps };
  const order = new BatchOrder(ds.train.length, o.seed);
  const { runner, start, history } = await openRun(model, parts, o, plan);
  let lastSaved = o.resume ? start : undefined;
  const save = async (step: number) => {
    if (!o.outDir) return;
    const tensors = await runner.readAll();
    await saveCheckpoint(o.outDir, { step, tensors, history, config: model.config, options: plan });
    lastSaved = step;
  };
  const progress = createProgress({
    total: totalSteps,
    label: "tuning",
    unit: "step",
    silent: !o.progress,
  });
  const live = o.livePlot && o.progress ? new LivePlot() : undefined;
  const t0 = performance.now();
  let stopReason: TuneRunResult["stopReason"] = "done";
  let step = start;
  const run: StepContext = { runner, parts, ds, order, o, sched, t0 };
  try {
    try {
      for (; step < totalSteps; step++) {
        // GPU readbacks resolve without a turn of the event loop: give signal handlers one
        if (signal) await new Promise((r) => setTimeout(r, 0));
        if (signal?.aborted) {
          stopReason = "aborted";
          break;
        }
        const row = await trainStep(run, step, lastSaved);
        history.push(row);
        onStep?.(row);
        progress.update(step + 1, { loss: row.loss.toFixed(4), lr: row.lr.toPrecision(3) });
        live?.update(() => lossFigure(history));
        const last = step + 1 === totalSteps;
        if (o.saveEvery && (step + 1) % o.saveEvery === 0 && !last) await save(step + 1);
      }
    } finally {
      await progress.finish();
      if (live) await live.finish(lossFigure(history));
    }
    if (lastSaved !== step) await save(step);
  } finally {
    runner.destroy();
  }
  return { history, steps: step, stopReason };
}

/** What {@link trainStep} needs of a run. */
interface StepContext {
  runner: StepRunner;
  parts: TrainablePart[];
  ds: Dataset;
  order: BatchOrder;
  o: z.output<typeof TuneOptionsSchema>;
  sched: LrSchedule;
  t0: number;
}

/** One optimiser step: backward, the finiteness check, Adam, the history row (+ validation). */
async function trainStep(c: StepContext, step: number, lastSaved?: number): Promise<HistoryRow> {
  const { o, ds } = c, ts = performance.now();
  const examples = Array.from(
    { length: o.gradAccum },
    (_, a) => c.order.batch(step * o.gradAccum + a, o.batch).map((i) => ds.train[i]),
  );
  const { loss, gradNorm, tokens } = await c.runner.backward(step, examples);
  if (!Number.isFinite(loss) || !Number.isFinite(gradNorm)) {
    throw nonFinite(step, loss, gradNorm, o.outDir, lastSaved);
  }
  const lr = learningRate(c.sched, step);
  c.runner.update(step, lr);
  const row: HistoryRow = {
    step: step + 1,
    loss,
    lr,
    gradNorm,
    tokensPerSecond: tokens / ((performance.now() - ts) / 1000),
    elapsedMs: performance.now() - c.t0,
  };
  for (const p of c.parts) if (p.historyFields) Object.assign(row, await p.historyFields());
  const last = step + 1 === c.sched.totalSteps;
  if (ds.val.length && ((o.valEvery && (step + 1) % o.valEvery === 0) || last)) {
    row.valLoss = await c.runner.validationLoss(ds.val, o.batch, step + 1);
  }
  return row;
}

/** The run's error on a non-finite loss, naming the last checkpoint written (if any). */
function nonFinite(
  step: number,
  loss: number,
  gradNorm: number,
  outDir: string | undefined,
  lastSaved: number | undefined,
): NonFiniteError {
  const what = Number.isFinite(loss) ? "gradient norm" : "loss";
  const where = outDir && lastSaved !== undefined
    ? `The last good checkpoint (step ${lastSaved}) is ${outDir}/checkpoint.json. `
    : outDir
    ? `No checkpoint was written by this run (${outDir}). `
    : "";
  return new NonFiniteError(
    `step ${step}: the ${what} is ${Number.isFinite(loss) ? gradNorm : loss}; the state was ` +
      `not updated. ${where}Lower lrInit, turn on clipping (clip > 0), or check the data for ` +
      `empty answers.`,
  );
}

/** Refuse a resume whose schedule or batches differ from the checkpoint's. */
function checkSamePlan(path: string, saved: Record<string, unknown>, now: Record<string, unknown>) {
  for (const [k, flag, why] of FIXED_ON_RESUME) {
    if (saved[k] === undefined || saved[k] === now[k]) continue;
    throw new CheckpointError(
      `${path}: the run was started with ${k} = ${saved[k]}, this resume has ${now[k]} ` +
        `(${flag}). Refused: ${why}, so the resumed run would differ from the one ` +
        `interrupted. Resume with the original value, or start a new run in another folder.`,
      path,
    );
  }
}

/**
 * Tune the plain initial states S0 of `model` on `data` (one {@link StatePart}).
 *
 * @example
 * ```ts ignore
 * const ds = buildDataset(text, tokenizer, { valSplit: 0.1 });
 * const { states, history } = await tuneState(model, ds, { steps: 100 });
 * ```
 */
export async function tuneState(
  model: GpuModel,
  data: Dataset | Example[],
  options: TuneOptions & { initialStates?: Float32Array[] } = {},
): Promise<TuneResult> {
  const { initialStates, ...rest } = options;
  const part = await StatePart.create(model, { initialStates });
  try {
    const res = await tune(model, data, { ...rest, parts: [part] });
    return { ...res, states: await part.states() };
  } finally {
    part.destroy();
  }
}
