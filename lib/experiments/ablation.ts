/**
 * The ablation of the paper's extensions (SPEC §6): one task, four variants —
 * `untuned` (zero state), `state` (plain state tuning), `lifted` (+ kernel-upscaled state, R
 * fixed) and `dbp` (+ kernel-upscaled state with DBP moving R) — each scored on held-out data.
 * Shared by `scripts/reproduce.ts` and notebooks 03 and 04.
 *
 * Tasks: a synthetic skill without its instruction line (the demo's task: held-out exact-match
 * accuracy of greedy answers, plus held-out loss), or any {@link Dataset} (held-out loss and
 * next-token accuracy on the answer tokens of its validation split).
 *
 * Seeds: the run seed sets the batch order, the calibration sequences, the support-vector
 * selection and DBP's sampling; the task's items (training, validation, test) stay fixed so that
 * seeds measure the variance of the method, not of the data.
 *
 * @module
 */
import { z } from "zod";
import type { GpuModel } from "../model/gpu_model.ts";
import { type RwkvState, type RwkvWeights, zeroState } from "../model/types.ts";
import { buildDataset, type Dataset, type Example, makeBatch } from "../train/data.ts";
import { type Skill, skillRows, SKILLS } from "../train/synthetic.ts";
import { skillAccuracyGpu } from "../train/skills_eval.ts";
import { type HistoryRow, tune } from "../train/tune.ts";
import { StatePart } from "../train/state_part.ts";
import { LiftedPart } from "../parts/lifted_part.ts";
import { ByteTokenizer } from "../tokenizer/bytes.ts";
import { Rng } from "../util/rng.ts";
import { Figure, lineFigure } from "../plot/figure.ts";
import { initLiftedLayers } from "../parts/support.ts";
import { LiftedConfigSchema } from "../parts/config.ts";
import type { LiftedLayers } from "../ref/lifted_types.ts";
import { GpuLifted } from "../model/gpu_lifted.ts";
import { meanStderr, sampleSd } from "../util/stats.ts";

/** The ablation's variants, in table order. */
export const VARIANTS = ["untuned", "state", "lifted", "dbp"] as const;
/** One variant. */
export type Variant = typeof VARIANTS[number];
/** Row labels of the variants. */
export const VARIANT_LABELS: Record<Variant, string> = {
  untuned: "untuned",
  state: "state tuning",
  lifted: "+ kernel upscaling",
  dbp: "+ kernel upscaling + DBP",
};

/** Options of one ablation run (defaults: a few-minute grid on the default model). */
export const AblationOptionsSchema = z.object({
  steps: z.number().int().positive().default(30),
  batch: z.number().int().positive().default(8),
  lrInit: z.number().positive().default(1),
  lrFinal: z.number().positive().default(0.01),
  /** batch order, calibration sequences, support vectors, DBP sampling */
  seed: z.number().int().min(0).default(0),
  /** M = featureRatio · N */
  featureRatio: z.number().positive().default(1),
  /** layers with a lifted branch */
  liftedLayers: z.union([z.literal("all"), z.array(z.number().int().min(0))]).default("all"),
  /** Ŝ0's learning rate relative to S0's */
  lrScale: z.number().positive().default(1),
  /** the read (SPEC §6 v2): "normalised" ‖r‖ R φ(r/‖r‖) or v1's "raw" R φ(r); default from normalisedRead */
  read: z.enum(["normalised", "raw"]).optional(),
  /** older spelling of `read`: true = "normalised", false = "raw"; neither given = "normalised" */
  normalisedRead: z.boolean().optional(),
  /** writes mode (SPEC §6 v2) */
  writes: z.boolean().default(false),
  support: z.enum(["kmeans", "random"]).default("kmeans"),
  /**
   * φ: Gaussian (SPEC §6) or identity (needs featureRatio 1; with `headMeans: false` the branch
   * is a second copy of S0, i.e. plain state tuning re-parametrised with twice the trainables)
   */
  featureMap: z.enum(["gaussian", "identity"]).default("gaussian"),
  /** head-mean d̄, ā in the lifted edit (false: per-channel, needs M = N) */
  headMeans: z.boolean().default(true),
  /** calibration sequences; default: enough for 4·M key vectors per head (at least 8) */
  calibrationSequences: z.number().int().positive().optional(),
  /** DBP's η_R and κ (variant `dbp`) */
  dbpLr: z.number().min(0).default(1e-3),
  dbpKappa: z.number().min(0).max(1).default(0.5),
  /** DBP's vectors per step (0 = all) */
  dbpSample: z.number().int().min(0).default(0),
  /** record the decorrelation loss of the `lifted` variant too (R fixed) */
  recordDecorrelation: z.boolean().default(true),
  /** validation loss every this many steps (0 = at the end only) */
  valEvery: z.number().int().min(0).default(0),
  /** tuneState's progress bar (and live loss curve in Jupyter) */
  progress: z.boolean().default(false),
  livePlot: z.boolean().default(false),
});
/** Ablation options as a caller writes them. */
export type AblationOptionsInput = z.input<typeof AblationOptionsSchema>;
/** Ablation options with defaults filled in. */
export type AblationOptions = z.output<typeof AblationOptionsSchema>;

