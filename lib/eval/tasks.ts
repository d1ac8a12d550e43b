/**
 * The evaluation tasks: where each finds its data, how many shots, which split, and how an
 * item's scores turn into per-item metrics. {@link prepareTask} loads and renders a task's items
 * once, so several states can be evaluated on exactly the same items.
 *
 * @module
 */
import { Rng } from "../util/rng.ts";
import { parseArc, parseGsm8k, parseLambada, parseWinogrande, readText } from "./data.ts";
import { loadMmluSplit } from "./mmlu.ts";
import { argmax, exactMatch, extractFlexible, extractStrict, normPrediction } from "./metrics.ts";
import {
  arcRequest,
  gsm8kPrefix,
  gsm8kRequest,
  lambadaRequest,
  mmluPrefix,
  mmluRequest,
  winograndeRequest,
} from "./prompts.ts";
import type { RowScore } from "./scorer.ts";
import { prepareSkillTask } from "./skill_tasks.ts";
import type { Skill } from "../train/synthetic.ts";

export * from "./task_types.ts";
import type { EvalItem, ItemOutcome, PreparedTask, TaskName } from "./task_types.ts";

/** Options of {@link prepareTask}. */
export interface PrepareOptions {
  /** Folder holding `llm-foundry/`, `gsm8k/`, `mmlu/` (or the jsonl files directly). */
  dataDir: string;
  /** Keep the first N items (file order; MMLU: subjects alphabetically, then file order). */
  limit?: number;
  /** Seeds the choice of GSM8K's few-shot examples. Default 1234. */
  seed?: number;
  /** MMLU subjects to keep (all when omitted). */
  subjects?: string[];
  /** skill_choice / skill_answer: the synthetic skill (default reverse; lib/eval/skill_tasks.ts). */
  skill?: Skill;
  /** skill_choice / skill_answer: show the skill's instruction line (default false). */
  instruction?: boolean;
}

async function firstExisting(dir: string, names: string[], what: string): Promise<string> {
  for (const n of names) {
    try {
      await Deno.stat(`${dir}/${n}`);
      return `${dir}/${n}`;
    } catch { /* try the next one */ }
  }
  throw new Error(
    `${what}: none of ${names.map((n) => `${dir}/${n}`).join(", ")} exists ` +
      `(pass --data-dir with the folder holding the data)`,
  );
}

const take = <T>(xs: T[], limit?: number) => (limit === undefined ? xs : xs.slice(0, limit));

const acc = { key: "acc", aggregation: "mean" as const };

function choiceJudge(rows: RowScore[], continuations: string[], gold: number): ItemOutcome {
  const ll = rows.map((r) => r.loglik);
  const pred = argmax(ll), predNorm = normPrediction(ll, continuations);
  return {
    metrics: { acc: Number(pred === gold), acc_norm: Number(predNorm === gold) },
    prediction: pred,
    gold,
  };
}

async function prepareArc(name: TaskName, o: PrepareOptions): Promise<PreparedTask> {
  const path = await firstExisting(
    o.dataDir,
    [`llm-foundry/${name}.jsonl`, `${name}.jsonl`, `${name}/test.jsonl`],
    name,
  );
  const items = take(parseArc(await readText(path, name), path), o.limit).map((it): EvalItem => {
    const request = arcRequest(it);
    return {
      kind: "loglik",
      id: it.id,
      request,
      judge: (rows) => choiceJudge(rows, request.continuations, it.gold),
    };
  });
  return {
    name,
    nShot: 0,
    split: "test",
    metrics: { acc, acc_norm: { key: "acc_norm", aggregation: "mean" } },
    items,
  };
}

async function prepareWinogrande(o: PrepareOptions): Promise<PreparedTask> {
  const path = await firstExisting(
    o.dataDir,
    ["llm-foundry/winogrande.jsonl", "winogrande.jsonl", "winogrande/dev.jsonl"],
    "winogrande",
  );
  const parsed = take(parseWinogrande(await readText(path, "winogrande"), path), o.limit);
  const items = parsed.map((it): EvalItem => ({
    kind: "loglik",
    id: it.id,
    request: winograndeRequest(it),
    judge: (rows) => {
      const pred = argmax(rows.map((r) => r.loglik));
      return { metrics: { acc: Number(pred === it.gold) }, prediction: pred, gold: it.gold };
    },
  }));
  return { name: "winogrande", nShot: 0, split: "validation", metrics: { acc }, items };
}

