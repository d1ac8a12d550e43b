/**
 * State tuning: optimise each layer's initial wkv state S0 of a frozen RWKV-7 on a dataset,
 * on WebGPU (forward, backward to dL/dS0 and Adam all on the GPU; one CPU sync per step for
 * the loss and gradient norm).
 *
 * Batches are a pure function of (seed, step), so a run resumed from a checkpoint reaches the
 * same final state as an uninterrupted one.
 *
 * @module
 */
import { z } from "zod";
import { createStorage, readF32, writeStorage } from "../gpu/buffers.ts";
import { Recorder } from "../gpu/recorder.ts";
import { AdamKernel } from "../kernels/adam.ts";
import type { GpuModel } from "../model/gpu_model.ts";
import { createProgress } from "../plot/progress.ts";
import { LivePlot } from "../plot/live.ts";
import { lineFigure } from "../plot/figure.ts";
import { GpuBackward } from "./gpu_backward.ts";
import { SumBatchKernel } from "../kernels/sum_batch.ts";
import type { Gpu } from "../gpu/device.ts";
import { type Batch, type Dataset, type Example, makeBatch } from "./data.ts";
import { learningRate } from "./schedule.ts";
import { BatchOrder } from "./batches.ts";
import { type Checkpoint, loadCheckpoint, saveCheckpoint } from "./checkpoint.ts";
import { type DbpRows, GpuLifted, loadLifted, saveLifted } from "../model/gpu_lifted.ts";
import type { LiftedLayers } from "../ref/lifted_types.ts";
import { type DbpConfig, type DbpConfigInput, DbpConfigSchema } from "../parts/config.ts";
import { Rng } from "../util/rng.ts";

/** Options of {@link tuneState} (defaults: the established recipe of SPEC §5). */
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
  /** Clip the global gradient norm to this (0 = off). */
  clip: z.number().min(0).default(1),
  l2wrap: z.boolean().default(false),
  seed: z.number().int().default(0),
  /** Validation loss every this many steps (0 = only at the end); needs a validation set. */
  valEvery: z.number().int().min(0).default(0),
  /** Folder for checkpoints (every `saveEvery` steps and at the end). */
  outDir: z.string().optional(),
  saveEvery: z.number().int().min(0).default(0),
  /** Continue from `outDir`'s checkpoint. */
  resume: z.boolean().default(false),
  /** Progress bar / live output; false for silence. */
  progress: z.boolean().default(true),
  /** Live loss curve in Jupyter. */
  livePlot: z.boolean().default(true),
  /** Start from these per-layer states instead of zeros. */
  initialStates: z.array(z.instanceof(Float32Array)).optional(),
});
/**
 * The kernel-upscaled state and DBP in {@link tuneState} (SPEC §6): Ŝ0 of every lifted layer is
 * trained with S0 by the same Adam (shared gradient clipping); R moves only by DBP.
 */
export interface TuneLiftedOptions {
  /**
   * the lifted layers (from `initLiftedLayers`), or a set already on the GPU (trained in place
   * and left to the caller to destroy)
   */
  layers: LiftedLayers | GpuLifted;
  /**
   * DBP after each step ({@link DbpConfigSchema} options; `{}` = the defaults). Omitted or
   * false: R fixed and no decorrelation loss recorded. `{ enabled: false }`: R fixed, losses
   * recorded. Sampling (`sample` > 0) draws one sample of the step's kk and r vectors for every
   * layer and head (the CPU reference draws per head).
   */
  dbp?: DbpConfigInput | false;
  /** Ŝ0's learning rate relative to S0's. Default 1. */
  lrScale?: number;
}

/** Tuning options (input form). */
export type TuneOptions = z.input<typeof TuneOptionsSchema> & {
  /** Stop early (the state so far is returned and checkpointed). */
  signal?: AbortSignal;
  /** Called after every step with its history row. */
  onStep?: (row: HistoryRow) => void;
  /** Train a kernel-upscaled state too (SPEC §6); see {@link TuneLiftedOptions}. */
  lifted?: TuneLiftedOptions;
};

