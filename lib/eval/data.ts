/**
 * Loading evaluation data: JSON-lines files validated row by row with zod (errors name the file,
 * the line and the field), in two layouts per task — llm-foundry's (the shared fixtures) and the
 * original field names users download (Hugging Face / AI2 / the WinoGrande release).
 *
 * @module
 */
import { z } from "zod";

/** A malformed data file: the message names the file, the line and what was expected. */
export class DataError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DataError";
  }
}

/** A multiple-choice item scored by the continuation (ARC): one context, several choices. */
export interface ChoiceItem {
  /** `file:line` of the row. */
  id: string;
  /** The question text (without "Question: "). */
  question: string;
  /** Choice texts. */
  choices: string[];
  /** Index of the right choice. */
  gold: number;
}

/** A WinoGrande item: one context per option, one shared continuation. */
export interface WinograndeItem {
  id: string;
  /** The sentence up to the blank, filled with each option. */
  contexts: string[];
  /** The rest of the sentence after the blank, trimmed (scored after a " "). */
  continuation: string;
  gold: number;
}

/** A LAMBADA item: the passage without its last word, and the last word. */
export interface LambadaItem {
  id: string;
  context: string;
  /** The last word, without the separating space. */
  target: string;
}

/** A GSM8K problem with its worked answer. */
export interface Gsm8kItem {
  id: string;
  question: string;
  /** The full worked answer, ending in `#### <number>`. */
  answer: string;
  /** The number after `####`. */
  target: string;
}