/** A task: a dataset to tune on and what "held out" means for it. */
export interface AblationTask {
  /** e.g. `reverse (no instruction)` or the data file */
  name: string;
  /** training examples and the validation split (held-out loss) */
  dataset: Dataset;
  /** for skill tasks: greedy exact-match accuracy on `testItems` items drawn with `testSeed` */
  skill?: { skill: Skill; testItems: number; testSeed: number; withInstruction: boolean };
}

/** Options of {@link skillTask}. */
export const SkillTaskSchema = z.object({
  skill: z.enum(SKILLS).default("reverse"),
  trainItems: z.number().int().positive().default(200),
  valItems: z.number().int().positive().default(16),
  testItems: z.number().int().positive().default(50),
  /** seed of the training/validation items (fixed across run seeds) */
  dataSeed: z.number().int().min(0).default(0),
  /** seed of the test items; default far from any data seed */
  testSeed: z.number().int().min(0).default(1_000_000),
});

/**
 * A synthetic skill WITHOUT its instruction line (byte-level models): the tuned state has to
 * stand in for the prompt, as in `deno task demo`.
 *
 * @example
 * ```ts
 * import { skillTask } from "./ablation.ts";
 * const t = skillTask({ skill: "copy", trainItems: 20, valItems: 4 });
 * console.assert(t.dataset.train.length === 20 && t.dataset.val.length === 4);
 * ```
 */
export function skillTask(opts: z.input<typeof SkillTaskSchema> = {}): AblationTask {
  const o = SkillTaskSchema.parse(opts);
  const rows = skillRows(o.skill, o.trainItems + o.valItems, o.dataSeed, false);
  const text = rows.map((r) => JSON.stringify(r)).join("\n");
  const dataset = buildDataset(text, new ByteTokenizer(), {
    valSplit: o.valItems,
    seed: o.dataSeed,
  }, `skill:${o.skill}`);
  return {
    name: `${o.skill} (no instruction)`,
    dataset,
    skill: { skill: o.skill, testItems: o.testItems, testSeed: o.testSeed, withInstruction: false },
  };
}

/** A user dataset (its validation split is the held-out set). */
export function datasetTask(dataset: Dataset, name = dataset.source): AblationTask {
  if (dataset.val.length === 0) {
    throw new RangeError(`${name}: the ablation needs a held-out split (valSplit > 0)`);
  }
  return { name, dataset };
}

/** One run of the grid. */
export interface AblationRun {
  variant: Variant;
  label: string;
  seed: number;
  task: string;
  /** features per head of the lifted branch (0 without one) */
  M: number;
  liftedLayers: number[];
  /** numbers the task gradient trains: S0 (L·H·N²) + Ŝ0 (H·N·M per lifted layer); R excluded */
  trainable: number;
  /** skill tasks: greedy exact-match accuracy on the test items */
  accuracy?: number;
  /** next-token accuracy on the answer tokens of the validation split */
  tokenAccuracy: number;
  /** mean cross-entropy on the answer tokens of the validation split */
  heldOutLoss: number;
  /** training loss of the last step (undefined for `untuned`) */
  finalLoss?: number;
  /** decorrelation / correlation loss after the last step (lifted variants) */
  decorrelationLoss?: number;
  correlationLoss?: number;
  history: HistoryRow[];
  /** wall time of tuning + evaluation */
  seconds: number;
  /** a few test answers (skill tasks) */
  samples?: { prompt: string; expected: string; got: string }[];
}

/** Trainable numbers of a variant (see {@link AblationRun.trainable}). */
export function trainableCount(
  cfg: { nLayer: number; nHead: number; headSize: number },
  variant: Variant,
  M: number,
  liftedLayers: number[],
): number {
  const { nLayer: L, nHead: H, headSize: N } = cfg;
  if (variant === "untuned") return 0;
  const base = L * H * N * N;
  return variant === "state" ? base : base + liftedLayers.length * H * N * M;
}