/** One row of the training history. */
export interface HistoryRow {
  step: number;
  loss: number;
  valLoss?: number;
  lr: number;
  gradNorm: number;
  tokensPerSecond: number;
  elapsedMs: number;
  /** with DBP: ‖offdiag(C)‖² / M² of the step's features (before R moved), mean over layers and heads */
  decorrelationLoss?: number;
  /** with DBP: the same over correlation coefficients (scale-free), mean over layers and heads */
  correlationLoss?: number;
}

/** Result of {@link tuneState}. */
export interface TuneResult {
  /** Per-layer tuned wkv states, each (H, N, N) value×key. */
  states: Float32Array[];
  history: HistoryRow[];
  /** Step count reached (equals the planned steps unless aborted). */
  steps: number;
  stopReason: "done" | "aborted";
  /** with `options.lifted`: the tuned lifted layers (Ŝ0 and R read back) */
  lifted?: LiftedLayers;
}

/** Training stopped on a non-finite loss or gradient. */
export class NonFiniteError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NonFiniteError";
  }
}

/**
 * Tune the initial states of `model` on `data`.
 *
 * @example
 * ```ts ignore
 * const ds = buildDataset(text, tokenizer, { valSplit: 0.1 });
 * const { states, history } = await tuneState(model, ds, { steps: 100 });
 * // with the kernel-upscaled state and DBP (SPEC §6):
 * const layers = initLiftedLayers(weights, calib, LiftedConfigSchema.parse({ enabled: true }));
 * const res = await tuneState(model, ds, { steps: 100, lifted: { layers, dbp: {} } });
 * model.setLifted(await GpuLifted.create(gpu, model.config, res.lifted!));
 * ```
 */
