/**
 * A CPU engine for state tuning of small models (the embedded default model: L2, C64): the
 * same maths as `tuneState` on the GPU, computed by the float64 reference (`refBatchLossAndGrad`:
 * forward + backward to S0). On this project's 2-core machine it runs a facts step (B = 32,
 * 12–20 tokens) as fast as llvmpipe does, and — being single-threaded — two cells run side by
 * side in two processes at full speed each, where two llvmpipe processes share the cores
 * (docs/EXPERIMENTS.md has the measurements).
 *
 * Identical to the GPU loop: batches from {@link BatchOrder} and {@link makeBatch}, the learning
 * rate from {@link learningRate}, the loss of a micro-batch = masked mean cross-entropy, the
 * step's gradient = Σ over micro-batches, global-norm clipping with threshold clip · gradAccum
 * and scale min(1, max / (‖g‖ + 1e-6)), and Adam as `shaders/adam.wgsl` (β = 0.9, 0.99,
 * eps 1e-8, p −= (lr / bc1) · m / (√v / √bc2 + eps)); only the precision differs (float64 here,
 * parameters handed back as f32).
 *
 * Extensions plug in as {@link CpuPart}s (the CPU twin of `lib/train/parts.ts`): a part owns
 * flat float64 tensors and maps the reference's gradients onto them (`dState` for S0,
 * `dLifted` for Ŝ0, `dWeights` for LoRA factors).
 *
 * @module
 */
import type { z } from "zod";
import type { RwkvWeights } from "../model/types.ts";
import { zeroState } from "../model/types.ts";
import {
  refBatchLossAndGrad,
  type RefLossAndGrad,
  type RefLossOptions,
  type RefSequence,
} from "../ref/backward.ts";
import type { RefLayerState } from "../ref/model.ts";
import { BatchOrder } from "../train/batches.ts";
import { type Batch, type Dataset, type Example, makeBatch } from "../train/data.ts";
import { learningRate } from "../train/schedule.ts";
import { type HistoryRow, TuneOptionsSchema } from "../train/tune.ts";

/** One tensor a {@link CpuPart} trains (updated in place by Adam). */
export interface CpuPartTensor {
  name: string;
  param: Float64Array;
  /** learning-rate factor on top of the part's; default 1 */
  lrScale?: number;
}

/** What a part contributes to one reference loss-and-gradient call. */
export interface CpuPartArgs {
  /** the initial state of every sequence (at most one part: the plain state) */
  initialState?: RefLayerState[];
  /** reference options (lifted layers, weight gradients); merged left to right */
  refOptions?: RefLossOptions;
  /** the weights to run (LoRA: base + B·A merged); at most one part */
  weights?: RwkvWeights;
}

/** A trainable part of a CPU run (see the module doc). */
export interface CpuPart {
  readonly kind: string;
  readonly tensors: CpuPartTensor[];
  readonly lrScale: number;
  /** this part's share of the step's reference call */
  args(step: number): CpuPartArgs;
  /** add (accumulate) or write this part's gradient per tensor, from one micro-batch's result */
  grads(res: RefLossAndGrad, out: Float64Array[], accumulate: boolean): void;
  /** after Adam (e.g. DBP moves R on the step's examples) */
  afterUpdate?(step: number, examples: Example[][]): void;
  /** extra fields of the step's history row (e.g. DBP's decorrelation loss) */
  historyFields?(): Record<string, number>;
}

/** The plain initial state S0 of every layer, (L, H, N, N) flat. */
export function cpuStatePart(weights: RwkvWeights, init?: Float32Array[]): CpuPart {
  const { nLayer: L, nHead: H, headSize: N } = weights.config;
  const per = H * N * N;
  const s0 = new Float64Array(L * per);
  init?.forEach((s, l) => s0.set(s, l * per));
  const base = zeroState(weights.config);
  return {
    kind: "state",
    tensors: [{ name: "s0", param: s0 }],
    lrScale: 1,
    args: () => ({
      initialState: base.map((b, l) => ({
        att: b.att,
        ffn: b.ffn,
        wkv: s0.subarray(l * per, (l + 1) * per),
      })),
    }),
    grads(res, out, accumulate) {
      const g = out[0];
      res.dState.forEach((d, l) => {
        for (let i = 0; i < per; i++) {
          g[l * per + i] = (accumulate ? g[l * per + i] : 0) + d.wkv[i];
        }
      });
    },
  };
}

