/**
 * One line of the World vocabulary file (docs/MATH.md §13): `<id> <Python str or bytes literal> <byte
 * length>`, and the Python literal decoder it rests on. Inside a str literal `\xNN` is the code
 * point U+00NN (UTF-8 encoded, so two bytes when ≥ 0x80); inside a `b'…'` literal it is one raw
 * byte.
 *
 * @module
 */

const SIMPLE_ESCAPES: Record<number, number> = {
  0x5c: 0x5c, // \\
  0x27: 0x27, // \'
  0x22: 0x22, // \"
  0x6e: 0x0a, // \n
  0x74: 0x09, // \t
  0x72: 0x0d, // \r
  0x61: 0x07, // \a
  0x62: 0x08, // \b
  0x66: 0x0c, // \f
  0x76: 0x0b, // \v
};
const X = 0x78, U_LOWER = 0x75, U_UPPER = 0x55, BACKSLASH = 0x5c;

/** Write the UTF-8 encoding of code point `cp` at `out[o]`; returns the new offset. */
function putUtf8(out: Uint8Array, o: number, cp: number): number {
  if (cp < 0x80) out[o++] = cp;
  else if (cp < 0x800) {
    out[o++] = 0xc0 | (cp >> 6);
    out[o++] = 0x80 | (cp & 0x3f);
  } else if (cp < 0x10000) {
    out[o++] = 0xe0 | (cp >> 12);
    out[o++] = 0x80 | ((cp >> 6) & 0x3f);
    out[o++] = 0x80 | (cp & 0x3f);
  } else {
    out[o++] = 0xf0 | (cp >> 18);
    out[o++] = 0x80 | ((cp >> 12) & 0x3f);
    out[o++] = 0x80 | ((cp >> 6) & 0x3f);
    out[o++] = 0x80 | (cp & 0x3f);
  }
  return o;
}

/** Value of `n` hex digits at `src[i]`, or -1. */
function hexAt(src: Uint8Array, i: number, n: number): number {
  let v = 0;
  for (let k = 0; k < n; k++) {
    const c = src[i + k] | 0x20; // lower-case letters; digits unchanged
    const d = c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x61 && c <= 0x66 ? c - 0x57 : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

/**
 * Decode the Python literal `src[start, end)` (UTF-8 bytes, quotes included) into `out` at
 * offset `o`. Raw characters of a str literal are already UTF-8 and are copied; escapes are
 * decoded (`\xNN` as U+00NN in a str, as one raw byte in a bytes literal).
 * Returns the new offset, or throws a SyntaxError message without location.
 */
function decodeLiteral(src: Uint8Array, start: number, end: number, out: Uint8Array, o: number) {
  const isBytes = src[start] === 0x62; // b
  const q = isBytes ? start + 1 : start;
  const quote = src[q];
  if ((quote !== 0x27 && quote !== 0x22) || end - q < 2 || src[end - 1] !== quote) {
    throw new SyntaxError("expected a quoted Python str or bytes literal");
  }
  const stop = end - 1;
  for (let i = q + 1; i < stop; i++) {
    const c = src[i];
    if (c !== BACKSLASH) {
      if (isBytes && c > 0x7f) throw new SyntaxError("non-ASCII character in a bytes literal");
      out[o++] = c;
      continue;
    }
    const e = src[++i];
    const n = e === X ? 2 : isBytes ? 0 : e === U_LOWER ? 4 : e === U_UPPER ? 8 : 0;
    if (n > 0) {
      const v = i + n < stop ? hexAt(src, i + 1, n) : -1;
      if (v < 0 || v > 0x10ffff) {
        throw new SyntaxError(`bad \\${String.fromCharCode(e)} escape`);
      }
      o = isBytes ? (out[o] = v, o + 1) : putUtf8(out, o, v);
      i += n;
    } else if (i < stop && SIMPLE_ESCAPES[e] !== undefined) {
      out[o++] = SIMPLE_ESCAPES[e];
    } else {
      throw new SyntaxError(`unsupported escape \\${i < stop ? String.fromCharCode(e) : ""}`);
    }
  }
  return o;
}

/**
 * The bytes of one Python str or bytes literal as it appears in the vocabulary file.
 *
 * @param lit the literal, quotes included: `'a'`, `"'"`, `b'\xe4'`, `'\u2002'`.
 * @returns the bytes (UTF-8 of the string for str literals, raw bytes for bytes literals).
 * @throws {SyntaxError} on an unknown or truncated escape, or a missing quote.
 * @example
 * ```ts
 * import { parsePythonLiteral } from "./vocab_line.ts";
 * console.assert(parsePythonLiteral("'\\x80'").length === 2); // str: U+0080
 * console.assert(parsePythonLiteral("b'\\x80'").length === 1); // bytes: 0x80
 * ```
 */
export function parsePythonLiteral(lit: string): Uint8Array {
  const src = new TextEncoder().encode(lit);
  const out = new Uint8Array(src.length);
  try {
    return out.slice(0, decodeLiteral(src, 0, src.length, out, 0));
  } catch (e) {
    throw new SyntaxError(`${(e as Error).message} in ${lit}`);
  }
}

/** Parse one non-empty line `src[p, eol)` into `store` at `o`; returns the id and new end. */
export function parseLine(
  src: Uint8Array,
  p: number,
  eol: number,
  store: Uint8Array,
  o: number,
  where: string,
): { id: number; end: number } {
  const a = src.indexOf(0x20, p);
  const b = src.lastIndexOf(0x20, eol - 1);
  const line = () =>
    JSON.stringify(new TextDecoder().decode(src.subarray(p, Math.min(eol, p + 80))));
  const id = a > p && a < eol ? digits(src, p, a) : -1;
  const declared = b > a + 1 ? digits(src, b + 1, eol) : -1;
  if (id < 1 || declared < 0) {
    throw new SyntaxError(
      `${where}: expected "<id> <python literal> <byte length>" with id ≥ 1, got ${line()}`,
    );
  }
  let end: number;
  try {
    end = decodeLiteral(src, a + 1, b, store, o);
  } catch (e) {
    throw new SyntaxError(`${where}: ${(e as Error).message} in ${line()}`);
  }
  if (end - o !== declared) {
    throw new SyntaxError(
      `${where}: token ${id} has ${end - o} bytes but the line declares ${declared}: ${line()}`,
    );
  }
  return { id, end };
}

/** The non-negative decimal integer `src[i, j)`, or -1. */
function digits(src: Uint8Array, i: number, j: number): number {
  if (j <= i || j - i > 9) return -1;
  let v = 0;
  for (let k = i; k < j; k++) {
    const d = src[k] - 0x30;
    if (d < 0 || d > 9) return -1;
    v = v * 10 + d;
  }
  return v;
}