export async function tuneState(
  model: GpuModel,
  data: Dataset | Example[],
  options: TuneOptions = {},
): Promise<TuneResult> {
  const o = TuneOptionsSchema.parse(stripCallbacks(options));
  const ds: Dataset = Array.isArray(data)
    ? { train: data, val: [], bad: [], dropped: 0, source: "examples" }
    : data;
  if (ds.train.length === 0) throw new RangeError("tuneState: the training set is empty");
  const cfg = model.config, gpu = model.gpu;
  const n = cfg.nLayer * cfg.nHead * cfg.headSize * cfg.headSize;
  const perStep = o.batch * o.gradAccum;
  const totalSteps = o.steps ?? Math.max(1, Math.ceil(o.epochs * ds.train.length / perStep));
  const sched = { lrInit: o.lrInit, lrFinal: o.lrFinal, warmupSteps: o.warmupSteps, totalSteps };
  const order = new BatchOrder(ds.train.length, o.seed);

  const s0 = createStorage(gpu, "tune.S0", n * 4);
  const m = createStorage(gpu, "tune.m", n * 4);
  const v = createStorage(gpu, "tune.v", n * 4);
  const g = createStorage(gpu, "tune.grad", n * 4);
  const norm = createStorage(gpu, "tune.norm", 8);
  const adam = await AdamKernel.create(gpu);
  const partials = adam.createPartials(2);
  const lift = options.lifted ? await setupLifted(model, options.lifted) : undefined;
  const bwd = await GpuBackward.create(model);
  const sum = await SumBatchKernel.create(gpu);
  const statsBuf = createStorage(gpu, "tune.stats", 16 * o.gradAccum);

  let start = 0;
  let history: HistoryRow[] = [];
  let init: Float32Array = new Float32Array(n);
  if (o.initialStates) init = flattenStates(o.initialStates, n, cfg.nLayer);
  if (o.resume) {
    if (!o.outDir) throw new RangeError("tuneState: resume needs outDir (where the checkpoint is)");
    const ck = await loadCheckpoint(o.outDir, n);
    if (ck) {
      start = ck.step;
      history = ck.history;
      init = ck.s0;
      writeStorage(gpu, m, ck.m);
      writeStorage(gpu, v, ck.v);
    }
    if (lift) await lift.resume(o.outDir);
  }
  writeStorage(gpu, s0, init);

  const save = async (step: number) => {
    if (!o.outDir) return;
    const [S, M, Vv] = [
      await readF32(gpu, s0, n),
      await readF32(gpu, m, n),
      await readF32(gpu, v, n),
    ];
    const ck: Checkpoint = { step, s0: S, m: M, v: Vv, history, config: cfg, options: o };
    await saveCheckpoint(o.outDir, ck);
    await lift?.save(o.outDir);
  };

  const progress = createProgress({
    total: totalSteps,
    label: "state tuning",
    unit: "step",
    silent: !o.progress,
  });
  const live = o.livePlot && o.progress ? new LivePlot() : undefined;
  const t0 = performance.now();
  let stopReason: TuneResult["stopReason"] = "done";
  let step = start;
  try {
    for (; step < totalSteps; step++) {
      if (options.signal?.aborted) {
        stopReason = "aborted";
        break;
      }
      const ts = performance.now();
      const rec = new Recorder(gpu, `tune.step${step}`);
      let tokens = 0;
      const examples = Array.from(
        { length: o.gradAccum },
        (_, a) => order.batch(step * o.gradAccum + a, o.batch).map((i) => ds.train[i]),
      );
      const batches = examples.map(makeBatch);
      const rows = lift?.dbpRows(examples, batches, step);
      for (let a = 0; a < o.gradAccum; a++) {
        const batch = batches[a];
        tokens += batch.count;
        const bufs = bwd.record(rec, {
          ...uploadBatch(model, batch, a),
          init: { kind: "shared", wkv: s0 },
          l2wrap: o.l2wrap,
          ...(lift ? { lifted: { set: lift.set, dbp: rows?.[a] } } : {}),
        });
        sum.record(rec, { B: 1, n, src: bufs.dS0Sum, dst: g, accumulate: a > 0 });
        if (lift) lift.set.recordAdd(rec, bufs.dLifted!, lift.g, a > 0);
        rec.copy(bufs.stats, 0, statsBuf, a * 16, 16);
      }
      const grads = [{ buffer: g, n }, ...(lift ? [{ buffer: lift.g, n: lift.set.size }] : [])];
      adam.gradNorm(rec, grads, partials, norm, o.clip * o.gradAccum);
      rec.submit();
      const stats = await readF32(gpu, statsBuf, 4 * o.gradAccum);
      const nrm = await readF32(gpu, norm, 2);
      let loss = 0;
      for (let a = 0; a < o.gradAccum; a++) loss += stats[a * 4] / o.gradAccum;
      const gradNorm = Math.sqrt(nrm[0]) / o.gradAccum;
      if (!Number.isFinite(loss) || !Number.isFinite(gradNorm)) {
        throw new NonFiniteError(
          `step ${step}: the ${Number.isFinite(loss) ? "gradient norm" : "loss"} is ` +
            `${Number.isFinite(loss) ? gradNorm : loss}; the state was not updated. ` +
            (o.outDir ? `The last good checkpoint is in ${o.outDir}. ` : "") +
            `Lower lrInit, turn on clipping (clip > 0), or check the data for empty answers.`,
        );
      }
      const lr = learningRate(sched, step);
      const upd = new Recorder(gpu, "tune.adam");
      const clip = o.clip > 0 ? norm : undefined;
      adam.step(upd, { buffer: s0, n }, { buffer: g, n }, m, v, { lr, step: step + 1, clip });
      lift?.step(upd, adam, lr, step + 1, clip);
      upd.submit();
      const row: HistoryRow = {
        step: step + 1,
        loss,
        lr,
        gradNorm,
        tokensPerSecond: tokens / ((performance.now() - ts) / 1000),
        elapsedMs: performance.now() - t0,
      };
      if (lift?.dbp) Object.assign(row, await lift.set.readDbpLosses());
      delete (row as { perLayer?: unknown }).perLayer;
      const last = step + 1 === totalSteps;
      if (ds.val.length && ((o.valEvery && (step + 1) % o.valEvery === 0) || last)) {
        row.valLoss = await validationLoss(model, bwd, s0, ds.val, o.batch, lift?.set);
      }
      history.push(row);
      options.onStep?.(row);
      progress.update(step + 1, { loss: loss.toFixed(4), lr: lr.toPrecision(3) });
      live?.update(() => lossFigure(history));
      if (o.saveEvery && (step + 1) % o.saveEvery === 0 && !last) await save(step + 1);
    }
  } finally {
    await progress.finish();
    if (live) await live.finish(lossFigure(history));
  }
  await save(step);
  const flat = await readF32(gpu, s0, n);
  const lifted = lift ? await lift.set.read() : undefined;
  lift?.destroy();
  for (const b of [s0, m, v, g, norm, partials, statsBuf]) b.destroy();
  for (const b of batchBuffers.get(model) ?? []) b.destroy();
  batchBuffers.delete(model);
  bwd.destroy();
  const per = n / cfg.nLayer;
  const states = Array.from({ length: cfg.nLayer }, (_, l) => flat.slice(l * per, (l + 1) * per));
  return { states, history, steps: step, stopReason, ...(lifted ? { lifted } : {}) };
}