/** Options of {@link cpuTune}: the subset of `TuneOptionsSchema` that sets the maths. */
export const CpuTuneOptionsSchema = TuneOptionsSchema.pick({
  lrInit: true,
  lrFinal: true,
  warmupSteps: true,
  steps: true,
  epochs: true,
  batch: true,
  gradAccum: true,
  clip: true,
  l2wrap: true,
  seed: true,
});
/** Options of {@link cpuTune} as written. */
export type CpuTuneOptions = z.input<typeof CpuTuneOptionsSchema> & {
  onStep?: (row: HistoryRow) => void;
  signal?: AbortSignal;
};

/** Result of {@link cpuTune}. */
export interface CpuTuneResult {
  /** per part, per tensor: the trained values as f32 */
  tensors: Record<string, Float32Array>[];
  history: HistoryRow[];
  steps: number;
  stopReason: "done" | "aborted";
}

/** Adam (β1, β2, eps of `shaders/adam.wgsl`) on one tensor; `scale` is the clip factor. */
function adamStep(
  p: Float64Array,
  g: Float64Array,
  m: Float64Array,
  v: Float64Array,
  lr: number,
  t: number,
  scale: number,
): void {
  const b1 = 0.9, b2 = 0.99, eps = 1e-8;
  const bc1 = 1 - b1 ** t, sbc2 = Math.sqrt(1 - b2 ** t);
  for (let i = 0; i < p.length; i++) {
    const gi = g[i] * scale;
    m[i] = b1 * m[i] + (1 - b1) * gi;
    v[i] = b2 * v[i] + (1 - b2) * gi * gi;
    p[i] -= (lr / bc1) * m[i] / (Math.sqrt(v[i]) / sbc2 + eps);
  }
}

/** A padded batch as reference sequences (each cut to its real length). */
export function batchSequences(examples: Example[], b: Batch = makeBatch(examples)): RefSequence[] {
  return examples.map((e, i) => {
    const n = e.ids.length - 1;
    return {
      tokens: b.tokens[i].slice(0, n),
      targets: b.targets[i].slice(0, n),
      mask: b.mask[i].subarray(0, n),
    };
  });
}

/** Merge the parts' contributions to one reference call. */
function mergeArgs(weights: RwkvWeights, parts: CpuPart[], step: number) {
  let w = weights, init: RefLayerState[] | undefined;
  const opts: RefLossOptions = {};
  for (const p of parts) {
    const a = p.args(step);
    if (a.weights) w = a.weights;
    if (a.initialState) init = a.initialState;
    Object.assign(opts, a.refOptions ?? {});
  }
  return { w, init, opts };
}

/**
 * One step's gradients, summed over the micro-batches into `grads` (each part's own layout):
 * the mean loss and the tokens scored.
 */
function accumulate(
  weights: RwkvWeights,
  parts: CpuPart[],
  batches: Example[][],
  grads: Float64Array[][],
  step: number,
  l2wrap: boolean,
): { loss: number; tokens: number } {
  const { w, init, opts } = mergeArgs(weights, parts, step);
  let loss = 0, tokens = 0;
  batches.forEach((ex, a) => {
    const res = refBatchLossAndGrad(w, batchSequences(ex), init, { ...opts, l2wrap });
    loss += res.loss / batches.length;
    tokens += ex.reduce((s, e) => s + e.ids.length - 1, 0);
    parts.forEach((p, i) => p.grads(res, grads[i], a > 0));
  });
  return { loss, tokens };
}

/** Σ g² over every gradient. */
function sumOfSquares(grads: Float64Array[][]): number {
  let sq = 0;
  for (const gs of grads) {
    for (const g of gs) for (let i = 0; i < g.length; i++) sq += g[i] * g[i];
  }
  return sq;
}

/** One Adam update of every part's tensors (moments in `mom`, in the parts' tensor order). */
function applyAdam(
  parts: CpuPart[],
  grads: Float64Array[][],
  mom: Float64Array[][],
  at: { lr: number; t: number; scale: number },
): void {
  let k = 0;
  parts.forEach((p, i) =>
    p.tensors.forEach((t, j) => {
      const [m, v] = mom[k++];
      adamStep(t.param, grads[i][j], m, v, at.lr * p.lrScale * (t.lrScale ?? 1), at.t, at.scale);
    })
  );
}

