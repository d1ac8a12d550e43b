/**
 * The byte-level tokenizer: token = byte value of the UTF-8 text, V = 256 (the tiny fixture
 * model, docs/MATH.md §13). There is no end-of-text token: byte 0 is an ordinary token here.
 *
 * @module
 */
import type { Tokenizer } from "./types.ts";

/**
 * Byte-level tokenizer (V = 256).
 *
 * @example
 * ```ts
 * import { ByteTokenizer } from "./bytes.ts";
 * const tok = new ByteTokenizer();
 * console.assert(tok.encode("hé").join() === "104,195,169");
 * console.assert(tok.decode([104, 195, 169]) === "hé");
 * ```
 */
export class ByteTokenizer implements Tokenizer {
  /** Always `"bytes"`. */
  readonly name = "bytes";
  /** Always 256. */
  readonly vocabSize = 256;
  readonly #encoder = new TextEncoder();
  readonly #decoder = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });

  /**
   * The UTF-8 bytes of `text` as token ids.
   *
   * @param text any string.
   * @returns one id per byte.
   * @example
   * ```ts
   * import { ByteTokenizer } from "./bytes.ts";
   * console.assert(new ByteTokenizer().encode("A")[0] === 65);
   * ```
   */
  encode(text: string): number[] {
    return Array.from(this.#encoder.encode(text));
  }

  /**
   * The bytes of a token sequence.
   *
   * @param ids integers in [0, 256).
   * @returns the bytes.
   * @throws {RangeError} on an id outside [0, 256).
   * @example
   * ```ts
   * import { ByteTokenizer } from "./bytes.ts";
   * console.assert(new ByteTokenizer().decodeBytes([255])[0] === 255);
   * ```
   */
  decodeBytes(ids: number[]): Uint8Array {
    const out = new Uint8Array(ids.length);
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!Number.isInteger(id) || id < 0 || id > 255) {
        throw new RangeError(`bytes tokenizer: token id ${id} at position ${i} is not in [0, 256)`);
      }
      out[i] = id;
    }
    return out;
  }

  /**
   * Text of a token sequence; invalid UTF-8 becomes U+FFFD.
   *
   * @param ids integers in [0, 256).
   * @returns the decoded text.
   * @example
   * ```ts
   * import { ByteTokenizer } from "./bytes.ts";
   * console.assert(new ByteTokenizer().decode([0xff]) === "\uFFFD");
   * ```
   */
  decode(ids: number[]): string {
    return this.#decoder.decode(this.decodeBytes(ids));
  }
}