/**
 * Run one variant on `task`: tune (unless `untuned`), then score on the held-out data.
 *
 * @param weights the model's weights (the reference forward picks the calibration keys)
 * @example
 * ```ts ignore
 * const run = await runVariant(model, weights, skillTask(), "dbp", { steps: 30, seed: 1 });
 * console.log(run.accuracy, run.heldOutLoss, run.trainable);
 * ```
 */
export async function runVariant(
  model: GpuModel,
  weights: RwkvWeights,
  task: AblationTask,
  variant: Variant,
  options: AblationOptionsInput = {},
): Promise<AblationRun> {
  if (!VARIANTS.includes(variant)) {
    throw new RangeError(`variant must be one of ${VARIANTS.join(", ")}, got "${variant}"`);
  }
  const o = AblationOptionsSchema.parse(options);
  const cfg = model.config;
  const t0 = performance.now();
  const lifted = variant === "lifted" || variant === "dbp";
  const layerIdx = o.liftedLayers === "all"
    ? Array.from({ length: cfg.nLayer }, (_, l) => l)
    : o.liftedLayers;
  const M = lifted ? Math.round(o.featureRatio * cfg.headSize) : 0;
  let history: HistoryRow[] = [];
  let state: RwkvState | undefined;
  let liftedOut: LiftedLayers | undefined;
  if (variant !== "untuned") {
    const layers = lifted ? initLifted(weights, task.dataset.train, layerIdx, o) : undefined;
    const dbp = variant === "dbp"
      ? { enabled: true, lr: o.dbpLr, kappa: o.dbpKappa, sample: o.dbpSample, seed: o.seed }
      : o.recordDecorrelation
      ? { enabled: false, sample: o.dbpSample, seed: o.seed }
      : false;
    const s0 = await StatePart.create(model);
    const lp = layers
      ? await LiftedPart.create(model, { layers, dbp, lrScale: o.lrScale })
      : undefined;
    try {
      const res = await tune(model, task.dataset, {
        parts: lp ? [s0, lp] : [s0],
        steps: o.steps,
        batch: o.batch,
        lrInit: o.lrInit,
        lrFinal: o.lrFinal,
        seed: o.seed,
        valEvery: o.valEvery,
        progress: o.progress,
        livePlot: o.livePlot,
      });
      history = res.history;
      state = zeroState(cfg);
      (await s0.states()).forEach((s, l) => state![l].wkv.set(s));
      liftedOut = await lp?.layers();
    } finally {
      s0.destroy();
      lp?.destroy();
    }
  }
  const set = liftedOut ? await GpuLifted.create(model.gpu, cfg, liftedOut) : undefined;
  model.setLifted(set);
  try {
    const held = await heldOutScore(model, task.dataset.val, state);
    const sk = task.skill
      ? await skillAccuracyGpu(
        model,
        task.skill.skill,
        task.skill.testItems,
        task.skill.testSeed,
        task.skill.withInstruction,
        state,
      )
      : undefined;
    const last = history[history.length - 1];
    return {
      variant,
      label: VARIANT_LABELS[variant],
      seed: o.seed,
      task: task.name,
      M,
      liftedLayers: lifted ? layerIdx : [],
      trainable: trainableCount(cfg, variant, M, layerIdx),
      ...(sk ? { accuracy: sk.accuracy, samples: sk.samples } : {}),
      tokenAccuracy: held.tokenAccuracy,
      heldOutLoss: held.loss,
      finalLoss: last?.loss,
      decorrelationLoss: last?.decorrelationLoss,
      correlationLoss: last?.correlationLoss,
      history,
      seconds: (performance.now() - t0) / 1000,
    };
  } finally {
    model.setLifted(undefined);
    set?.destroy();
  }
}

/** Lifted layers from calibration sequences drawn (by the run seed) from the training set. */
function initLifted(
  weights: RwkvWeights,
  train: Example[],
  layers: number[],
  o: AblationOptions,
): LiftedLayers {
  const order = new Rng(o.seed * 7919 + 17).shuffle(train.map((_, i) => i));
  const M = Math.round(o.featureRatio * weights.config.headSize);
  const calib: number[][] = [];
  let tokens = 0;
  for (const i of order) {
    const enough = o.calibrationSequences !== undefined
      ? calib.length >= o.calibrationSequences
      : calib.length >= 8 && tokens >= 4 * M;
    if (enough) break;
    calib.push(train[i].ids);
    tokens += train[i].ids.length;
  }
  return initLiftedLayers(
    weights,
    calib,
    LiftedConfigSchema.parse({
      enabled: true,
      layers,
      featureRatio: o.featureRatio,
      featureMap: o.featureMap,
      headMeans: o.headMeans,
      support: o.support,
      seed: o.seed,
      read: o.read ?? (o.normalisedRead === false ? "raw" : "normalised"),
      writes: o.writes,
      calibrationSequences: calib.length,
    }),
  );
}

