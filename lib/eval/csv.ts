/**
 * A small RFC 4180 CSV parser: comma-separated fields, `"quoted"` fields that may hold commas,
 * newlines and doubled quotes (`""`), `\n` or `\r\n` row ends. Each row keeps the 1-based line
 * it starts on, so loaders can point at the bad row.
 *
 * @module
 */

/** One parsed row and the line of the file it starts on (1-based). */
export interface CsvRow {
  /** The row's fields, unquoted. */
  fields: string[];
  /** 1-based line number where the row starts. */
  line: number;
}

/** A syntax error in a CSV file, naming the file and line. */
export class CsvError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CsvError";
  }
}

/**
 * Parse CSV text into rows. Empty lines are skipped. A quote inside an unquoted field is kept
 * as a literal character (as Python's `csv` module does); text after a closing quote other
 * than a comma or a row end is an error.
 *
 * @param text the whole file.
 * @param source the file name used in error messages.
 * @returns the rows with their starting line numbers.
 * @throws {CsvError} for an unterminated quoted field or text after a closing quote.
 * @example
 * ```ts
 * import { parseCsv } from "./csv.ts";
 * const rows = parseCsv('a,"b, ""c""\nd",e\n');
 * console.assert(rows[0].fields[1] === 'b, "c"\nd' && rows[0].fields.length === 3);
 * ```
 */
export function parseCsv(text: string, source = "<csv>"): CsvRow[] {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1); // byte-order mark
  const rows: CsvRow[] = [];
  let fields: string[] = [];
  let field = "";
  let line = 1, rowLine = 1;
  let i = 0;
  let rowHasContent = false;
  const endField = () => {
    fields.push(field);
    field = "";
  };
  const endRow = () => {
    endField();
    if (rowHasContent) rows.push({ fields, line: rowLine });
    fields = [];
    rowHasContent = false;
  };
  while (i < text.length) {
    const ch = text[i];
    if (ch === '"' && field === "" && !inFieldText(text, i)) {
      rowHasContent = true;
      const q = readQuoted(text, i, line, source);
      field = q.value;
      i = q.end;
      line = q.line;
      continue;
    }
    if (ch === ",") {
      rowHasContent = true;
      endField();
      i++;
    } else if (ch === "\r" && text[i + 1] === "\n") {
      i++;
    } else if (ch === "\n") {
      endRow();
      line++;
      rowLine = line;
      i++;
    } else {
      rowHasContent = true;
      field += ch;
      i++;
    }
  }
  if (rowHasContent || field !== "") endRow();
  return rows;
}

/**
 * The quoted field opening at `text[i]`: its unquoted value, the index after the closing quote
 * and the line reached (a quoted field may hold newlines).
 */
function readQuoted(
  text: string,
  i: number,
  line: number,
  source: string,
): { value: string; end: number; line: number } {
  const startLine = line;
  let value = "";
  i++;
  while (true) {
    if (i >= text.length) {
      throw new CsvError(
        `${source}:${startLine}: quoted field never closed (a '"' is missing; ` +
          `quotes inside a quoted field are written "")`,
      );
    }
    const c = text[i];
    if (c === '"') {
      if (text[i + 1] === '"') {
        value += '"';
        i += 2;
        continue;
      }
      i++;
      break;
    }
    if (c === "\n") line++;
    value += c;
    i++;
  }
  const next = text[i];
  if (next !== undefined && next !== "," && next !== "\n" && next !== "\r") {
    throw new CsvError(
      `${source}:${line}: unexpected ${JSON.stringify(next)} after a closing quote ` +
        `(expected a comma or the end of the row)`,
    );
  }
  return { value, end: i, line };
}

/** True when position i is inside an unquoted field's text (a quote there is literal). */
function inFieldText(text: string, i: number): boolean {
  const prev = text[i - 1];
  return prev !== undefined && prev !== "," && prev !== "\n" && prev !== "\r";
}