/**
 * Train `parts` of a frozen model on `data` with the CPU reference (see the module doc).
 *
 * @example
 * ```ts ignore
 * const part = cpuStatePart(weights);
 * const res = cpuTune(weights, [part], dataset, { steps: 400, batch: 32 });
 * const s0 = res.tensors[0].s0; // (L·H·N·N)
 * ```
 */
export function cpuTune(
  weights: RwkvWeights,
  parts: CpuPart[],
  data: Dataset | Example[],
  options: CpuTuneOptions = {},
): CpuTuneResult {
  const { onStep, signal, ...rest } = options;
  const o = CpuTuneOptionsSchema.parse(rest);
  const train = Array.isArray(data) ? data : data.train;
  if (train.length === 0) throw new RangeError("cpuTune: the training set is empty");
  const perStep = o.batch * o.gradAccum;
  const totalSteps = o.steps ?? Math.max(1, Math.ceil(o.epochs * train.length / perStep));
  const sched = { lrInit: o.lrInit, lrFinal: o.lrFinal, warmupSteps: o.warmupSteps, totalSteps };
  const order = new BatchOrder(train.length, o.seed);
  const grads = parts.map((p) => p.tensors.map((t) => new Float64Array(t.param.length)));
  const mom = grads.flat().map((g) => [new Float64Array(g.length), new Float64Array(g.length)]);
  const history: HistoryRow[] = [];
  const t0 = performance.now();
  let step = 0, stopReason: CpuTuneResult["stopReason"] = "done";
  for (; step < totalSteps; step++) {
    if (signal?.aborted) {
      stopReason = "aborted";
      break;
    }
    const ts = performance.now();
    const batches = Array.from(
      { length: o.gradAccum },
      (_, a) => order.batch(step * o.gradAccum + a, o.batch).map((i) => train[i]),
    );
    const { loss, tokens } = accumulate(weights, parts, batches, grads, step, o.l2wrap);
    const sq = sumOfSquares(grads);
    const gradNorm = Math.sqrt(sq) / o.gradAccum;
    if (!Number.isFinite(loss) || !Number.isFinite(gradNorm)) {
      throw new RangeError(
        `cpuTune step ${step}: loss ${loss}, gradient norm ${gradNorm}; the state was not ` +
          `updated. Lower lrInit or turn on clipping (clip > 0).`,
      );
    }
    const maxNorm = o.clip * o.gradAccum;
    const scale = maxNorm > 0 ? Math.min(1, maxNorm / (Math.sqrt(sq) + 1e-6)) : 1;
    const lr = learningRate(sched, step);
    applyAdam(parts, grads, mom, { lr, t: step + 1, scale });
    for (const p of parts) p.afterUpdate?.(step, batches);
    const now = performance.now();
    const row: HistoryRow = {
      step: step + 1,
      loss,
      lr,
      gradNorm,
      tokensPerSecond: tokens / ((now - ts) / 1000),
      elapsedMs: now - t0,
    };
    for (const p of parts) Object.assign(row, p.historyFields?.() ?? {});
    history.push(row);
    onStep?.(row);
  }
  const out = parts.map((p) =>
    Object.fromEntries(p.tensors.map((t) => [t.name, Float32Array.from(t.param)]))
  );
  return { tensors: out, history, steps: step, stopReason };
}

/**
 * Plain state tuning on the CPU: the per-layer tuned states, as `tuneState` returns them.
 *
 * @example
 * ```ts ignore
 * const { states, history } = cpuTuneState(weights, facts.train, { steps: 800, batch: 32 });
 * ```
 */
export function cpuTuneState(
  weights: RwkvWeights,
  data: Dataset | Example[],
  options: CpuTuneOptions & { initialStates?: Float32Array[] } = {},
): { states: Float32Array[]; history: HistoryRow[]; steps: number; stopReason: string } {
  const { initialStates, ...rest } = options;
  const part = cpuStatePart(weights, initialStates);
  const res = cpuTune(weights, [part], data, rest);
  const { nLayer: L } = weights.config;
  const flat = res.tensors[0].s0, per = flat.length / L;
  const states = Array.from({ length: L }, (_, l) => flat.slice(l * per, (l + 1) * per));
  return { states, history: res.history, steps: res.steps, stopReason: res.stopReason };
}
