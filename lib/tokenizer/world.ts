/**
 * The RWKV World tokenizer (docs/MATH.md §13): a vocabulary of Python str/bytes literals, encoded by
 * greedy longest match over the UTF-8 bytes of the text with a byte trie.
 *
 * Vocabulary line format: `<id> <Python str or bytes literal> <byte length>`. Inside a str
 * literal `\xNN` is the code point U+00NN (UTF-8 encoded, so two bytes when ≥ 0x80); inside a
 * `b'…'` literal it is one raw byte. Id 0 is end-of-text and has no bytes.
 *
 * @module
 */
import type { Tokenizer } from "./types.ts";
import { parseLine } from "./vocab_line.ts";

/** The end-of-text token id of the World vocabulary (decodes to nothing). */
export const END_OF_TEXT = 0;

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
