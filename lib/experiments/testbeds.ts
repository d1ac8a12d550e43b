/**
 * The testbeds of docs/MATH.md §10, each a pure function of a seed returning training and held-out
 * examples and a GPU scorer: `skill` (a synthetic skill without its instruction line), `facts`
 * (K random `key=value` facts recalled from the state alone), `add` (the default model's weak
 * instructed addition), `jsonl` (any `{"prompt","response"}` data with a held-out split, plus an
 * optional harness task of docs/MATH.md §9 for real checkpoints). They work with any checkpoint whose
 * tokenizer encodes their text (byte-level for the embedded model).
 *
 * Scoring is teacher-forced and batched: one forward per batch of held-out items with logits at
 * every position; an item is right when every answer token (the newline that ends it included)
 * is the argmax given the correct prefix — for answers ending in a newline this is exactly
 * greedy decoding's exact match with the newline as stop.
 *
 * @module
 */
import { z } from "zod";
import type { GpuModel } from "../model/gpu_model.ts";
import type { RwkvState } from "../model/types.ts";
import { type Dataset, type Example, makeBatch, type TextEncoder } from "../train/data.ts";
import { type Skill, skillRows, SKILLS } from "../train/synthetic.ts";
import { Rng } from "../util/rng.ts";
import type { Tokenizer } from "../tokenizer/mod.ts";
import { Scorer } from "../eval/scorer.ts";
import { evaluateTask } from "../eval/evaluate.ts";
import {
  type PreparedTask,
  type PrepareOptions,
  prepareTask,
  type TaskName,
} from "../eval/tasks.ts";

/** Per-item outcomes and aggregate metrics of one scoring pass. */
export interface TestbedScore {
  /** the testbed's headline metric and others (accuracy/recall in [0, 1], loss in nats) */
  metrics: Record<string, number>;
  /** per held-out item: 1 right, 0 wrong (paired tests, bootstrap) */
  items: number[];
}

/** A testbed instance. */
export interface Testbed {
  /** e.g. `facts K=128 seed=3` */
  name: string;
  /** the headline metric's key in {@link TestbedScore.metrics} */
  metric: string;
  train: Example[];
  heldOut: Example[];
  /** score the held-out items from `state` (zero when omitted) and the model's lifted set */
  score(model: GpuModel, state?: RwkvState): Promise<TestbedScore>;
  /** what tuning costs elsewhere (facts: the instructed skills); same call shape */
  side?(model: GpuModel, state?: RwkvState): Promise<Record<string, number>>;
}

/** A prompt/response pair tokenised with the loss on the response. */
export function pairExample(tok: TextEncoder, prompt: string, response: string, line = 0): Example {
  const p = tok.encode(prompt), r = tok.encode(response);
  const loss = new Uint8Array(p.length + r.length);
  loss.fill(1, p.length);
  return { ids: [...p, ...r], loss, line };
}

/** Largest logits buffer one scoring forward reads back (floats). */
const MAX_LOGITS = 4_000_000;

/**
 * Teacher-forced scores of `examples` from `state`: per item whether every loss token is the
 * argmax (exact match) and its summed cross-entropy; batched, items of similar length together.
 */
export async function teacherForced(
  model: GpuModel,
  examples: Example[],
  state?: RwkvState,
): Promise<{ exact: number[]; loss: number[]; tokens: number[] }> {
  const V = model.config.vocabSize, n = examples.length;
  const exact = new Array<number>(n).fill(0), loss = new Array<number>(n).fill(0);
  const tokens = new Array<number>(n).fill(0);
  const order = examples.map((_, i) => i).sort((a, b) =>
    examples[a].ids.length - examples[b].ids.length
  );
  for (let i = 0; i < n;) {
    const T = examples[order[Math.min(n - 1, i)]].ids.length - 1;
    const maxB = Math.max(1, Math.floor(MAX_LOGITS / (Math.max(T, 1) * 2 * V)));
    const idx = order.slice(i, i + maxB);
    i += idx.length;
    const batch = makeBatch(idx.map((j) => examples[j]));
    const gs = state ? model.uploadState(idx.map(() => state)) : model.createState(batch.B);
    try {
      const logits = await model.forward(batch.tokens, gs, { logits: "all" });
      idx.forEach((j, b) => {
        let ok = 1;
        for (let t = 0; t < batch.T; t++) {
          if (!batch.mask[b][t]) continue;
          const off = (b * batch.T + t) * V, tgt = batch.targets[b][t];
          let mx = -Infinity, arg = 0;
          for (let v = 0; v < V; v++) if (logits[off + v] > mx) [mx, arg] = [logits[off + v], v];
          let z = 0;
          for (let v = 0; v < V; v++) z += Math.exp(logits[off + v] - mx);
          loss[j] += Math.log(z) + mx - logits[off + tgt];
          tokens[j]++;
          if (arg !== tgt) ok = 0;
        }
        exact[j] = ok;
      });
    } finally {
      gs.destroy();
    }
  }
  return { exact, loss, tokens };
}

