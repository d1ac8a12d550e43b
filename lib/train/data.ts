/**
 * Training data as users bring it: jsonl rows in four layouts, validated with zod, rendered to
 * token sequences with a loss mask (loss only on the answer tokens).
 *
 * Row layouts:
 * - `{"text": …}` — plain text, loss on every token;
 * - `{"prompt": …, "response": …}` — loss on the response;
 * - `{"instruction": …, "input"?: …, "output": …}` — rendered as a User/Assistant exchange;
 * - `{"messages": [{"role": "user" | "assistant" | "system", "content": …}, …]}` — RWKV's
 *   `User: …\n\nAssistant: …\n\n` template, loss on every assistant turn.
 *
 * @module
 */
import { z } from "zod";
import { Rng } from "../util/rng.ts";

/** What the data layer needs from a tokenizer. */
export interface TextEncoder {
  encode(text: string): number[];
}

const TextRow = z.object({ text: z.string().min(1) }).strict();
const PromptRow = z.object({ prompt: z.string(), response: z.string().min(1) }).strict();
const InstructionRow = z.object({
  instruction: z.string().min(1),
  input: z.string().optional(),
  output: z.string().min(1),
}).strict();
const MessagesRow = z.object({
  messages: z.array(
    z.object({
      role: z.enum(["user", "assistant", "system"]),
      content: z.string(),
    }).strict(),
  ).min(1).refine((m) => m.some((x) => x.role === "assistant"), {
    message: "messages need at least one assistant turn (the loss is computed on those)",
  }),
}).strict();

/** One rendered row: segments of text, each marked as trained on (loss) or context only. */
export interface RenderedRow {
  segments: { text: string; loss: boolean }[];
  /** 1-based line number in the source */
  line: number;
}

/** A row that failed validation. */
export interface BadRow {
  line: number;
  reason: string;
}

/** Options for reading data. */
export const DataOptionsSchema = z.object({
  /** What to do with a malformed row: skip it (counted and reported) or fail. */
  onBadRow: z.enum(["skip", "fail"]).default("skip"),
  /** Longest sequence in tokens (inputs); longer ones are truncated, split or dropped. */
  ctx: z.number().int().min(2).default(512),
  overflow: z.enum(["truncate", "split", "drop"]).default("truncate"),
  /** Fraction (0–0.9) or count (≥ 1) of examples held out for validation. */
  valSplit: z.number().min(0).default(0),
  /** Seed of the shuffle before the validation split. */
  seed: z.number().int().default(0),
});
/** Data options (input form; every field optional). */
export type DataOptions = z.input<typeof DataOptionsSchema>;

/** The error thrown for bad data when `onBadRow` is "fail", or when no usable row remains. */
export class DataError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DataError";
  }
}

function describeZod(e: z.ZodError): string {
  return e.issues.map((i) => `${i.path.length ? i.path.join(".") + ": " : ""}${i.message}`)
    .join("; ");
}

/**
 * Render one parsed JSON value into segments, or explain why it is not a valid row.
 *
 * @returns the segments, or a string with the reason
 */
export function renderRow(value: unknown): RenderedRow["segments"] | string {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return "a row must be a JSON object";
  }
  const keys = Object.keys(value);
  if ("messages" in value) {
    const r = MessagesRow.safeParse(value);
    if (!r.success) return describeZod(r.error);
    const segs: RenderedRow["segments"] = [];
    for (const m of r.data.messages) {
      const name = m.role === "user" ? "User" : m.role === "assistant" ? "Assistant" : "System";
      if (m.role === "assistant") {
        segs.push({ text: `${name}:`, loss: false });
        segs.push({ text: ` ${m.content}\n\n`, loss: true });
      } else {
        segs.push({ text: `${name}: ${m.content}\n\n`, loss: false });
      }
    }
    return segs;
  }
  if ("instruction" in value) {
    const r = InstructionRow.safeParse(value);
    if (!r.success) return describeZod(r.error);
    const user = r.data.input ? `${r.data.instruction}\n\n${r.data.input}` : r.data.instruction;
    return [
      { text: `User: ${user}\n\nAssistant:`, loss: false },
      { text: ` ${r.data.output}\n\n`, loss: true },
    ];
  }
  if ("prompt" in value || "response" in value) {
    const r = PromptRow.safeParse(value);
    if (!r.success) return describeZod(r.error);
    return [{ text: r.data.prompt, loss: false }, { text: r.data.response, loss: true }];
  }
  if ("text" in value) {
    const r = TextRow.safeParse(value);
    if (!r.success) return describeZod(r.error);
    return [{ text: r.data.text, loss: true }];
  }
  return `unknown row layout with keys [${keys.join(", ")}]; expected {"text"}, ` +
    `{"prompt","response"}, {"instruction","input","output"} or {"messages":[…]}`;
}