/** Callbacks are not schema fields. */
function stripCallbacks(o: TuneOptions): Record<string, unknown> {
  const { signal: _s, onStep: _c, lifted: _l, ...rest } = o;
  return rest;
}

function flattenStates(states: Float32Array[], n: number, L: number): Float32Array {
  if (states.length !== L || states.some((s) => s.length !== n / L)) {
    throw new RangeError(
      `initialStates: expected ${L} layers of ${n / L} values, got ${states.length} layers ` +
        `of ${states.map((s) => s.length).join("/")}`,
    );
  }
  const out = new Float32Array(n);
  states.forEach((s, l) => out.set(s, (l * n) / L));
  return out;
}

/** Token, target and mask buffers per model and micro-batch slot (reused across steps). */
const batchBuffers = new WeakMap<GpuModel, GPUBuffer[]>();

/** Upload a batch into reusable buffers (one set per micro-batch slot of a step). */
function uploadBatch(
  model: GpuModel,
  b: Batch,
  slot: number,
): { B: number; T: number; tokens: GPUBuffer; targets: GPUBuffer; mask: GPUBuffer } {
  const gpu: Gpu = model.gpu;
  const list = batchBuffers.get(model) ?? [];
  batchBuffers.set(model, list);
  const rows = b.B * b.T;
  const get = (i: number, label: string) => {
    const k = slot * 3 + i;
    if (!list[k] || list[k].size < rows * 4) {
      list[k]?.destroy();
      list[k] = createStorage(gpu, `tune.${label}${slot}`, Math.max(rows, 256) * 4);
    }
    return list[k];
  };
  const tok = new Uint32Array(rows), tgt = new Uint32Array(rows), msk = new Float32Array(rows);
  for (let r = 0; r < b.B; r++) {
    tok.set(b.tokens[r], r * b.T);
    tgt.set(b.targets[r], r * b.T);
    msk.set(b.mask[r], r * b.T);
  }
  const tokens = get(0, "tokens"), targets = get(1, "targets"), mask = get(2, "mask");
  writeStorage(gpu, tokens, tok);
  writeStorage(gpu, targets, tgt);
  writeStorage(gpu, mask, msk);
  return { B: b.B, T: b.T, tokens, targets, mask };
}

/** Mean masked loss over `val` from the current S0 (token-weighted). */
async function validationLoss(
  model: GpuModel,
  bwd: GpuBackward,
  s0: GPUBuffer,
  val: Example[],
  B: number,
  lifted?: GpuLifted,
): Promise<number> {
  let sum = 0, count = 0;
  for (let i = 0; i < val.length; i += B) {
    const batch = makeBatch(val.slice(i, i + B));
    const rec = new Recorder(model.gpu, "tune.val");
    const bufs = bwd.record(rec, {
      ...uploadBatch(model, batch, 0),
      init: { kind: "shared", wkv: s0 },
      ...(lifted ? { lifted: { set: lifted } } : {}),
    });
    rec.submit();
    const st = await readF32(model.gpu, bufs.stats, 2);
    sum += st[0] * st[1];
    count += st[1];
  }
  return sum / Math.max(1, count);
}