/** Score = exact match and loss per token over `heldOut`. */
async function exactScore(
  model: GpuModel,
  heldOut: Example[],
  state: RwkvState | undefined,
  metric: string,
): Promise<TestbedScore> {
  const r = await teacherForced(model, heldOut, state);
  const tok = r.tokens.reduce((a, b) => a + b, 0);
  return {
    metrics: {
      [metric]: r.exact.reduce((a, b) => a + b, 0) / Math.max(1, heldOut.length),
      heldOutLoss: r.loss.reduce((a, b) => a + b, 0) / Math.max(1, tok),
    },
    items: r.exact,
  };
}

/** Items of a skill, with held-out items disjoint from the training prompts. */
function skillSplit(
  tok: TextEncoder,
  skill: Skill,
  nTrain: number,
  nTest: number,
  seed: number,
  withInstruction: boolean,
): { train: Example[]; heldOut: Example[] } {
  const trainRows = skillRows(skill, nTrain, seed * 2 + 1, withInstruction);
  const seen = new Set(trainRows.map((r) => r.prompt));
  const test: { prompt: string; response: string }[] = [];
  let draw = 0;
  while (test.length < nTest && draw < 50) {
    const rows = skillRows(skill, nTest * 2, 1_000_003 + seed * 97 + draw++, withInstruction);
    for (const r of rows) {
      if (test.length < nTest && !seen.has(r.prompt)) {
        seen.add(r.prompt);
        test.push(r);
      }
    }
  }
  if (test.length < nTest) {
    throw new RangeError(
      `skill "${skill}": only ${test.length} held-out items differ from the ${nTrain} training ` +
        `items; ask for fewer (testItems ${nTest})`,
    );
  }
  return {
    train: trainRows.map((r, i) => pairExample(tok, r.prompt, r.response, i)),
    heldOut: test.map((r, i) => pairExample(tok, r.prompt, r.response, i)),
  };
}

/** Options of {@link skillTestbed}. */
export const SkillTestbedSchema = z.object({
  skill: z.enum(SKILLS).default("reverse"),
  trainItems: z.number().int().positive().default(200),
  testItems: z.number().int().min(200).default(200),
  seed: z.number().int().min(0).default(0),
});

/** `skill`: a synthetic skill WITHOUT its instruction line (the tuned state replaces it). */
export function skillTestbed(
  tok: TextEncoder,
  opts: z.input<typeof SkillTestbedSchema> = {},
): Testbed {
  const o = SkillTestbedSchema.parse(opts);
  const { train, heldOut } = skillSplit(tok, o.skill, o.trainItems, o.testItems, o.seed, false);
  return {
    name: `skill ${o.skill} seed=${o.seed}`,
    metric: "accuracy",
    train,
    heldOut,
    score: (model, state) => exactScore(model, heldOut, state, "accuracy"),
  };
}

/** Options of {@link addTestbed}. */
export const AddTestbedSchema = z.object({
  trainItems: z.number().int().positive().default(400),
  testItems: z.number().int().min(200).default(300),
  seed: z.number().int().min(0).default(0),
});

/** `add`: the instructed addition (`add\n12+34=` → `46`), tuned on its training items. */
export function addTestbed(tok: TextEncoder, opts: z.input<typeof AddTestbedSchema> = {}): Testbed {
  const o = AddTestbedSchema.parse(opts);
  const { train, heldOut } = skillSplit(tok, "add", o.trainItems, o.testItems, o.seed, true);
  return {
    name: `add seed=${o.seed}`,
    metric: "accuracy",
    train,
    heldOut,
    score: (model, state) => exactScore(model, heldOut, state, "accuracy"),
  };
}

/** Options of {@link factsTestbed}. */
export const FactsTestbedSchema = z.object({
  K: z.number().int().positive().default(128),
  /** characters of keys and values (must be ones the model knows) */
  alphabet: z.string().min(2).default("abcdefghijklmnopqrstuvwxyz"),
  minLength: z.number().int().positive().default(4),
  maxLength: z.number().int().positive().default(8),
  seed: z.number().int().min(0).default(0),
  /** instructed-skill items scored before/after (0 = skip) */
  sideItems: z.number().int().min(0).default(100),
});

