/**
 * Guided test-time scaling (docs/MATH.md §5): for each test item a guide continues the item's prompt;
 * the student's initial state takes K optimiser steps on that continuation, and the student
 * answers from the tuned state through the evaluation harness's per-item `initialState` hook,
 * so scoring is exactly the harness protocol (docs/MATH.md §9).
 *
 * Alignment objectives:
 * - `"ce"`: teacher-forced cross-entropy on the guide's tokens (a one-example dataset through
 *   {@link tuneState}, K steps of Adam from the student's state);
 * - `"kl"`: KL to the guide's top-k next-token distribution, when the guide shares the
 *   student's vocabulary (see `align.ts`: stratified expansion into cross-entropy rows);
 * - optional `reinforce` afterwards: sequence-level reward on sampled student answers with a
 *   mean-reward baseline. The reward is agreement with the guide's final answer (`"guide"`, the
 *   test-time setting) or the item's gold answer (`"oracle"`: uses the label; an upper bound for
 *   analysis, not a test-time method).
 *
 * The cost (guide tokens, requests, wall time; optimiser steps; tuning time) is recorded per
 * item and in total.
 *
 * @module
 */
import { z } from "zod";
import type { RwkvState } from "../model/types.ts";
import type { Tokenizer } from "../tokenizer/mod.ts";
import { tuneState } from "../train/tune.ts";
import { type EvaluateOptions, evaluateTask, type TaskResult } from "../eval/evaluate.ts";
import type { Scorer } from "../eval/scorer.ts";
import type { EvalItem, PreparedTask } from "../eval/tasks.ts";
import { CpuAdam, klRows, StateGrad } from "./align.ts";
import type { Guide, GuideOutput } from "./guide.ts";
import { reinforce, withWkv } from "./reinforce.ts";

export { guidePick } from "./reinforce.ts";

/** Options of {@link guidedEvaluate}. */
export const TtsOptionsSchema = z.object({
  /** K: optimiser steps of the alignment per item (0 = the guide is not called). */
  steps: z.number().int().min(0).default(2),
  /** Adam learning rate of the test-time steps (constant). */
  lr: z.number().positive().default(0.1),
  /** Global gradient-norm clip (0 = off). */
  clip: z.number().min(0).default(1),
  objective: z.enum(["ce", "kl"]).default("ce"),
  /** KL: copies per sequence (the target distribution's resolution, multiples of 1/R). */
  klRows: z.number().int().min(1).max(64).default(8),
  /** Most tokens the guide writes per item. */
  guideMaxTokens: z.number().int().min(1).default(64),
  /** Most tokens the student generates per item (GSM8K). */
  maxGenTokens: z.number().int().min(1).default(256),
  reinforce: z.object({
    steps: z.number().int().min(1).default(1),
    samples: z.number().int().min(2).max(32).default(4),
    temperature: z.number().positive().max(2).default(1),
    reward: z.enum(["guide", "oracle"]).default("guide"),
    /** Most tokens per sampled answer (generation tasks). */
    maxTokens: z.number().int().min(1).default(64),
  }).optional(),
  seed: z.number().int().min(0).default(0),
  /** Label of the tuned state in the result. */
  label: z.string().default("tts"),
});
/** Guided test-time scaling options (input form). */
export type TtsOptions = z.input<typeof TtsOptionsSchema>;

/** The cost of one item (or of all, summed). */
export interface TtsCost {
  guideTokens: number;
  guideRequests: number;
  guideMs: number;
  /** Optimiser steps taken (alignment + REINFORCE). */
  optimiserSteps: number;
  /** Wall time of the steps (sampling included), ms. */
  tuneMs: number;
  /** Guide + tuning, ms (the harness's own scoring excluded). */
  ms: number;
}

/** What test-time scaling did for one item. */
export interface TtsItem {
  id: string;
  /** The guide's continuation. */
  guideText: string;
  /** Tokens the student was aligned on (student vocabulary). */
  alignTokens: number;
  /** The objective used ("ce" when KL was asked but the guide gave no distributions). */
  objective: "ce" | "kl" | "none";
  /** Alignment loss before each step. */
  losses: number[];
  /** REINFORCE: mean reward of each step's samples (NaN when no reward was defined). */
  rewards?: number[];
  cost: TtsCost;
}

