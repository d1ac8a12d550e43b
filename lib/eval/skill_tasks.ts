/**
 * Harness versions of the synthetic skills (lib/train/synthetic.ts), which the embedded
 * default model can actually do, scored by the protocol of docs/MATH.md §9:
 *
 * - `skill_choice`: multiple choice. Context `{input}=` (without the skill's instruction line
 *   unless `instruction`), four continuations `{candidate}\n`: the answer and three distractors
 *   (the input copied, the answer reversed, the answer with two neighbours swapped or a letter
 *   changed; always distinct), in a seeded order. Metrics acc and acc_norm.
 * - `skill_answer`: generation. Greedy from `{input}=` until "\n"; exact match of the answer.
 *
 * Items are drawn from `Rng(2_000_000 + seed)`, a stream disjoint from the tuning data's.
 *
 * @module
 */
import { makeItem, type Skill, SKILLS } from "../train/synthetic.ts";
import { Rng } from "../util/rng.ts";
import { argmax, normPrediction } from "./metrics.ts";
import type { EvalItem, PreparedTask } from "./task_types.ts";

/** The skill task names. */
export const SKILL_TASKS = ["skill_choice", "skill_answer"] as const;

/** One of {@link SKILL_TASKS}. */
export type SkillTaskName = typeof SKILL_TASKS[number];

/** Options of {@link prepareSkillTask}. */
export interface SkillTaskOptions {
  /** The skill (default reverse). */
  skill?: Skill;
  /** Items (default 100). */
  limit?: number;
  /** Seeds the items and the choice order (default 0). */
  seed?: number;
  /** Show the instruction line `{skill}\n` before the input (default false). */
  instruction?: boolean;
}

const LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789";

/** Three distinct wrong answers for `answer` to `input`. */
export function distractors(input: string, answer: string, rng: Rng): string[] {
  const out: string[] = [];
  const add = (s: string) => {
    if (s && s !== answer && !out.includes(s) && out.length < 3) out.push(s);
  };
  add(input);
  add([...answer].reverse().join(""));
  if (answer.length >= 2) {
    const i = rng.int(answer.length - 1);
    add(answer.slice(0, i) + answer[i + 1] + answer[i] + answer.slice(i + 2));
  }
  for (let tries = 0; out.length < 3 && tries < 100; tries++) {
    const i = rng.int(answer.length || 1);
    add(answer.slice(0, i) + LETTERS[rng.int(LETTERS.length)] + answer.slice(i + 1));
  }
  if (out.length < 3) throw new Error(`skill task: no 3 distractors for answer "${answer}"`);
  return out;
}

/**
 * Render a skill task.
 *
 * @throws RangeError for an unknown skill or a non-positive limit
 */
export function prepareSkillTask(name: SkillTaskName, o: SkillTaskOptions = {}): PreparedTask {
  const skill = o.skill ?? "reverse", n = o.limit ?? 100, seed = o.seed ?? 0;
  if (!SKILLS.includes(skill)) {
    throw new RangeError(`unknown skill ${JSON.stringify(skill)}; known: ${SKILLS.join(", ")}`);
  }
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`limit must be ≥ 1, got ${n}`);
  const rng = new Rng(2_000_000 + seed);
  const head = o.instruction ? `${skill}\n` : "";
  const items: EvalItem[] = Array.from({ length: n }, (_, i): EvalItem => {
    const it = makeItem(skill, rng);
    const id = `${skill}-${seed}-${i}`;
    if (name === "skill_answer") {
      return {
        kind: "generate",
        id,
        request: { prefix: "", context: `${head}${it.input}=`, stop: ["\n"] },
        judge: (text) => ({
          metrics: { exact_match: Number(text === it.answer) },
          prediction: text,
          gold: it.answer,
        }),
      };
    }
    const wrong = distractors(it.input, it.answer, rng);
    const gold = rng.int(4);
    const cands = [...wrong.slice(0, gold), it.answer, ...wrong.slice(gold)];
    const continuations = cands.map((c) => `${c}\n`);
    return {
      kind: "loglik",
      id,
      request: { prefix: "", contexts: cands.map(() => `${head}${it.input}=`), continuations },
      judge: (rows) => {
        const ll = rows.map((r) => r.loglik);
        const pred = argmax(ll), predNorm = normPrediction(ll, continuations);
        return {
          metrics: { acc: Number(pred === gold), acc_norm: Number(predNorm === gold) },
          prediction: pred,
          gold,
        };
      },
    };
  });
  return {
    name,
    nShot: 0,
    split: `synthetic:${skill}${o.instruction ? "+instruction" : ""}`,
    metrics: name === "skill_answer"
      ? { exact_match: { key: "exact_match", aggregation: "mean" } }
      : {
        acc: { key: "acc", aggregation: "mean" },
        acc_norm: { key: "acc_norm", aggregation: "mean" },
      },
    items,
  };
}
