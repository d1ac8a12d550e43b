/**
 * The RWKV World tokenizer (SPEC §4): a vocabulary of Python str/bytes literals, encoded by
 * greedy longest match over the UTF-8 bytes of the text with a byte trie.
 *
 * Vocabulary line format: `<id> <Python str or bytes literal> <byte length>`. Inside a str
 * literal `\xNN` is the code point U+00NN (UTF-8 encoded, so two bytes when ≥ 0x80); inside a
 * `b'…'` literal it is one raw byte. Id 0 is end-of-text and has no bytes.
 *
 * @module
 */
import type { Tokenizer } from "./types.ts";

/** The end-of-text token id of the World vocabulary (decodes to nothing). */
export const END_OF_TEXT = 0;

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
 * import { parsePythonLiteral } from "./world.ts";
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

/**
 * Open-addressing hash map from non-negative integer keys (< 2^31) to non-negative values,
 * sized for at most `capacity` entries: about 10× faster to build than a `Map` for the trie.
 */
class EdgeTable {
  readonly #keys: Int32Array;
  readonly #values: Int32Array;
  readonly #mask: number;
  readonly #shift: number;

  constructor(capacity: number) {
    let size = 1024, bits = 10;
    while (size < capacity * 2) size *= 2, bits++;
    this.#shift = 32 - bits;
    this.#keys = new Int32Array(size).fill(-1);
    this.#values = new Int32Array(size);
    this.#mask = size - 1;
  }

  /** The value stored for `key`, or -1. */
  get(key: number): number {
    const keys = this.#keys;
    let h = Math.imul(key, 0x9e3779b1) >>> this.#shift;
    while (true) {
      const k = keys[h];
      if (k === key) return this.#values[h];
      if (k < 0) return -1;
      h = (h + 1) & this.#mask;
    }
  }

  /** Store `value` for a key that is not yet present. */
  set(key: number, value: number): void {
    let h = Math.imul(key, 0x9e3779b1) >>> this.#shift;
    while (this.#keys[h] >= 0) h = (h + 1) & this.#mask;
    this.#keys[h] = key;
    this.#values[h] = value;
  }
}

/**
 * The RWKV World tokenizer. Build it with {@linkcode WorldTokenizer.fromVocab} (vocabulary
 * text) or {@linkcode loadWorldTokenizer} (file path).
 *
 * @example
 * ```ts
 * import { WorldTokenizer } from "./world.ts";
 * const tok = WorldTokenizer.fromVocab("1 'a' 1\n2 'b' 1\n3 'ab' 2\n");
 * console.assert(tok.encode("aba").join() === "3,1");
 * console.assert(tok.decode([3, 1]) === "aba");
 * ```
 */
export class WorldTokenizer implements Tokenizer {
  /** `"world"` plus the vocabulary's source, for messages. */
  readonly name: string;
  /** Largest token id + 1 (65530 for rwkv_vocab_v20230424.txt; models use V = 65536). */
  readonly vocabSize: number;
  /** Bytes of all tokens, back to back; token `id` is `#store[#start[id], #start[id] + #len[id])`. */
  readonly #store: Uint8Array;
  readonly #start: Int32Array;
  readonly #len: Int32Array;
  /** Trie edges: key `node * 256 + byte` → child node. Node 0 is the root. */
  readonly #edges: EdgeTable;
  /** Token id ending at each node, or -1. */
  readonly #nodeToken: Int32Array;
  readonly #encoder = new TextEncoder();
  readonly #decoder = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });

  private constructor(name: string, store: Uint8Array, start: Int32Array, len: Int32Array) {
    this.name = name;
    this.vocabSize = start.length;
    this.#store = store;
    this.#start = start;
    this.#len = len;
    this.#edges = new EdgeTable(store.length + 1);
    const nodeToken = new Int32Array(store.length + 1).fill(-1);
    let nodes = 1;
    for (let id = 0; id < start.length; id++) {
      if (len[id] === 0) continue;
      let node = 0;
      for (let j = start[id], end = start[id] + len[id]; j < end; j++) {
        const key = node * 256 + store[j];
        let child = this.#edges.get(key);
        if (child < 0) {
          child = nodes++;
          this.#edges.set(key, child);
        }
        node = child;
      }
      nodeToken[node] = id;
    }
    this.#nodeToken = nodeToken.slice(0, nodes);
  }