/**
 * Mean cross-entropy and next-token accuracy on the answer tokens of `examples`, from `state`
 * (zero when omitted) and the model's lifted set, if any.
 */
export async function heldOutScore(
  model: GpuModel,
  examples: Example[],
  state?: RwkvState,
): Promise<{ loss: number; tokenAccuracy: number; tokens: number }> {
  const V = model.config.vocabSize;
  let sum = 0, right = 0, count = 0;
  for (let i = 0; i < examples.length;) {
    const T = examples[i].ids.length - 1;
    const B = Math.max(1, Math.min(examples.length - i, Math.floor(4_000_000 / (T * V))));
    const batch = makeBatch(examples.slice(i, i + B));
    i += B;
    const gs = state
      ? model.uploadState(Array.from({ length: batch.B }, () => state))
      : model.createState(batch.B);
    try {
      const logits = await model.forward(batch.tokens, gs, { logits: "all" });
      for (let b = 0; b < batch.B; b++) {
        for (let t = 0; t < batch.T; t++) {
          if (!batch.mask[b][t]) continue;
          const off = (b * batch.T + t) * V;
          let mx = -Infinity, arg = 0;
          for (let j = 0; j < V; j++) if (logits[off + j] > mx) [mx, arg] = [logits[off + j], j];
          let z = 0;
          for (let j = 0; j < V; j++) z += Math.exp(logits[off + j] - mx);
          const tgt = batch.targets[b][t];
          sum += Math.log(z) + mx - logits[off + tgt];
          if (arg === tgt) right++;
          count++;
        }
      }
    } finally {
      gs.destroy();
    }
  }
  return {
    loss: sum / Math.max(1, count),
    tokenAccuracy: right / Math.max(1, count),
    tokens: count,
  };
}

/** One grid cell: a variant with its own options (e.g. a value of M). */
export interface GridCell {
  /** column / legend name, e.g. `M = 2N` */
  name: string;
  variant: Variant;
  options?: AblationOptionsInput;
}

/**
 * Run `cells` × `seeds` (seed-major order so every variant has a result early), calling
 * `onRun` after each.
 */
export async function runGrid(
  model: GpuModel,
  weights: RwkvWeights,
  task: AblationTask,
  cells: GridCell[],
  seeds: number[],
  base: AblationOptionsInput = {},
  onRun?: (run: AblationRun & { name: string }, done: number, total: number) => void,
): Promise<(AblationRun & { name: string })[]> {
  const out: (AblationRun & { name: string })[] = [];
  const total = cells.length * seeds.length;
  for (const seed of seeds) {
    for (const c of cells) {
      const run = await runVariant(model, weights, task, c.variant, {
        ...base,
        ...c.options,
        seed,
      });
      out.push({ ...run, name: c.name });
      onRun?.(out[out.length - 1], out.length, total);
    }
  }
  return out;
}

/**
 * Mean and (sample) standard deviation of the finite values; std 0 for one value, NaN for none
 * (lib/util/stats.ts, the one statistics module).
 */
export function meanStd(xs: number[]): { mean: number; std: number; n: number } {
  const v = xs.filter((x) => Number.isFinite(x));
  if (v.length === 0) return { mean: NaN, std: NaN, n: 0 };
  const { mean } = meanStderr(v);
  return { mean, std: v.length > 1 ? sampleSd(v) : 0, n: v.length };
}

/** Per-name summary over seeds. */
export interface GridSummary {
  name: string;
  variant: Variant;
  M: number;
  trainable: number;
  seeds: number;
  accuracy: { mean: number; std: number };
  tokenAccuracy: { mean: number; std: number };
  heldOutLoss: { mean: number; std: number };
  finalLoss: { mean: number; std: number };
  seconds: { mean: number; std: number };
}

