/**
 * MMLU data: the original release's CSV folders (`dev/`, `val/`, `test/`, one
 * `<subject>_<split>.csv` per subject, rows `question,A,B,C,D,answer` without a header).
 *
 * @module
 */
import { z } from "zod";
import { parseCsv } from "./csv.ts";
import { DataError, formatIssues, readText } from "./data.ts";

/** One MMLU question. */
export interface MmluItem {
  /** `file:line` of the row. */
  id: string;
  /** Subject with underscores (`high_school_biology`). */
  subject: string;
  question: string;
  /** The four answers A–D. */
  choices: string[];
  /** 0…3 for A…D. */
  gold: number;
}

/** The MMLU answer letters. */
export const MMLU_LETTERS = ["A", "B", "C", "D"] as const;

const mmluRow = z.tuple([
  z.string(),
  z.string(),
  z.string(),
  z.string(),
  z.string(),
  z.string().trim().refine((a) => /^[ABCD]$/.test(a), "answer must be one of A, B, C, D"),
], { error: "expected 6 fields: question,A,B,C,D,answer" });

/**
 * Parse one subject's CSV.
 *
 * @param text the file contents.
 * @param source the file name (for ids and messages).
 * @param subject the subject name.
 * @throws {DataError} naming `source:line` for a row without 6 fields or a bad answer letter.
 * @example
 * ```ts
 * import { parseMmluCsv } from "./mmlu.ts";
 * const [item] = parseMmluCsv('"What, if?",1,2,3,4,C\n', "x_dev.csv", "x");
 * console.assert(item.gold === 2 && item.question === "What, if?");
 * ```
 */
export function parseMmluCsv(text: string, source: string, subject: string): MmluItem[] {
  return parseCsv(text, source).map(({ fields, line }) => {
    const r = mmluRow.safeParse(fields);
    if (!r.success) {
      throw new DataError(
        `${source}:${line}: ${formatIssues(r.error)} (got ${fields.length} fields)`,
      );
    }
    const [question, a, b, c, d, ans] = r.data;
    return {
      id: `${source.replace(/^.*[\\/]/, "")}:${line}`,
      subject,
      question,
      choices: [a, b, c, d],
      gold: MMLU_LETTERS.indexOf(ans as "A"),
    };
  });
}

/**
 * Load every subject of one split from an MMLU folder (`<dir>/<split>/<subject>_<split>.csv`),
 * subjects in alphabetical order.
 *
 * @param dir the MMLU folder (holding `dev/`, `test/`, …).
 * @param split `"dev"`, `"val"` or `"test"`.
 * @param subjects keep only these subjects (all when omitted).
 * @returns items grouped by subject.
 * @throws {DataError} when the folder or a requested subject is missing, or a row is malformed.
 */
export async function loadMmluSplit(
  dir: string,
  split: string,
  subjects?: string[],
): Promise<Map<string, MmluItem[]>> {
  const folder = `${dir}/${split}`;
  const found: string[] = [];
  try {
    for await (const e of Deno.readDir(folder)) {
      const m = e.name.match(new RegExp(`^(.+)_${split}\\.csv$`));
      if (m) found.push(m[1]);
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new DataError(
        `MMLU: ${folder} not found (expected the release's ${split}/<subject>_${split}.csv files)`,
      );
    }
    throw e;
  }
  found.sort();
  const want = subjects ?? found;
  const missing = want.filter((s) => !found.includes(s));
  if (missing.length) {
    throw new DataError(
      `MMLU: no ${split} file for subject(s) ${missing.join(", ")} in ${folder} ` +
        `(known: ${found.slice(0, 5).join(", ")}, …)`,
    );
  }
  const out = new Map<string, MmluItem[]>();
  for (const s of want) {
    const path = `${folder}/${s}_${split}.csv`;
    out.set(s, parseMmluCsv(await readText(path, "MMLU"), path, s));
  }
  return out;
}