/**
 * K random facts `key=value` (distinct keys), one per training sequence; the held-out items
 * are the same sequences scored from the key alone with no fact in context: recall.
 *
 * @example
 * ```ts
 * import { factsTestbed } from "./testbeds.ts";
 * import { ByteTokenizer } from "../tokenizer/bytes.ts";
 * const tb = factsTestbed(new ByteTokenizer(), { K: 16, seed: 1 });
 * console.assert(tb.train.length === 16 && tb.heldOut.length === 16);
 * ```
 */
export function factsTestbed(
  tok: TextEncoder,
  opts: z.input<typeof FactsTestbedSchema> = {},
): Testbed {
  const o = FactsTestbedSchema.parse(opts);
  if (o.maxLength < o.minLength) {
    throw new RangeError(`facts: maxLength ${o.maxLength} < minLength ${o.minLength}`);
  }
  const rng = new Rng(o.seed * 7919 + o.K);
  const word = () => {
    const n = o.minLength + rng.int(o.maxLength - o.minLength + 1);
    let s = "";
    for (let i = 0; i < n; i++) s += o.alphabet[rng.int(o.alphabet.length)];
    return s;
  };
  const keys = new Set<string>();
  while (keys.size < o.K) keys.add(word());
  const train = [...keys].map((k, i) => pairExample(tok, `${k}=`, `${word()}\n`, i));
  return {
    name: `facts K=${o.K} seed=${o.seed}`,
    metric: "recall",
    train,
    heldOut: train,
    score: (model, state) => exactScore(model, train, state, "recall"),
    side: o.sideItems
      ? (model, state) => instructedSkills(model, tok, o.sideItems, state)
      : undefined,
  };
}

/** Accuracy of every instructed skill (teacher-forced exact match) from `state`. */
export async function instructedSkills(
  model: GpuModel,
  tok: TextEncoder,
  n: number,
  state?: RwkvState,
): Promise<Record<string, number>> {
  const ex: Example[] = [], which: number[] = [];
  SKILLS.forEach((s, k) => {
    for (const r of skillRows(s, n, 424_242 + k, true)) {
      ex.push(pairExample(tok, r.prompt, r.response));
      which.push(k);
    }
  });
  const r = await teacherForced(model, ex, state);
  const out: Record<string, number> = {};
  SKILLS.forEach((s, k) => {
    const mine = r.exact.filter((_, i) => which[i] === k);
    out[`skill.${s}`] = mine.reduce((a, b) => a + b, 0) / mine.length;
  });
  out["skill.mean"] = SKILLS.reduce((a, s) => a + out[`skill.${s}`], 0) / SKILLS.length;
  return out;
}

/** A harness task (docs/MATH.md §9) run after tuning, for real checkpoints. */
export type HarnessRun = (model: GpuModel, state?: RwkvState) => Promise<Record<string, number>>;

/**
 * A task of the evaluation harness (docs/MATH.md §9) as a {@link HarnessRun}: prepared once, scored from
 * the tuned state; metrics named `<task>.<metric>` (e.g. `arc_easy.acc_norm`).
 *
 * @example
 * ```ts ignore
 * const tb = jsonlTestbed(dataset, harnessTask(tokenizer, "arc_easy", { dataDir, limit: 200 }));
 * ```
 */
export function harnessTask(
  tokenizer: Tokenizer,
  task: TaskName,
  options: PrepareOptions,
): HarnessRun {
  let prepared: Promise<PreparedTask> | undefined;
  return async (model, state) => {
    prepared ??= prepareTask(task, options);
    const scorer = new Scorer(model, tokenizer, state ? { initial: state } : {});
    try {
      const r = await evaluateTask(scorer, await prepared);
      return Object.fromEntries(r.metrics.map((m) => [`${task}.${m.metric}`, m.value]));
    } finally {
      scorer.destroy();
    }
  };
}

/**
 * `jsonl`: any dataset with a held-out split (its validation examples), scored by teacher-forced
 * exact match of the response and loss; `harness` adds a task of the evaluation harness.
 */
export function jsonlTestbed(dataset: Dataset, harness?: HarnessRun): Testbed {
  if (dataset.val.length === 0) {
    throw new RangeError(
      `${dataset.source}: the jsonl testbed needs a held-out split (valSplit > 0)`,
    );
  }
  return {
    name: `jsonl ${dataset.source}`,
    metric: "exact",
    train: dataset.train,
    heldOut: dataset.val,
    score: (model, state) => exactScore(model, dataset.val, state, "exact"),
    side: harness,
  };
}
