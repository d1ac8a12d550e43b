/**
 * Tokenizers: the common interface, loading by name or path, choosing the tokenizer for a
 * model, and a streaming decoder that never splits a UTF-8 character.
 *
 * @module
 */
import { ByteTokenizer } from "./bytes.ts";
import { loadWorldTokenizer } from "./world.ts";
import type { Tokenizer } from "./types.ts";

export { ByteTokenizer } from "./bytes.ts";
export type { Tokenizer } from "./types.ts";
export { END_OF_TEXT, loadWorldTokenizer, WorldTokenizer } from "./world.ts";
export { parsePythonLiteral } from "./vocab_line.ts";

/** The World vocabulary's file name, looked for beside a model first. */
export const WORLD_VOCAB_FILE = "rwkv_vocab_v20230424.txt";

/**
 * Load a tokenizer by name or vocabulary path.
 *
 * @param spec `"bytes"` for the byte-level tokenizer, otherwise a World vocabulary file path.
 * @returns the tokenizer.
 * @throws {Deno.errors.NotFound} naming the path when the vocabulary file is missing.
 * @example
 * ```ts
 * import { loadTokenizer } from "./mod.ts";
 * const tok = await loadTokenizer("bytes");
 * console.assert(tok.vocabSize === 256);
 * ```
 */
export async function loadTokenizer(spec: "bytes" | string): Promise<Tokenizer> {
  if (spec === "bytes") return new ByteTokenizer();
  return await loadWorldTokenizer(spec);
}

/** The folder part of a path (`"."` when there is none); `/` and backslash both separate. */
function dirname(path: string): string {
  const i = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  return i < 0 ? "." : i === 0 ? path.slice(0, 1) : path.slice(0, i);
}

/** `dir` and `name` joined with `/`. */
function join(dir: string, name: string): string {
  return /[\\/]$/.test(dir) ? dir + name : `${dir}/${name}`;
}

/** A vocabulary file beside `modelPath`: the World one first, else any `*vocab*.txt`. */
async function findVocabBeside(modelPath: string): Promise<string | null> {
  const dir = dirname(modelPath);
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (e.isFile || e.isSymlink) names.push(e.name);
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  if (names.includes(WORLD_VOCAB_FILE)) return join(dir, WORLD_VOCAB_FILE);
  const other = names.filter((n) => /vocab.*\.txt$/i.test(n)).sort()[0];
  return other === undefined ? null : join(dir, other);
}

/**
 * Choose the tokenizer for a model. Rules, in order: `flag` (`"bytes"` or a vocabulary path)
 * wins; a model with V = 256 is byte-level; otherwise `rwkv_vocab_v20230424.txt` (or any
 * `*vocab*.txt`) in the model's folder; otherwise an error saying to pass `--tokenizer`.
 *
 * @param modelPath the model file (its folder is searched).
 * @param modelVocabSize the model's V (rows of `emb.weight`).
 * @param flag the user's `--tokenizer` value, if any.
 * @returns the tokenizer.
 * @throws {Error} when no tokenizer is found, or when the tokenizer has more ids than the model.
 * @example
 * ```ts
 * import { resolveTokenizer } from "./mod.ts";
 * const tok = await resolveTokenizer("models/tiny.safetensors", 256);
 * console.assert(tok.name === "bytes");
 * ```
 */
export async function resolveTokenizer(
  modelPath: string,
  modelVocabSize: number,
  flag?: string,
): Promise<Tokenizer> {
  let tok: Tokenizer;
  if (flag !== undefined && flag !== "") tok = await loadTokenizer(flag);
  else if (modelVocabSize === 256) tok = new ByteTokenizer();
  else {
    const found = await findVocabBeside(modelPath);
    if (found === null) {
      throw new Error(
        `no tokenizer for ${modelPath} (vocabulary ${modelVocabSize}): found no ` +
          `${WORLD_VOCAB_FILE} or *vocab*.txt in ${dirname(modelPath)}. ` +
          `Pass --tokenizer VOCAB_FILE (or --tokenizer bytes for a byte-level model).`,
      );
    }
    tok = await loadTokenizer(found);
  }
  if (tok.vocabSize > modelVocabSize) {
    throw new Error(
      `tokenizer ${tok.name} has ${tok.vocabSize} ids but the model ${modelPath} has only ` +
        `${modelVocabSize}: pass the tokenizer the model was trained with (--tokenizer).`,
    );
  }
  return tok;
}