/** Group runs by name (first-seen order) and average over seeds. */
export function summariseRuns(runs: (AblationRun & { name?: string })[]): GridSummary[] {
  const groups = new Map<string, (AblationRun & { name?: string })[]>();
  for (const r of runs) {
    const k = r.name ?? r.label;
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  return [...groups].map(([name, rs]) => ({
    name,
    variant: rs[0].variant,
    M: rs[0].M,
    trainable: rs[0].trainable,
    seeds: rs.length,
    accuracy: meanStd(rs.map((r) => r.accuracy ?? NaN)),
    tokenAccuracy: meanStd(rs.map((r) => r.tokenAccuracy)),
    heldOutLoss: meanStd(rs.map((r) => r.heldOutLoss)),
    finalLoss: meanStd(rs.map((r) => r.finalLoss ?? NaN)),
    seconds: meanStd(rs.map((r) => r.seconds)),
  }));
}

function pm(x: { mean: number; std: number }, digits: number, scale = 1): string {
  if (!Number.isFinite(x.mean)) return "–";
  return `${(x.mean * scale).toFixed(digits)} ± ${(x.std * scale).toFixed(digits)}`;
}

/** The summary as a markdown table (mean ± std over seeds). */
export function markdownTable(summary: GridSummary[]): string {
  const acc = summary.some((s) => Number.isFinite(s.accuracy.mean));
  const head = [
    "variant",
    "M",
    "trainable",
    "seeds",
    ...(acc ? ["held-out accuracy (%)"] : []),
    "held-out token acc. (%)",
    "held-out loss",
    "final train loss",
    "s / run",
  ];
  const rows = summary.map((s) => [
    s.name,
    s.M ? String(s.M) : "–",
    String(s.trainable),
    String(s.seeds),
    ...(acc ? [pm(s.accuracy, 1, 100)] : []),
    pm(s.tokenAccuracy, 1, 100),
    pm(s.heldOutLoss, 3),
    pm(s.finalLoss, 3),
    s.seconds.mean.toFixed(1),
  ]);
  const line = (c: string[]) => `| ${c.join(" | ")} |`;
  return [line(head), line(head.map(() => "---")), ...rows.map(line)].join("\n") + "\n";
}

/** Columns of {@link runsToCsv}. */
const CSV_COLS = [
  "name",
  "variant",
  "seed",
  "task",
  "M",
  "liftedLayers",
  "trainable",
  "accuracy",
  "tokenAccuracy",
  "heldOutLoss",
  "finalLoss",
  "decorrelationLoss",
  "correlationLoss",
  "seconds",
] as const;

/** One CSV row per run (no history). */
export function runsToCsv(runs: (AblationRun & { name?: string })[]): string {
  const cell = (v: unknown) => {
    const s = v === undefined ? "" : Array.isArray(v) ? v.join(" ") : String(v);
    return /[",\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
  };
  const rows = runs.map((r) =>
    CSV_COLS.map((c) => cell(c === "name" ? (r.name ?? r.label) : r[c as keyof AblationRun]))
      .join(",")
  );
  return [CSV_COLS.join(","), ...rows].join("\n") + "\n";
}

/**
 * Mean ± std (over seeds) of a history field against step, one curve per run name.
 *
 * @param field `loss`, `decorrelationLoss`, `correlationLoss` or `valLoss`
 */
export function curveFigure(
  runs: (AblationRun & { name?: string })[],
  field: "loss" | "decorrelationLoss" | "correlationLoss" | "valLoss",
  opts: { title?: string; yLabel?: string; logY?: boolean } = {},
): Figure {
  const groups = new Map<string, AblationRun[]>();
  for (const r of runs) {
    if (!r.history.some((h) => Number.isFinite(h[field] as number))) continue;
    const k = r.name ?? r.label;
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  const curves: Record<string, { x: number[]; y: number[]; band: number[] }> = {};
  for (const [name, rs] of groups) {
    const steps = rs[0].history.filter((h) => Number.isFinite(h[field] as number))
      .map((h) => h.step);
    const stats = steps.map((s) =>
      meanStd(rs.map((r) => (r.history.find((h) => h.step === s)?.[field] as number) ?? NaN))
    );
    curves[name] = { x: steps, y: stats.map((m) => m.mean), band: stats.map((m) => m.std) };
  }
  return lineFigure(curves, {
    title: opts.title ?? field,
    xLabel: "step",
    yLabel: opts.yLabel ?? field,
    logY: opts.logY,
  });
}

/**
 * Bars of a summary field's mean over seeds, one per run name, with the per-seed spread drawn
 * as a second bar series (the standard deviation).
 */
export function summaryBarFigure(
  summary: GridSummary[],
  field: "accuracy" | "tokenAccuracy" | "heldOutLoss" | "finalLoss",
  opts: { title?: string; yLabel?: string } = {},
): Figure {
  const x = summary.map((s) => s.name);
  const multi = summary.some((s) => s.seeds > 1);
  return new Figure({
    title: opts.title ?? field,
    yLabel: opts.yLabel ?? field,
    series: [
      { type: "bar", name: "mean over seeds", x, y: summary.map((s) => s[field].mean) },
      ...(multi
        ? [{ type: "bar" as const, name: "std over seeds", x, y: summary.map((s) => s[field].std) }]
        : []),
    ],
  });
}