/** The loss curve of a history (training and validation loss against step). */
export function lossFigure(history: HistoryRow[], title = "state tuning") {
  const val = history.filter((h) => h.valLoss !== undefined);
  const curves: Record<string, { x: number[]; y: number[] }> = {
    train: { x: history.map((h) => h.step), y: history.map((h) => h.loss) },
  };
  if (val.length) curves.validation = { x: val.map((h) => h.step), y: val.map((h) => h.valLoss!) };
  return lineFigure(curves, { title, xLabel: "step", yLabel: "loss" });
}

/** Name of the lifted part of a checkpoint folder (SPEC §6; Adam moments are not kept). */
export const LIFTED_FILE = "lifted.safetensors";

/** The lifted state's share of a tuning run: the set, its Adam buffers and DBP. */
interface LiftedRun {
  set: GpuLifted;
  g: GPUBuffer;
  dbp?: DbpConfig;
  /** per micro-batch, the vectors DBP measures (undefined without DBP) */
  dbpRows(examples: Example[][], batches: Batch[], step: number): DbpRows[] | undefined;
  step(rec: Recorder, adam: AdamKernel, lr: number, step: number, clip?: GPUBuffer): void;
  save(dir: string): Promise<void>;
  resume(dir: string): Promise<void>;
  destroy(): void;
}

async function setupLifted(model: GpuModel, opt: TuneLiftedOptions): Promise<LiftedRun> {
  const gpu = model.gpu;
  const own = !(opt.layers instanceof GpuLifted);
  const set = opt.layers instanceof GpuLifted
    ? opt.layers
    : await GpuLifted.create(gpu, model.config, opt.layers);
  const n = set.size;
  const [g, m, v] = ["grad", "m", "v"].map((k) => createStorage(gpu, `tune.lifted.${k}`, n * 4));
  const dbp = opt.dbp === undefined || opt.dbp === false
    ? undefined
    : DbpConfigSchema.parse(opt.dbp);
  const idx: GPUBuffer[] = [];
  let count = 0;
  const lrScale = opt.lrScale ?? 1;
  const stride = set.layers.every((ly) => !ly || ly.writes) ? 3 : 2;
  return {
    set,
    g,
    dbp,
    dbpRows(examples, batches, step) {
      if (!dbp) return undefined;
      // every real position's kk (kind 0), r (kind 1) and, when every branch writes, k (kind 2)
      let all: [number, number][] = [];
      batches.forEach((b, a) => {
        examples[a].forEach((ex, bi) => {
          for (let t = 0; t < ex.ids.length - 1; t++) {
            for (let k = 0; k < stride; k++) all.push([a, (bi * b.T + t) * stride + k]);
          }
        });
      });
      if (dbp.sample > 0 && dbp.sample < all.length) {
        all = new Rng(dbp.seed * 1_000_003 + step).shuffle(all).slice(0, dbp.sample);
      }
      count = all.length;
      return batches.map((_, a) => {
        const list = Uint32Array.from(all.filter((x) => x[0] === a).map((x) => x[1]));
        if (!idx[a] || idx[a].size < list.byteLength) {
          idx[a]?.destroy();
          idx[a] = createStorage(gpu, `tune.dbpIdx${a}`, Math.max(256, list.byteLength));
        }
        writeStorage(gpu, idx[a], list);
        return { idx: idx[a], n: list.length, stride, accumulate: a > 0 };
      });
    },
    step(rec, adam, lr, step, clip) {
      adam.step(rec, { buffer: set.s0, n }, { buffer: g, n }, m, v, {
        lr: lr * lrScale,
        step,
        clip,
      });
      if (dbp && count > 0) {
        set.recordDbp(rec, { count, lr: dbp.lr, kappa: dbp.kappa, enabled: dbp.enabled });
      }
    },
    async save(dir) {
      await saveLifted(`${dir}/${LIFTED_FILE}`, await set.read(), model.config.nHead);
    },
    async resume(dir) {
      try {
        set.write(await loadLifted(`${dir}/${LIFTED_FILE}`));
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
    },
    destroy() {
      for (const b of [g, m, v, ...idx]) b.destroy();
      if (own) set.destroy();
    },
  };
}
