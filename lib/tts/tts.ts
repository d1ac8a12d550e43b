/**
 * Guided test-time scaling (SPEC §6): for each test item a guide continues the item's prompt;
 * the student's initial state takes K optimiser steps on that continuation, and the student
 * answers from the tuned state through the evaluation harness's per-item `initialState` hook,
 * so scoring is exactly the harness protocol (SPEC §7).
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
import { generateText } from "../generate/generate.ts";
import { cloneState, type RwkvState } from "../model/types.ts";
import type { Tokenizer } from "../tokenizer/mod.ts";
import { tuneState } from "../train/tune.ts";
import { type EvaluateOptions, evaluateTask, type TaskResult } from "../eval/evaluate.ts";
import { exactMatch, extractFlexible } from "../eval/metrics.ts";
import type { Scorer } from "../eval/scorer.ts";
import type { EvalItem, PreparedTask } from "../eval/tasks.ts";
import { Rng } from "../util/rng.ts";
import { combineAdvantages, CpuAdam, klRows, StateGrad, teacherRows } from "./align.ts";
import type { Guide, GuideOutput } from "./guide.ts";

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
 * The choice a guide's continuation names: the longest choice its normalised text starts with,
 * else the longest one it contains; undefined when none.
 */
export function guidePick(text: string, choices: string[]): number | undefined {
  const norm = (s: string) => s.toLowerCase().replace(/\s+/g, " ").trim();
  const t = norm(text);
  let best: number | undefined, bestScore = 0;
  choices.forEach((c, i) => {
    const n = norm(c);
    if (!n) return;
    const score = t.startsWith(n) ? 2 * n.length : t.includes(n) ? n.length : 0;
    if (score > bestScore) [best, bestScore] = [i, score];
  });
  return best;
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
    const useKl = o.objective === "kl" && shared && out.top !== undefined && grad;
    record.objective = useKl ? "kl" : "ce";
    if (useKl) {
      const rows = klRows(prompt, gTokens, out.top!, o.klRows);
      const adam = new CpuAdam(s.length, o.clip);
      for (let k = 0; k < o.steps; k++) {
        const r = await grad!.lossAndGrad(s, rows);
        record.losses.push(r.loss);
        adam.step(s, r.grad, o.lr);
      }
    } else {
      const ex = {
        ids: [...prompt, ...gTokens],
        loss: Uint8Array.from([...prompt.map(() => 0), ...gTokens.map(() => 1)]),
        line: index + 1,
      };
      const r = await tuneState(scorer.model, [ex], {
        initialStates: start.map((l) => new Float32Array(l.wkv)),
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
      s = flat(r.states);
    }
    cost.optimiserSteps += o.steps;
  }
  if (o.reinforce && grad) {
    record.rewards = await reinforce(scorer, item, out.text, o, s, grad, start, index);
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

/** `base` with its wkv states replaced by the flat (L, H, N, N) `s`. */
function withWkv(base: RwkvState, s: Float32Array, L: number): RwkvState {
  const st = cloneState(base);
  const per = s.length / L;
  st.forEach((l, i) => l.wkv.set(s.subarray(i * per, (i + 1) * per)));
  return st;
}

/**
 * REINFORCE steps on `s` (in place): sample answers from the student, reward them, step on
 * `−mean_b (r_b − r̄) log π(y_b)`. For a multiple-choice item the answer is a choice drawn from
 * the softmax of the choices' log-likelihoods; since Σ A_b = 0 the normaliser's gradient
 * cancels, so weighting the continuations' log-likelihoods is the exact estimator.
 *
 * @returns the mean reward of each step (NaN when no reward was defined: no update then)
 */
async function reinforce(
  scorer: Scorer,
  item: EvalItem,
  guideText: string,
  o: Opts,
  s: Float32Array,
  grad: StateGrad,
  start: RwkvState,
  index: number,
): Promise<number[]> {
  const rf = o.reinforce!;
  const tok = scorer.tokenizer, model = scorer.model, L = model.config.nLayer;
  const rng = new Rng(o.seed * 7919 + index);
  const adam = new CpuAdam(s.length, o.clip);
  const means: number[] = [];
  for (let step = 0; step < rf.steps; step++) {
    const state = withWkv(start, s, L);
    const seqs: number[][] = [], from: number[] = [], rewards: (number | undefined)[] = [];
    if (item.kind === "loglik") {
      const req = item.request;
      const ll = (await scorer.score(req, state)).map((r) => r.loglik / rf.temperature);
      const m = Math.max(...ll), w = ll.map((x) => Math.exp(x - m));
      const z = w.reduce((a, b) => a + b, 0);
      const gpick = rf.reward === "guide" ? guidePick(guideText, req.continuations) : undefined;
      for (let b = 0; b < rf.samples; b++) {
        let u = rng.next() * z, c = 0;
        while (c < w.length - 1 && u >= w[c]) u -= w[c++];
        const ctx = [0, ...tok.encode(req.prefix), ...tok.encode(req.contexts[c])];
        seqs.push([...ctx, ...tok.encode(req.continuations[c])]);
        from.push(ctx.length);
        rewards.push(
          rf.reward === "oracle"
            ? item.judge(req.contexts.map((_, i) => ({
              loglik: i === c ? 0 : -Infinity,
              greedy: false,
              tokens: 1,
            }))).metrics.acc
            : gpick === undefined
            ? undefined
            : Number(c === gpick),
        );
      }
    } else {
      const req = item.request;
      const target = extractFlexible(guideText);
      const ctx = [0, ...tok.encode(req.prefix), ...tok.encode(req.context)];
      for (let b = 0; b < rf.samples; b++) {
        const session = model.session(state);
        try {
          const r = await generateText(session, tok, ctx, {
            temperature: rf.temperature,
            maxTokens: rf.maxTokens,
            stop: req.stop,
            seed: Math.floor(rng.next() * 2 ** 31),
          });
          if (r.tokens.length === 0) continue;
          seqs.push([...ctx, ...r.tokens]);
          from.push(ctx.length);
          rewards.push(
            rf.reward === "oracle"
              ? item.judge(r.text).metrics.exact_match_flexible
              : target === null
              ? undefined
              : Number(exactMatch(extractFlexible(r.text), target)),
          );
        } finally {
          session.destroy();
        }
      }
    }
    if (seqs.length < 2 || rewards.some((r) => r === undefined)) {
      means.push(NaN);
      continue;
    }
    const rw = rewards as number[];
    const mean = rw.reduce((a, b) => a + b, 0) / rw.length;
    means.push(mean);
    const adv = rw.map((r) => r - mean);
    if (adv.every((a) => a === 0)) continue; // no signal: the step is a no-op
    const g = await grad.lossAndGrad(s, teacherRows(seqs, from), true);
    adam.step(s, combineAdvantages(g.grad, adv, g.count, L), o.lr);
  }
  return means;
}
