/**
 * The guide of guided test-time scaling (docs/MATH.md §5): anything that, given a prompt, writes a
 * reasoning continuation and says what it cost. Two implementations: a local RWKV-7 checkpoint
 * ({@link LocalGuide} in `local_guide.ts`) and an OpenAI-compatible HTTP endpoint
 * ({@link HttpGuide} in `http_guide.ts`).
 *
 * @module
 */

/** What a guide spent: generated tokens, requests (forwards or HTTP calls) and wall time. */
export interface GuideCost {
  /** Tokens the guide generated (its own tokenizer's count, or the endpoint's `usage`). */
  tokens: number;
  /** Requests made (HTTP attempts, retries included; one per continuation for a local guide). */
  requests: number;
  /** Wall time in milliseconds. */
  ms: number;
}

/** A zero cost. */
export function zeroCost(): GuideCost {
  return { tokens: 0, requests: 0, ms: 0 };
}

/** `a + b`, field by field. */
export function addCost(a: GuideCost, b: GuideCost): GuideCost {
  return { tokens: a.tokens + b.tokens, requests: a.requests + b.requests, ms: a.ms + b.ms };
}

/** The most likely next tokens at one position of a continuation (natural-log probabilities). */
export interface TopLogprobs {
  /** Token ids in the student's vocabulary (same order as `logprobs`). */
  ids: number[];
  logprobs: number[];
}

/** A guide's continuation of one prompt. */
export interface GuideOutput {
  /** The continuation text (without the prompt and the stop string). */
  text: string;
  /**
   * The continuation's token ids in the student's vocabulary, when the guide could give them
   * (same vocabulary); otherwise absent and the caller encodes `text` itself.
   */
  tokens?: number[];
  /**
   * Per position of `tokens`, the guide's top next-token log-probabilities (the distribution
   * each token was drawn from), when the vocabulary is shared and the guide offers them.
   */
  top?: TopLogprobs[];
  /** What this continuation cost. */
  cost: GuideCost;
}

/** Options of one {@link Guide.continue} call. */
export interface ContinueOptions {
  /** Most tokens to generate. */
  maxTokens?: number;
  /** Stop strings (not included in the text). */
  stop?: string[];
  /** Cancels the call. */
  signal?: AbortSignal;
}

/** The vocabulary a guide's token ids refer to: the tokenizer's name and size. */
export interface Vocabulary {
  name: string;
  size: number;
}

/** A guide: writes a reasoning continuation for a prompt and reports its cost. */
export interface Guide {
  /** For messages and reports: `local:<path>` or the endpoint URL. */
  readonly name: string;
  /**
   * The vocabulary of `tokens`/`top` in its outputs; undefined when it gives text only. A
   * guide constructed with the student's tokenizer reports that tokenizer's vocabulary.
   */
  readonly vocabulary?: Vocabulary;
  /** Running total over every call so far. */
  readonly cost: GuideCost;
  /** Continue `prompt`. */
  continue(prompt: string, options?: ContinueOptions): Promise<GuideOutput>;
  /** Free what the guide holds (GPU buffers); the guide is unusable afterwards. */
  close(): Promise<void>;
}

/** A guide failed: the message names the guide (endpoint) and the problem, never a secret. */
export class GuideError extends Error {
  constructor(readonly guide: string, message: string) {
    super(`guide ${guide} ${message}`);
    this.name = "GuideError";
  }
}
