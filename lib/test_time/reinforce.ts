/**
 * REINFORCE at test time (docs/MATH.md §5), after the alignment steps: sample answers from the student,
 * reward each (agreement with the guide's final answer, or the gold label for the `"oracle"`
 * upper bound), and step on `−mean_b (r_b − r̄) log π(y_b)` with a mean-reward baseline.
 *
 * @module
 */
import { generateText } from "../generate/generate.ts";
import { cloneState, type RwkvState } from "../model/types.ts";
import { exactMatch, extractFlexible } from "../eval/metrics.ts";
import type { Scorer } from "../eval/scorer.ts";
import type { EvalItem, GenerationItem, LoglikItem } from "../eval/task_types.ts";
import { Rng } from "../util/rng.ts";
import { combineAdvantages, CpuAdam, type StateGrad, teacherRows } from "./align.ts";

/** The REINFORCE settings of one run (`TtsOptions.reinforce` plus the step's lr, clip, seed). */
export interface ReinforceSettings {
  steps: number;
  samples: number;
  temperature: number;
  reward: "guide" | "oracle";
  /** Most tokens per sampled answer (generation tasks). */
  maxTokens: number;
  lr: number;
  clip: number;
  seed: number;
}

/** One item's REINFORCE inputs. */
export interface ReinforceItem {
  scorer: Scorer;
  item: EvalItem;
  /** The guide's continuation (its answer is the `"guide"` reward's target). */
  guideText: string;
  /** The student's starting state (its shift states are kept). */
  start: RwkvState;
  /** The item's index (seeds the sampling). */
  index: number;
  grad: StateGrad;
}

/** Sampled sequences, where each answer starts, and their rewards (undefined: none defined). */
interface Samples {
  seqs: number[][];
  from: number[];
  rewards: (number | undefined)[];
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

/** `base` with its wkv states replaced by the flat (L, H, N, N) `s`. */
export function withWkv(base: RwkvState, s: Float32Array, L: number): RwkvState {
  const st = cloneState(base);
  const per = s.length / L;
  st.forEach((l, i) => l.wkv.set(s.subarray(i * per, (i + 1) * per)));
  return st;
}

/**
 * Multiple choice: each sample is a choice drawn from the softmax of the choices'
 * log-likelihoods (temperature `rf.temperature`).
 */
async function sampleChoices(
  c: ReinforceItem,
  item: LoglikItem,
  rf: ReinforceSettings,
  state: RwkvState,
  rng: Rng,
): Promise<Samples> {
  const tok = c.scorer.tokenizer, req = item.request;
  const out: Samples = { seqs: [], from: [], rewards: [] };
  const ll = (await c.scorer.score(req, state)).map((r) => r.loglik / rf.temperature);
  const m = Math.max(...ll), w = ll.map((x) => Math.exp(x - m));
  const z = w.reduce((a, b) => a + b, 0);
  const gpick = rf.reward === "guide" ? guidePick(c.guideText, req.continuations) : undefined;
  for (let b = 0; b < rf.samples; b++) {
    let u = rng.next() * z, k = 0;
    while (k < w.length - 1 && u >= w[k]) u -= w[k++];
    const ctx = [0, ...tok.encode(req.prefix), ...tok.encode(req.contexts[k])];
    out.seqs.push([...ctx, ...tok.encode(req.continuations[k])]);
    out.from.push(ctx.length);
    out.rewards.push(
      rf.reward === "oracle"
        ? item.judge(req.contexts.map((_, i) => ({
          loglik: i === k ? 0 : -Infinity,
          greedy: false,
          tokens: 1,
        }))).metrics.acc
        : gpick === undefined
        ? undefined
        : Number(k === gpick),
    );
  }
  return out;
}

/** Generation: each sample is an answer the student generates (empty answers are dropped). */
async function sampleAnswers(
  c: ReinforceItem,
  item: GenerationItem,
  rf: ReinforceSettings,
  state: RwkvState,
  rng: Rng,
): Promise<Samples> {
  const tok = c.scorer.tokenizer, req = item.request;
  const out: Samples = { seqs: [], from: [], rewards: [] };
  const target = extractFlexible(c.guideText);
  const ctx = [0, ...tok.encode(req.prefix), ...tok.encode(req.context)];
  for (let b = 0; b < rf.samples; b++) {
    const session = c.scorer.model.session(state);
    try {
      const r = await generateText(session, tok, ctx, {
        temperature: rf.temperature,
        maxTokens: rf.maxTokens,
        stop: req.stop,
        seed: Math.floor(rng.next() * 2 ** 31),
      });
      if (r.tokens.length === 0) continue;
      out.seqs.push([...ctx, ...r.tokens]);
      out.from.push(ctx.length);
      out.rewards.push(
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
  return out;
}

/**
 * REINFORCE steps on `s` (in place): sample answers from the student, reward them, step on
 * `−mean_b (r_b − r̄) log π(y_b)`. For a multiple-choice item the answer is a choice drawn from
 * the softmax of the choices' log-likelihoods; since Σ A_b = 0 the normaliser's gradient
 * cancels, so weighting the continuations' log-likelihoods is the exact estimator.
 *
 * @param c the item, the student and its gradient
 * @param rf steps, samples, temperature, reward; lr, clip and seed
 * @param s the flat (L, H, N, N) wkv state, updated in place
 * @returns the mean reward of each step (NaN when no reward was defined: no update then)
 */
export async function reinforce(
  c: ReinforceItem,
  rf: ReinforceSettings,
  s: Float32Array,
): Promise<number[]> {
  const L = c.scorer.model.config.nLayer;
  const rng = new Rng(rf.seed * 7919 + c.index);
  const adam = new CpuAdam(s.length, rf.clip);
  const means: number[] = [];
  for (let step = 0; step < rf.steps; step++) {
    const state = withWkv(c.start, s, L);
    const { seqs, from, rewards } = c.item.kind === "loglik"
      ? await sampleChoices(c, c.item, rf, state, rng)
      : await sampleAnswers(c, c.item, rf, state, rng);
    if (seqs.length < 2 || rewards.some((r) => r === undefined)) {
      means.push(NaN);
      continue;
    }
    const rw = rewards as number[];
    const mean = rw.reduce((a, b) => a + b, 0) / rw.length;
    means.push(mean);
    const adv = rw.map((r) => r - mean);
    if (adv.every((a) => a === 0)) continue; // no signal: the step is a no-op
    const g = await c.grad.lossAndGrad(s, teacherRows(seqs, from), true);
    adam.step(s, combineAdvantages(g.grad, adv, g.count, L), rf.lr);
  }
  return means;
}
