/**
 * The tokenizer interface every tokenizer implements (its own module, so the implementations
 * and the loader in `mod.ts` do not import each other).
 *
 * @module
 */

/** What generation, evaluation and training need from a tokenizer. */
export interface Tokenizer {
  /** A short name for messages: `"bytes"` or `"world(<vocab path>)"`. */
  readonly name: string;
  /** Number of token ids the tokenizer can produce (largest id + 1). */
  readonly vocabSize: number;
  /** Token ids of a text. */
  encode(text: string): number[];
  /** Text of token ids (invalid UTF-8 becomes U+FFFD). */
  decode(ids: number[]): string;
  /** Raw bytes of token ids. */
  decodeBytes(ids: number[]): Uint8Array;
}
