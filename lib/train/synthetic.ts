/**
 * The synthetic multi-skill corpus the embedded default model is pretrained on.
 *
 * Each item is an instruction line followed by `input=answer`:
 *
 *     reverse
 *     kdfe=efdk
 *
 * The demo state-tunes the model to perform one skill *without* its instruction line: the tuned
 * state replaces the prompt.
 *
 * @module
 */
import { Rng } from "../util/rng.ts";

/** The skills of the corpus. */
export const SKILLS = ["copy", "reverse", "sort", "add", "recall"] as const;
/** One skill name. */
export type Skill = typeof SKILLS[number];

const LETTERS = "abcdefghijklmnopqrstuvwxyz";

function letters(rng: Rng, min: number, max: number): string {
  const n = min + rng.int(max - min + 1);
  let s = "";
  for (let i = 0; i < n; i++) s += LETTERS[rng.int(LETTERS.length)];
  return s;
}

/** One task instance: the input and the expected answer. */
export interface SkillItem {
  skill: Skill;
  input: string;
  answer: string;
}

/** Draw one instance of `skill`. */
export function makeItem(skill: Skill, rng: Rng): SkillItem {
  switch (skill) {
    case "copy": {
      const s = letters(rng, 3, 6);
      return { skill, input: s, answer: s };
    }
    case "reverse": {
      const s = letters(rng, 3, 6);
      return { skill, input: s, answer: [...s].reverse().join("") };
    }
    case "sort": {
      const s = letters(rng, 3, 6);
      return { skill, input: s, answer: [...s].sort().join("") };
    }
    case "add": {
      const a = rng.int(50), b = rng.int(50);
      return { skill, input: `${a}+${b}`, answer: String(a + b) };
    }
    case "recall": {
      const n = 2 + rng.int(3);
      const keys = [...LETTERS].sort(() => rng.next() - 0.5).slice(0, n);
      const vals = keys.map(() => String(rng.int(10)));
      const q = rng.int(n);
      return {
        skill,
        input: keys.map((k, i) => k + vals[i]).join("") + "?" + keys[q],
        answer: vals[q],
      };
    }
  }
}

/** The text of an item with its instruction line (the pretraining form). */
export function renderWithInstruction(item: SkillItem): string {
  return `${item.skill}\n${item.input}=${item.answer}\n`;
}

/**
 * The pretraining corpus as jsonl `{"text"}` rows, one item per row, skills drawn uniformly.
 *
 * @param n number of items
 * @param seed corpus seed (the corpus is reproduced from it, never committed)
 */
export function pretrainCorpus(n: number, seed: number): string {
  const rng = new Rng(seed);
  const rows: string[] = [];
  for (let i = 0; i < n; i++) {
    const item = makeItem(SKILLS[rng.int(SKILLS.length)], rng);
    rows.push(JSON.stringify({ text: renderWithInstruction(item) }));
  }
  return rows.join("\n") + "\n";
}

/**
 * Items of one skill for state tuning or evaluation, as `{"prompt","response"}` jsonl rows.
 *
 * @param withInstruction include the instruction line in the prompt (false for the demo: the
 *   tuned state has to stand in for it)
 */
export function skillRows(
  skill: Skill,
  n: number,
  seed: number,
  withInstruction = false,
): { prompt: string; response: string }[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => {
    const item = makeItem(skill, rng);
    return {
      prompt: `${withInstruction ? `${skill}\n` : ""}${item.input}=`,
      response: `${item.answer}\n`,
    };
  });
}