/**
 * Parse jsonl text into rendered rows. Blank lines are ignored; a leading UTF-8 byte-order
 * mark is dropped.
 *
 * @param source a name for messages (the file path)
 * @param invalidUtf8 lines known to hold invalid UTF-8 (from {@link decodeJsonl}), bad rows
 * @throws {DataError} on the first bad row when `onBadRow` is "fail"
 */
export function parseJsonl(
  text: string,
  source = "data",
  onBadRow: "skip" | "fail" = "skip",
  invalidUtf8: ReadonlyMap<number, string> = new Map(),
): { rows: RenderedRow[]; bad: BadRow[] } {
  const rows: RenderedRow[] = [];
  const bad: BadRow[] = [];
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1); // a UTF-8 byte-order mark
  text.split("\n").forEach((raw, i) => {
    const line = i + 1;
    if (raw.trim() === "") return;
    let value: unknown;
    let reason: string | undefined = invalidUtf8.get(line);
    if (reason === undefined) {
      try {
        value = JSON.parse(raw);
      } catch (e) {
        reason = `not valid JSON (${(e as Error).message})`;
      }
    }
    if (reason === undefined) {
      const r = renderRow(value);
      if (typeof r === "string") reason = r;
      else rows.push({ segments: r, line });
    }
    if (reason !== undefined) {
      if (onBadRow === "fail") {
        throw new DataError(
          `${source}:${line}: ${reason}. Fix the row, or leave out --fail-on-bad-rows ` +
            `(onBadRow "skip", the default) to skip malformed rows with a count`,
        );
      }
      bad.push({ line, reason });
    }
  });
  return { rows, bad };
}

/**
 * Decode jsonl bytes as UTF-8 without silently replacing bad bytes: lines holding invalid
 * UTF-8 are reported by line number (they become bad rows), the rest decode as usual. A
 * leading byte-order mark is dropped by {@link parseJsonl}.
 *
 * @returns the text (bad bytes as U+FFFD) and, per 1-based line, why it is invalid
 */
export function decodeJsonl(bytes: Uint8Array): { text: string; invalid: Map<number, string> } {
  const invalid = new Map<number, string>();
  try {
    return { text: new TextDecoder("utf-8", { fatal: true }).decode(bytes), invalid };
  } catch {
    // fall through: find the lines with bad bytes
  }
  const strict = new TextDecoder("utf-8", { fatal: true });
  let start = 0, line = 1;
  while (start <= bytes.length) {
    let end = bytes.indexOf(0x0a, start);
    if (end < 0) end = bytes.length;
    const part = bytes.subarray(start, end);
    try {
      strict.decode(part);
    } catch {
      const at = firstBadUtf8(part);
      invalid.set(
        line,
        `invalid UTF-8 (byte 0x${part[at].toString(16).padStart(2, "0")} at byte ${at + 1} of ` +
          `the line); re-save the file as UTF-8`,
      );
    }
    start = end + 1;
    line++;
  }
  return { text: new TextDecoder().decode(bytes), invalid };
}

/** Index of the first byte that starts an invalid UTF-8 sequence (the line is known bad). */
function firstBadUtf8(b: Uint8Array): number {
  let lo = 0, hi = b.length; // the prefix [0, lo) can start valid UTF-8; [0, hi) cannot
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    try {
      new TextDecoder("utf-8", { fatal: true }).decode(b.subarray(0, mid), { stream: true });
      lo = mid;
    } catch {
      hi = mid;
    }
  }
  return lo;
}

/** One training sequence: token ids and, per token, whether predicting it counts in the loss. */
export interface Example {
  ids: number[];
  /** `loss[t] = 1` when token t is an answer token (predicted from tokens < t). */
  loss: Uint8Array;
  line: number;
}