async function prepareLambada(o: PrepareOptions): Promise<PreparedTask> {
  const path = await firstExisting(
    o.dataDir,
    ["llm-foundry/lambada_openai.jsonl", "lambada_openai.jsonl", "lambada.jsonl"],
    "lambada",
  );
  const parsed = take(parseLambada(await readText(path, "lambada"), path), o.limit);
  const items = parsed.map((it): EvalItem => ({
    kind: "loglik",
    id: it.id,
    request: lambadaRequest(it),
    judge: ([row]) => ({
      metrics: { acc: Number(row.greedy), loglik: row.loglik },
      prediction: row.greedy ? it.target : "(not greedy)",
      gold: it.target,
    }),
  }));
  return {
    name: "lambada",
    nShot: 0,
    split: "test",
    metrics: { acc, perplexity: { key: "loglik", aggregation: "perplexity" } },
    items,
  };
}

async function prepareMmlu(o: PrepareOptions): Promise<PreparedTask> {
  const dir = await firstExisting(o.dataDir, ["mmlu", "."], "mmlu").then((d) =>
    d.replace(/\/\.$/, "")
  );
  const dev = await loadMmluSplit(dir, "dev", o.subjects);
  const test = await loadMmluSplit(dir, "test", o.subjects);
  const items: EvalItem[] = [];
  for (const [subject, rows] of test) {
    const shots = (dev.get(subject) ?? []).slice(0, 5);
    if (shots.length < 5) {
      throw new Error(`mmlu: ${dir}/dev/${subject}_dev.csv has ${shots.length} rows; 5 are needed`);
    }
    const prefix = mmluPrefix(subject, shots);
    for (const it of rows) {
      const request = mmluRequest(it, prefix);
      items.push({
        kind: "loglik",
        id: it.id,
        subject,
        request,
        judge: (r) => {
          const pred = argmax(r.map((x) => x.loglik));
          return { metrics: { acc: Number(pred === it.gold) }, prediction: pred, gold: it.gold };
        },
      });
    }
  }
  return { name: "mmlu", nShot: 5, split: "test", metrics: { acc }, items: take(items, o.limit) };
}

/** Pick `k` distinct indices of `n` with a seeded generator (partial Fisher–Yates). */
export function sampleIndices(n: number, k: number, seed: number): number[] {
  const rng = new Rng(seed);
  const idx = Array.from({ length: n }, (_, i) => i);
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(rng.next() * (n - i));
    [idx[i], idx[j]] = [idx[j], idx[i]];
  }
  return idx.slice(0, k);
}

async function prepareGsm8k(o: PrepareOptions): Promise<PreparedTask> {
  const trainPath = await firstExisting(o.dataDir, ["gsm8k/train.jsonl", "train.jsonl"], "gsm8k");
  const testPath = await firstExisting(o.dataDir, ["gsm8k/test.jsonl", "test.jsonl"], "gsm8k");
  const train = parseGsm8k(await readText(trainPath, "gsm8k"), trainPath);
  const shots = sampleIndices(train.length, 5, o.seed ?? 1234).map((i) => train[i]);
  const prefix = gsm8kPrefix(shots);
  const test = take(parseGsm8k(await readText(testPath, "gsm8k"), testPath), o.limit);
  const items = test.map((it): EvalItem => ({
    kind: "generate",
    id: it.id,
    request: gsm8kRequest(it, prefix),
    judge: (text) => {
      const strict = extractStrict(text), flexible = extractFlexible(text);
      return {
        metrics: {
          exact_match_strict: Number(exactMatch(strict, it.target)),
          exact_match_flexible: Number(exactMatch(flexible, it.target)),
        },
        prediction: JSON.stringify({ strict, flexible }),
        gold: it.target,
      };
    },
  }));
  return {
    name: "gsm8k",
    nShot: 5,
    split: "test",
    metrics: {
      exact_match_strict: { key: "exact_match_strict", aggregation: "mean" },
      exact_match_flexible: { key: "exact_match_flexible", aggregation: "mean" },
    },
    items,
  };
}

/**
 * Load a task's data and render its items.
 *
 * @param name the task.
 * @param options data folder, limit, seed, MMLU subjects.
 * @returns the prepared task.
 * @throws {DataError} for a malformed row (file:line and the reason), or an Error naming the
 *   paths looked for when the data is missing.
 */
export function prepareTask(name: TaskName, options: PrepareOptions): Promise<PreparedTask> {
  switch (name) {
    case "arc_challenge":
    case "arc_easy":
      return prepareArc(name, options);
    case "winogrande":
      return prepareWinogrande(options);
    case "lambada":
      return prepareLambada(options);
    case "mmlu":
      return prepareMmlu(options);
    case "gsm8k":
      return prepareGsm8k(options);
    case "skill_choice":
    case "skill_answer":
      return Promise.resolve(prepareSkillTask(name, {
        skill: options.skill,
        limit: options.limit,
        seed: options.seed,
        instruction: options.instruction,
      }));
  }
}