/** The result of {@link guidedEvaluate}. */
export interface TtsResult {
  /** The harness's result from the tuned states. */
  result: TaskResult;
  items: TtsItem[];
  total: TtsCost;
}

/** Zero cost. */
export function zeroTtsCost(): TtsCost {
  return { guideTokens: 0, guideRequests: 0, guideMs: 0, optimiserSteps: 0, tuneMs: 0, ms: 0 };
}

/** Field-wise sum of costs. */
export function sumTtsCost(costs: TtsCost[]): TtsCost {
  const t = zeroTtsCost();
  for (const c of costs) for (const k of Object.keys(t) as (keyof TtsCost)[]) t[k] += c[k];
  return t;
}

/** The prompt an item shows the guide (and the student): prefix, context, stop strings. */
export function itemPrompt(item: EvalItem): { prefix: string; context: string; stop: string[] } {
  if (item.kind === "generate") return { ...item.request };
  return { prefix: item.request.prefix, context: item.request.contexts[0], stop: ["\n\n"] };
}

/** Whether the guide's token ids are the student's. */
function sameVocab(guide: Guide, tok: Tokenizer): boolean {
  return guide.vocabulary?.name === tok.name && guide.vocabulary.size === tok.vocabSize;
}

/**
 * Evaluate `task` with guided test-time scaling: per item, the guide's continuation, K steps
 * from `base` (the student's state; zero when omitted), then the harness scores the item from
 * the tuned state.
 *
 * @param scorer the student's scorer (model and tokenizer)
 * @param task a prepared task
 * @param guide the guide
 * @param options K, learning rate, objective, REINFORCE
 * @param base the student's starting state (its wkv part is tuned; shift states kept)
 * @returns the harness result and the per-item and total cost
 * @throws {RangeError} for `objective: "kl"` with a guide that does not share the vocabulary
 * @example
 * ```ts ignore
 * const before = await evaluateTask(scorer, task);
 * const after = await guidedEvaluate(scorer, task, guide, { steps: 2, lr: 0.1 });
 * console.log(before.metrics[0].value, after.result.metrics[0].value, after.total);
 * ```
 */
export async function guidedEvaluate(
  scorer: Scorer,
  task: PreparedTask,
  guide: Guide,
  options: TtsOptions = {},
  base?: RwkvState,
  evalOptions: Pick<EvaluateOptions, "onProgress"> = {},
): Promise<TtsResult> {
  const o = TtsOptionsSchema.parse(options);
  const { model, tokenizer: tok } = scorer;
  if (o.objective === "kl" && !sameVocab(guide, tok)) {
    throw new RangeError(
      `tts: objective "kl" needs a guide with the student's vocabulary (${tok.name}, ` +
        `${tok.vocabSize}); ${guide.name} has ${
          guide.vocabulary ? `${guide.vocabulary.name}, ${guide.vocabulary.size}` : "text only"
        }. Use objective "ce"`,
    );
  }
  const start = base ?? scorer.options.initial ?? zeroLike(model.config);
  const grad = o.objective === "kl" || o.reinforce ? await StateGrad.create(model) : undefined;
  const items: TtsItem[] = [];
  try {
    const result = await evaluateTask(scorer, task, {
      state: o.label,
      maxGenTokens: o.maxGenTokens,
      onProgress: evalOptions.onProgress,
      initialState: async (item, index) => {
        const r = await tuneItem(scorer, item, guide, o, start, grad, index);
        items.push(r.record);
        return r.state;
      },
    });
    return { result, items, total: sumTtsCost(items.map((i) => i.cost)) };
  } finally {
    grad?.destroy();
  }
}

function zeroLike(cfg: { nLayer: number; nEmbd: number; nHead: number; headSize: number }) {
  const { nLayer: L, nEmbd: C, nHead: H, headSize: N } = cfg;
  return Array.from({ length: L }, () => ({
    att: new Float32Array(C),
    wkv: new Float32Array(H * N * N),
    ffn: new Float32Array(C),
  }));
}

type Opts = z.output<typeof TtsOptionsSchema>;