/** Tokenise a rendered row; returns one or more examples of at most ctx + 1 tokens. */
export function tokenizeRow(
  row: RenderedRow,
  tok: TextEncoder,
  ctx: number,
  overflow: "truncate" | "split" | "drop",
): Example[] {
  const ids: number[] = [];
  const loss: number[] = [];
  for (const s of row.segments) {
    const t = tok.encode(s.text);
    // one element at a time: `ids.push(...t)` overflows the call stack past ~125k tokens
    for (let i = 0; i < t.length; i++) {
      ids.push(t[i]);
      loss.push(s.loss ? 1 : 0);
    }
  }
  const make = (a: number, b: number): Example => {
    const m = new Uint8Array(b - a);
    for (let i = a; i < b; i++) m[i - a] = loss[i];
    return { ids: ids.slice(a, b), loss: m, line: row.line };
  };
  if (ids.length <= ctx + 1) return [make(0, ids.length)];
  if (overflow === "drop") return [];
  if (overflow === "truncate") return [make(0, ctx + 1)];
  const out: Example[] = [];
  for (let a = 0; a < ids.length - 1; a += ctx) {
    out.push(make(a, Math.min(ids.length, a + ctx + 1)));
  }
  return out;
}

/** A dataset ready to train on. */
export interface Dataset {
  train: Example[];
  val: Example[];
  bad: BadRow[];
  /** Rows dropped for being too long (overflow "drop") or having no loss token. */
  dropped: number;
  source: string;
}

/**
 * Build a dataset from jsonl text: validate, render, tokenise, shuffle (seeded), split. Given
 * bytes, lines with invalid UTF-8 become bad rows naming the line (see {@link decodeJsonl}).
 *
 * @example
 * ```ts ignore
 * const ds = buildDataset(await Deno.readTextFile("data.jsonl"), tokenizer, { valSplit: 0.1 });
 * ```
 */
export function buildDataset(
  text: string | Uint8Array,
  tok: TextEncoder,
  options: DataOptions = {},
  source = "data",
): Dataset {
  const o = DataOptionsSchema.parse(options);
  const decoded = typeof text === "string"
    ? { text, invalid: new Map<number, string>() }
    : decodeJsonl(text);
  const { rows, bad } = parseJsonl(decoded.text, source, o.onBadRow, decoded.invalid);
  let dropped = 0;
  const examples: Example[] = [];
  for (const row of rows) {
    const ex = tokenizeRow(row, tok, o.ctx, o.overflow);
    if (ex.length === 0) dropped++;
    for (const e of ex) {
      if (e.ids.length < 2 || !e.loss.subarray(1).some((x) => x === 1)) dropped++;
      else examples.push(e);
    }
  }
  if (examples.length === 0) {
    throw new DataError(
      `${source}: no usable training example (${rows.length} valid rows, ${bad.length} malformed` +
        `${
          bad.length ? `, first at line ${bad[0].line}: ${bad[0].reason}` : ""
        }, ${dropped} dropped)`,
    );
  }
  new Rng(o.seed).shuffle(examples);
  const nVal = o.valSplit >= 1 ? Math.floor(o.valSplit) : Math.floor(examples.length * o.valSplit);
  if (nVal >= examples.length) {
    throw new DataError(
      `${source}: valSplit ${o.valSplit} leaves no training example out of ${examples.length}`,
    );
  }
  return { train: examples.slice(nVal), val: examples.slice(0, nVal), bad, dropped, source };
}

/** Read a jsonl file and build a dataset (see {@link buildDataset}). */
export async function loadDataset(
  path: string,
  tok: TextEncoder,
  options: DataOptions = {},
): Promise<Dataset> {
  let text: Uint8Array;
  try {
    text = await Deno.readFile(path);
  } catch (e) {
    throw new DataError(`cannot read data file ${path}: ${(e as Error).message}`);
  }
  return buildDataset(text, tok, options, path);
}

/** A padded batch: B rows of T inputs with next-token targets and a 0/1 loss mask. */
export interface Batch {
  B: number;
  T: number;
  /** (B, T) input ids, padded with 0 */
  tokens: number[][];
  /** (B, T) next-token targets */
  targets: number[][];
  /** (B, T) 1 where the target counts in the loss */
  mask: Uint8Array[];
  /** number of counted positions */
  count: number;
}

/** Pack examples into a padded batch (inputs ids[0..n−1), targets ids[1..n)). */
export function makeBatch(examples: Example[]): Batch {
  let T = 0;
  for (const e of examples) T = Math.max(T, e.ids.length - 1);
  let count = 0;
  const tokens: number[][] = [], targets: number[][] = [], mask: Uint8Array[] = [];
  for (const e of examples) {
    const n = e.ids.length - 1;
    const tk = new Array(T).fill(0), tg = new Array(T).fill(0), m = new Uint8Array(T);
    for (let t = 0; t < n; t++) {
      tk[t] = e.ids[t];
      tg[t] = e.ids[t + 1];
      m[t] = e.loss[t + 1];
      count += m[t];
    }
    tokens.push(tk);
    targets.push(tg);
    mask.push(m);
  }
  return { B: examples.length, T, tokens, targets, mask, count };
}
