/**
 * Prompt rendering, exactly as lm-evaluation-harness builds it (docs/MATH.md §9). Every multiple-choice
 * task becomes a {@link LoglikRequest}: a few-shot prefix shared by all items (its state is
 * cached), one context per row and one continuation per row; only continuation tokens are
 * scored. Generation tasks (GSM8K) become a {@link GenerationRequest}.
 *
 * @module
 */
import type { ChoiceItem, Gsm8kItem, LambadaItem, WinograndeItem } from "./data.ts";
import { MMLU_LETTERS, type MmluItem } from "./mmlu.ts";

/** What to score for one item: row r is `prefix + contexts[r]` → `continuations[r]`. */
export interface LoglikRequest {
  /** Text shared by every item of the task (few-shot header and shots; may be ""). */
  prefix: string;
  /** One context per row, following the prefix. */
  contexts: string[];
  /** One continuation per row (the scored text, usually starting with " "). */
  continuations: string[];
}

/** What to generate for one item: greedy from `prefix + context` until a stop string. */
export interface GenerationRequest {
  prefix: string;
  context: string;
  /** Generation stops at the first of these (not included). */
  stop: string[];
}

/** ARC: `Question: {q}\nAnswer:` then `" " + choice` for each choice. */
export function arcRequest(item: ChoiceItem): LoglikRequest {
  const context = `Question: ${item.question}\nAnswer:`;
  return {
    prefix: "",
    contexts: item.choices.map(() => context),
    continuations: item.choices.map((c) => ` ${c}`),
  };
}

/**
 * WinoGrande, partial scoring: the sentence up to the blank filled with each option is a
 * context, the rest of the sentence (after a " ") is the one continuation both are scored on.
 */
export function winograndeRequest(item: WinograndeItem): LoglikRequest {
  return {
    prefix: "",
    contexts: item.contexts,
    continuations: item.contexts.map(() => ` ${item.continuation}`),
  };
}

/** LAMBADA: the passage without its last word, then `" " + last word`. */
export function lambadaRequest(item: LambadaItem): LoglikRequest {
  return { prefix: "", contexts: [item.context], continuations: [` ${item.target}`] };
}

/** The MMLU header for a subject (underscores become spaces). */
export function mmluHeader(subject: string): string {
  return `The following are multiple choice questions (with answers) about ${
    subject.replaceAll("_", " ")
  }.\n\n`;
}

/** One MMLU question: `{q}\nA. …\nB. …\nC. …\nD. …\nAnswer:` (question trimmed). */
export function mmluQuestion(item: MmluItem): string {
  const lines = item.choices.map((c, i) => `${MMLU_LETTERS[i]}. ${c}`);
  return `${item.question.trim()}\n${lines.join("\n")}\nAnswer:`;
}

/** The MMLU few-shot prefix: header, then each shot with its answer, each followed by "\n\n". */
export function mmluPrefix(subject: string, shots: MmluItem[]): string {
  return mmluHeader(subject) +
    shots.map((s) => `${mmluQuestion(s)} ${MMLU_LETTERS[s.gold]}\n\n`).join("");
}

/** MMLU: the subject's prefix, the question, and the continuations " A" … " D". */
export function mmluRequest(item: MmluItem, prefix: string): LoglikRequest {
  const q = mmluQuestion(item);
  return {
    prefix,
    contexts: item.choices.map(() => q),
    continuations: item.choices.map((_, i) => ` ${MMLU_LETTERS[i]}`),
  };
}

/** The GSM8K stop strings. */
export const GSM8K_STOP = ["\n\n", "Question:"];

/** The GSM8K few-shot prefix: `Question: {q}\nAnswer: {answer}` per shot, each + "\n\n". */
export function gsm8kPrefix(shots: Gsm8kItem[]): string {
  return shots.map((s) => `Question: ${s.question}\nAnswer: ${s.answer}\n\n`).join("");
}

/** GSM8K: greedy continuation of `Question: {q}\nAnswer:` after the shots. */
export function gsm8kRequest(item: Gsm8kItem, prefix: string): GenerationRequest {
  return { prefix, context: `Question: ${item.question}\nAnswer:`, stop: GSM8K_STOP };
}