/** What {@link align} needs of one item. */
interface AlignContext {
  scorer: Scorer;
  o: Opts;
  start: RwkvState;
  grad: StateGrad | undefined;
  index: number;
  record: TtsItem;
}

/**
 * The K alignment steps from the flat wkv state `s`: KL to the guide's distributions when asked
 * and available, else cross-entropy on the guide's tokens. Records the objective and losses.
 *
 * @returns the tuned flat state (`s` itself, updated, for KL)
 */
async function align(
  c: AlignContext,
  s: Float32Array,
  prompt: number[],
  gTokens: number[],
  out: GuideOutput,
  shared: boolean,
): Promise<Float32Array> {
  const { o, record } = c;
  const useKl = o.objective === "kl" && shared && out.top !== undefined && c.grad;
  record.objective = useKl ? "kl" : "ce";
  if (useKl) {
    const rows = klRows(prompt, gTokens, out.top!, o.klRows);
    const adam = new CpuAdam(s.length, o.clip);
    for (let k = 0; k < o.steps; k++) {
      const r = await c.grad!.lossAndGrad(s, rows);
      record.losses.push(r.loss);
      adam.step(s, r.grad, o.lr);
    }
    return s;
  }
  const ex = {
    ids: [...prompt, ...gTokens],
    loss: Uint8Array.from([...prompt.map(() => 0), ...gTokens.map(() => 1)]),
    line: c.index + 1,
  };
  const r = await tuneState(c.scorer.model, [ex], {
    initialStates: c.start.map((l) => new Float32Array(l.wkv)),
    steps: o.steps,
    batch: 1,
    lrInit: o.lr,
    lrFinal: o.lr,
    clip: o.clip,
    seed: o.seed,
    progress: false,
    livePlot: false,
  });
  record.losses = r.history.map((h) => h.loss);
  return flat(r.states);
}

/** The guide call and the K (+ REINFORCE) steps of one item. */
async function tuneItem(
  scorer: Scorer,
  item: EvalItem,
  guide: Guide,
  o: Opts,
  start: RwkvState,
  grad: StateGrad | undefined,
  index: number,
): Promise<{ state: RwkvState; record: TtsItem }> {
  const t0 = performance.now();
  const tok = scorer.tokenizer, L = scorer.model.config.nLayer;
  const cost = zeroTtsCost();
  const record: TtsItem = {
    id: item.id,
    guideText: "",
    alignTokens: 0,
    objective: "none",
    losses: [],
    cost,
  };
  if (o.steps === 0 && !o.reinforce) return { state: start, record };
  const p = itemPrompt(item);
  const out: GuideOutput = await guide.continue(p.prefix + p.context, {
    maxTokens: o.guideMaxTokens,
    stop: p.stop,
  });
  Object.assign(cost, {
    guideTokens: out.cost.tokens,
    guideRequests: out.cost.requests,
    guideMs: out.cost.ms,
  });
  record.guideText = out.text;
  const t1 = performance.now();
  const shared = sameVocab(guide, tok) && out.tokens !== undefined;
  const gTokens = shared ? out.tokens! : tok.encode(out.text);
  const prompt = [0, ...tok.encode(p.prefix), ...tok.encode(p.context)];
  record.alignTokens = gTokens.length;
  let s = flat(start.map((l) => l.wkv));
  if (o.steps > 0 && gTokens.length > 0) {
    const c = { scorer, o, start, grad, index, record };
    s = await align(c, s, prompt, gTokens, out, shared);
    cost.optimiserSteps += o.steps;
  }
  if (o.reinforce && grad) {
    const rf = { ...o.reinforce, lr: o.lr, clip: o.clip, seed: o.seed };
    record.rewards = await reinforce(
      { scorer, item, guideText: out.text, start, index, grad },
      rf,
      s,
    );
    cost.optimiserSteps += record.rewards.filter((r) => !Number.isNaN(r)).length;
  }
  const t2 = performance.now();
  cost.tuneMs = t2 - t1;
  cost.ms = t2 - t0;
  return { state: withWkv(start, s, L), record };
}

function flat(states: Float32Array[]): Float32Array {
  const n = states.reduce((a, s) => a + s.length, 0);
  const out = new Float32Array(n);
  let off = 0;
  for (const s of states) {
    out.set(s, off);
    off += s.length;
  }
  return out;
}