/** Format zod issues as `field: message; …`. */
export function formatIssues(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.length ? i.path.join(".") : "row"}: ${i.message}`)
    .join("; ");
}

/**
 * Parse JSON-lines text with `schema`; blank lines are skipped.
 *
 * @param text the file contents.
 * @param source the file name used in messages and in item ids.
 * @param schema validates (and may transform) each row.
 * @returns the parsed rows with their ids (`<file name>:line`).
 * @throws {DataError} naming `source:line` for invalid JSON or a row the schema rejects.
 * @example
 * ```ts
 * import { parseJsonl } from "./data.ts";
 * import { z } from "zod";
 * const rows = parseJsonl('{"a":1}\n\n{"a":2}\n', "x.jsonl", z.object({ a: z.number() }));
 * console.assert(rows[1].id === "x.jsonl:3" && rows[1].row.a === 2);
 * ```
 */
export function parseJsonl<T>(
  text: string,
  source: string,
  schema: z.ZodType<T>,
): { id: string; row: T }[] {
  const out: { id: string; row: T }[] = [];
  const name = source.replace(/^.*[\\/]/, "");
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (line === "") return;
    const where = `${source}:${i + 1}`;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (e) {
      throw new DataError(`${where}: not valid JSON (${(e as Error).message})`);
    }
    const r = schema.safeParse(value);
    if (!r.success) throw new DataError(`${where}: ${formatIssues(r.error)}`);
    out.push({ id: `${name}:${i + 1}`, row: r.data });
  });
  if (out.length === 0) throw new DataError(`${source}: no rows (is it the right file?)`);
  return out;
}

/** Read a file, turning "not found" into a message that says what to pass. */
export async function readText(path: string, what: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new DataError(`${what}: ${path} not found (pass --data-dir with the data folder)`);
    }
    throw e;
  }
}

/** One of several layouts; the message lists what each expected. */
function layouts<T>(what: string, ...schemas: [string, z.ZodType<T>][]): z.ZodType<T> {
  return z.unknown().transform((v, ctx) => {
    const errs: string[] = [];
    for (const [name, s] of schemas) {
      const r = s.safeParse(v);
      if (r.success) return r.data;
      errs.push(`as ${name}: ${formatIssues(r.error)}`);
    }
    ctx.addIssue({ code: "custom", message: `not a ${what} row (${errs.join(" | ")})` });
    return z.NEVER;
  }) as unknown as z.ZodType<T>;
}

type ArcRow = Omit<ChoiceItem, "id">;

const arcFoundry = z.object({
  query: z.string(),
  choices: z.array(z.string()).min(2),
  gold: z.number().int().nonnegative(),
}).refine((r) => r.gold < r.choices.length, { message: "gold is beyond the last choice" })
  .transform((r): ArcRow => ({
    question: r.query.replace(/^Question: /, ""),
    choices: r.choices,
    gold: r.gold,
  }));

const labelled = (question: string, texts: string[], labels: string[], key: string) => {
  const gold = labels.indexOf(key);
  return { question, choices: texts, gold };
};

const arcHf = z.object({
  question: z.string(),
  choices: z.object({ text: z.array(z.string()).min(2), label: z.array(z.string()).min(2) }),
  answerKey: z.string(),
}).refine((r) => r.choices.label.includes(r.answerKey), {
  message: "answerKey is not one of choices.label",
}).transform((r): ArcRow => labelled(r.question, r.choices.text, r.choices.label, r.answerKey));

const arcAi2 = z.object({
  question: z.object({
    stem: z.string(),
    choices: z.array(z.object({ text: z.string(), label: z.string() })).min(2),
  }),
  answerKey: z.string(),
}).refine((r) => r.question.choices.some((c) => c.label === r.answerKey), {
  message: "answerKey is not one of question.choices[].label",
}).transform((r): ArcRow =>
  labelled(
    r.question.stem,
    r.question.choices.map((c) => c.text),
    r.question.choices.map((c) => c.label),
    r.answerKey,
  )
);

/** Parse ARC (Challenge or Easy) rows: llm-foundry, Hugging Face or AI2 layout. */
export function parseArc(text: string, source: string): ChoiceItem[] {
  const schema = layouts<ArcRow>(
    "ARC",
    ["llm-foundry {query, choices[], gold}", arcFoundry],
    ["Hugging Face {question, choices{text,label}, answerKey}", arcHf],
    ["AI2 {question{stem, choices[]}, answerKey}", arcAi2],
  );
  return parseJsonl(text, source, schema).map(({ id, row }) => ({ id, ...row }));
}

type WinoRow = Omit<WinograndeItem, "id">;

const winoFoundry = z.object({
  context_options: z.array(z.string()).length(2),
  continuation: z.string(),
  gold: z.number().int().min(0).max(1),
}).transform((r): WinoRow => ({
  contexts: r.context_options,
  continuation: r.continuation.trim(),
  gold: r.gold,
}));

const winoOriginal = z.object({
  sentence: z.string().refine((s) => s.includes("_"), "sentence has no blank '_'"),
  option1: z.string(),
  option2: z.string(),
  answer: z.union([z.literal("1"), z.literal("2"), z.literal(1), z.literal(2)], {
    error: 'answer must be "1" or "2" (unlabelled test rows cannot be scored)',
  }),
}).transform((r): WinoRow => {
  const idx = r.sentence.indexOf("_");
  return {
    contexts: [r.sentence.slice(0, idx) + r.option1, r.sentence.slice(0, idx) + r.option2],
    continuation: r.sentence.slice(idx + 1).trim(),
    gold: Number(r.answer) - 1,
  };
});

/** Parse WinoGrande rows: llm-foundry or the original `sentence/option1/option2/answer`. */
export function parseWinogrande(text: string, source: string): WinograndeItem[] {
  const schema = layouts<WinoRow>(
    "WinoGrande",
    ["llm-foundry {context_options, continuation, gold}", winoFoundry],
    ["original {sentence, option1, option2, answer}", winoOriginal],
  );
  return parseJsonl(text, source, schema).map(({ id, row }) => ({ id, ...row }));
}

type LambadaRow = Omit<LambadaItem, "id">;

const lambadaFoundry = z.object({ context: z.string(), continuation: z.string().min(1) })
  .transform((r): LambadaRow => ({ context: r.context, target: r.continuation.trim() }));

const lambadaOriginal = z.object({
  text: z.string().refine((s) => s.includes(" "), "text has no space to split the last word off"),
}).transform((r): LambadaRow => {
  const k = r.text.lastIndexOf(" ");
  return { context: r.text.slice(0, k), target: r.text.slice(k + 1) };
});

/** Parse LAMBADA rows: llm-foundry `{context, continuation}` or the original `{text}`. */
export function parseLambada(text: string, source: string): LambadaItem[] {
  const schema = layouts<LambadaRow>(
    "LAMBADA",
    ["llm-foundry {context, continuation}", lambadaFoundry],
    ["original {text}", lambadaOriginal],
  );
  return parseJsonl(text, source, schema).map(({ id, row }) => ({ id, ...row }));
}

const gsmRow = z.object({
  question: z.string().min(1),
  answer: z.string().refine((a) => /#### /.test(a), 'answer has no "#### <number>" line'),
});

/** Parse GSM8K rows (`{question, answer}` with the answer ending in `#### <number>`). */
export function parseGsm8k(text: string, source: string): Gsm8kItem[] {
  return parseJsonl(text, source, gsmRow).map(({ id, row }) => ({
    id,
    question: row.question,
    answer: row.answer,
    target: row.answer.slice(row.answer.lastIndexOf("#### ") + 5).trim(),
  }));
}