/**
 * Turns a stream of token ids into text chunks without splitting a multi-byte UTF-8
 * character: bytes of an incomplete trailing character wait for the next ids. Concatenating
 * every `push` result and the final `flush` equals `tokenizer.decode(allIds)`.
 *
 * @example
 * ```ts
 * import { ByteTokenizer, StreamDecoder } from "./mod.ts";
 * const dec = new StreamDecoder(new ByteTokenizer());
 * console.assert(dec.push([0xe4, 0xbd]) === ""); // first two bytes of "你"
 * console.assert(dec.push([0xa0]) === "你");
 * console.assert(dec.flush() === "");
 * ```
 */
export class StreamDecoder {
  readonly #tokenizer: Tokenizer;
  readonly #decoder = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
  #tail: Uint8Array = new Uint8Array(0);

  /**
   * A decoder with nothing pending.
   *
   * @param tokenizer the tokenizer whose ids will be pushed.
   */
  constructor(tokenizer: Tokenizer) {
    this.#tokenizer = tokenizer;
  }

  /** Bytes held back because they may start a character that later ids complete. */
  get pendingBytes(): number {
    return this.#tail.length;
  }

  /**
   * Add ids and return the text that is now complete.
   *
   * @param ids one id or several.
   * @returns the new text (possibly empty).
   * @example
   * ```ts
   * import { ByteTokenizer, StreamDecoder } from "./mod.ts";
   * console.assert(new StreamDecoder(new ByteTokenizer()).push(104) === "h");
   * ```
   */
  push(ids: number | number[]): string {
    const bytes = this.#tokenizer.decodeBytes(typeof ids === "number" ? [ids] : ids);
    let buf = bytes;
    if (this.#tail.length > 0) {
      buf = new Uint8Array(this.#tail.length + bytes.length);
      buf.set(this.#tail);
      buf.set(bytes, this.#tail.length);
    }
    const cut = completeLength(buf);
    this.#tail = buf.slice(cut);
    return cut === 0 ? "" : this.#decoder.decode(buf.subarray(0, cut));
  }

  /**
   * Release held bytes (as U+FFFD if they never became a character) and reset.
   *
   * @returns the remaining text.
   * @example
   * ```ts
   * import { ByteTokenizer, StreamDecoder } from "./mod.ts";
   * const dec = new StreamDecoder(new ByteTokenizer());
   * dec.push(0xe4);
   * console.assert(dec.flush() === "\uFFFD");
   * ```
   */
  flush(): string {
    const rest = this.#tail;
    this.#tail = new Uint8Array(0);
    return rest.length === 0 ? "" : this.#decoder.decode(rest);
  }
}

/**
 * Length of the prefix of `buf` that ends on a character boundary: everything except a trailing
 * lead byte followed by fewer continuation bytes than it needs. Cutting before a lead byte
 * never changes how the prefix decodes, since a lead byte always starts a new sequence.
 */
function completeLength(buf: Uint8Array): number {
  const n = buf.length;
  for (let k = n - 1; k >= 0 && k >= n - 3; k--) {
    const b = buf[k];
    if ((b & 0xc0) === 0x80) continue; // continuation byte: look further back
    const need = b >= 0xf0 && b <= 0xf4
      ? 4
      : b >= 0xe0 && b < 0xf0
      ? 3
      : b >= 0xc2 && b < 0xe0
      ? 2
      : 1;
    return n - k < need ? k : n;
  }
  return n;
}