  /**
   * Parse a vocabulary file and build the trie.
   *
   * @param vocab the whole file (text or its UTF-8 bytes), one `<id> <literal> <byte length>`
   *   per line.
   * @param source a name for messages (the file path).
   * @returns the tokenizer.
   * @throws {SyntaxError} naming the line when a line is malformed, its declared byte length
   *   differs from the literal's, or an id repeats.
   * @example
   * ```ts
   * import { WorldTokenizer } from "./world.ts";
   * const tok = WorldTokenizer.fromVocab("1 '\\x80' 2\n2 b'\\x80' 1\n");
   * console.assert(tok.decodeBytes([1]).length === 2 && tok.decodeBytes([2]).length === 1);
   * ```
   */
  static fromVocab(vocab: string | Uint8Array, source = "vocabulary"): WorldTokenizer {
    const src = typeof vocab === "string" ? new TextEncoder().encode(vocab) : vocab;
    const store = new Uint8Array(src.length); // escapes only shrink: bytes ≤ file size
    const start: number[] = [0], len: number[] = [0];
    let o = 0, lineNo = 0;
    for (let p = 0; p < src.length;) {
      let eol = src.indexOf(0x0a, p);
      if (eol < 0) eol = src.length;
      const next = eol + 1;
      if (eol > p && src[eol - 1] === 0x0d) eol--;
      lineNo++;
      if (eol > p) {
        const where = `${source}:${lineNo}`;
        const entry = parseLine(src, p, eol, store, o, where);
        if (start[entry.id] !== undefined) {
          throw new SyntaxError(`${where}: token id ${entry.id} repeats`);
        }
        start[entry.id] = o;
        len[entry.id] = entry.end - o;
        o = entry.end;
      }
      p = next;
    }
    const n = start.length;
    const startArr = new Int32Array(n), lenArr = new Int32Array(n);
    for (let id = 0; id < n; id++) {
      startArr[id] = start[id] ?? 0;
      lenArr[id] = len[id] ?? 0;
    }
    return new WorldTokenizer(`world(${source})`, store.slice(0, o), startArr, lenArr);
  }

  /**
   * Token ids of `text`: greedy longest match over its UTF-8 bytes.
   *
   * @param text any string (lone surrogates become U+FFFD, as in UTF-8 encoding).
   * @returns the ids.
   * @throws {RangeError} when a byte is not covered by the vocabulary (never with the full
   *   World vocabulary, which has all 256 single bytes).
   * @example
   * ```ts
   * import { WorldTokenizer } from "./world.ts";
   * const tok = WorldTokenizer.fromVocab("1 'a' 1\n2 'aa' 2\n");
   * console.assert(tok.encode("aaa").join() === "2,1");
   * ```
   */
  encode(text: string): number[] {
    const bytes = this.#encoder.encode(text);
    const edges = this.#edges;
    const nodeToken = this.#nodeToken;
    const ids: number[] = [];
    let i = 0;
    while (i < bytes.length) {
      let node = 0, best = -1, bestEnd = i;
      for (let j = i; j < bytes.length; j++) {
        const child = edges.get(node * 256 + bytes[j]);
        if (child < 0) break;
        node = child;
        if (nodeToken[node] >= 0) {
          best = nodeToken[node];
          bestEnd = j + 1;
        }
      }
      if (best < 0) {
        throw new RangeError(
          `${this.name}: byte 0x${bytes[i].toString(16)} at offset ${i} has no token`,
        );
      }
      ids.push(best);
      i = bestEnd;
    }
    return ids;
  }

  /**
   * The bytes of a token sequence (end-of-text, id 0, contributes none).
   *
   * @param ids token ids in [0, vocabSize).
   * @returns the concatenated bytes.
   * @throws {RangeError} on an id outside the vocabulary.
   * @example
   * ```ts
   * import { WorldTokenizer } from "./world.ts";
   * const tok = WorldTokenizer.fromVocab("1 b'\\xe4' 1\n");
   * console.assert(tok.decodeBytes([0, 1])[0] === 0xe4);
   * ```
   */
  decodeBytes(ids: number[]): Uint8Array {
    let n = 0;
    for (const id of ids) n += this.#lengthOf(id);
    const out = new Uint8Array(n);
    let o = 0;
    for (const id of ids) {
      const s = this.#start[id], l = this.#len[id];
      out.set(this.#store.subarray(s, s + l), o);
      o += l;
    }
    return out;
  }

  /**
   * Text of a token sequence; invalid UTF-8 becomes U+FFFD (Python's `errors="replace"`).
   *
   * @param ids token ids.
   * @returns the decoded text.
   * @example
   * ```ts
   * import { WorldTokenizer } from "./world.ts";
   * const tok = WorldTokenizer.fromVocab("1 b'\\xff' 1\n2 'x' 1\n");
   * console.assert(tok.decode([2, 1]) === "x\uFFFD");
   * ```
   */
  decode(ids: number[]): string {
    return this.#decoder.decode(this.decodeBytes(ids));
  }

  #lengthOf(id: number): number {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new RangeError(
        `${this.name}: token id ${id} is outside the vocabulary [0, ${this.vocabSize})`,
      );
    }
    return this.#len[id];
  }
}

/** Parse one non-empty line `src[p, eol)` into `store` at `o`; returns the id and new end. */
function parseLine(
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

/**
 * Load the World tokenizer from a vocabulary file (`rwkv_vocab_v20230424.txt`).
 *
 * @param path the vocabulary file.
 * @returns the tokenizer.
 * @throws {Deno.errors.NotFound} with a message naming the path when the file is missing, and
 *   {@linkcode WorldTokenizer.fromVocab}'s errors for a malformed file.
 * @example
 * ```ts ignore
 * import { loadWorldTokenizer } from "./world.ts";
 * const tok = await loadWorldTokenizer("rwkv_vocab_v20230424.txt");
 * console.log(tok.encode("Hello"));
 * ```
 */
export async function loadWorldTokenizer(path: string): Promise<WorldTokenizer> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Deno.errors.NotFound(
        `tokenizer vocabulary file not found: ${path} (expected a World vocabulary such as ` +
          `rwkv_vocab_v20230424.txt, or "bytes" for the byte-level tokenizer)`,
      );
    }
    throw e;
  }
  return WorldTokenizer.fromVocab(bytes, path);
}
