/**
 * Model-agnostic streaming generation: any {@linkcode LanguageModel} (CPU reference, GPU model,
 * a test fake) plus a {@linkcode Tokenizer}, sampling with {@linkcode sampleToken}.
 *
 * @module
 */
import { END_OF_TEXT, StreamDecoder } from "../tokenizer/mod.ts";
import type { Tokenizer } from "../tokenizer/mod.ts";
import { randomSeed, Rng } from "../util/rng.ts";
import { parseSamplingOptions, recordToken, sampleToken } from "./sampler.ts";
import type { SamplingOptionsInput } from "./sampler.ts";

/** A language model session that carries its own recurrent state. */
export interface LanguageModel {
  /** Number of logits per step (V). */
  readonly vocabSize: number;
  /** Feed tokens from the session's current state; resolve to the logits after the last one. */
  feed(tokens: number[]): Promise<Float32Array>;
}

/**
 * Options of {@linkcode generate}: the sampling options plus
 * - `stopAtEndOfText`: stop when token 0 (end-of-text) is sampled; default true unless the
 *   tokenizer is the byte-level one (where byte 0 is ordinary);
 * - `signal`: an `AbortSignal`; when it fires, generation stops after the step in flight with
 *   `stopReason: "abort"`;
 * - `rng`: a generator to draw from instead of `new Rng(seed)` (to continue a stream).
 */
export type GenerateOptions = SamplingOptionsInput & {
  /** Stop at token 0; default true unless the tokenizer is `"bytes"`. */
  stopAtEndOfText?: boolean;
  /** Stops generation after the step in flight, with `stopReason: "abort"`. */
  signal?: AbortSignal;
  /** Draw from this generator instead of `new Rng(seed)`. */
  rng?: Rng;
};

/** Why generation ended. */
export type StopReason = "max_tokens" | "stop" | "eos" | "abort";

/** One streamed token and the text it completed (may be empty, see {@linkcode generate}). */
export interface GeneratedChunk {
  /** The generated token id. */
  token: number;
  /** The text released with it. */
  text: string;
}

/** What {@linkcode generate} returns when it ends. */
export interface GenerationResult {
  /** The generated text, without the prompt and without the stop string. */
  text: string;
  /** Every generated token (those that spell the stop string included; end-of-text not). */
  tokens: number[];
  /** Number of prompt tokens fed (0 when nothing was generated: maxTokens 0 or aborted). */
  promptTokens: number;
  /** Why it ended. */
  stopReason: StopReason;
  /** Wall time of the whole call, prompt included. */
  elapsedMs: number;
  /** Generated tokens per second, prompt processing excluded. */
  tokensPerSecond: number;
  /** The seed used (the given one, or a random one to repeat the run with). */
  seed: number;
}

/**
 * Holds back text that could be the start of a stop string and detects stop strings split
 * across tokens (shared by {@linkcode generate} and `gpuGenerate`, so both stop identically).
 */
export class StopMatcher {
  readonly #stops: string[];
  #all = "";
  #emitted = 0;
  constructor(stops: string[]) {
    this.#stops = stops;
  }
  /** The text released so far. */
  get text(): string {
    return this.#all.slice(0, this.#emitted);
  }
  /** Whether some text is held back as a possible stop-string prefix. */
  get holding(): boolean {
    return this.#emitted < this.#all.length;
  }
  /** Add decoded text; returns the text now safe to release and whether a stop string ended. */
  push(chunk: string): { emit: string; stopped: boolean } {
    const before = this.#all.length;
    const all = this.#all += chunk;
    let at = -1;
    for (const s of this.#stops) {
      const k = all.indexOf(s, Math.max(0, before - s.length + 1));
      if (k >= 0 && (at < 0 || k < at)) at = k;
    }
    if (at >= 0) return { emit: this.#release(Math.max(at, this.#emitted)), stopped: true };
    let hold = 0;
    for (const s of this.#stops) {
      for (let h = Math.min(s.length - 1, all.length - this.#emitted); h > hold; h--) {
        if (all.endsWith(s.slice(0, h))) {
          hold = h;
          break;
        }
      }
    }
    return { emit: this.#release(all.length - hold), stopped: false };
  }
  /** Release everything held. */
  flush(): string {
    return this.#release(this.#all.length);
  }
  #release(end: number): string {
    const out = this.#all.slice(this.#emitted, end);
    this.#emitted = end;
    return out;
  }
}

/**
 * The text side of a generation, shared by {@linkcode generate} and `gpuGenerate`: accepted
 * tokens become released chunks; stop strings end it; a chunk whose text may still grow (an
 * unfinished UTF-8 sequence, a possible stop-string prefix) is held until the next token.
 */
export class TokenStream {
  /** Every accepted token. */
  readonly tokens: number[] = [];
  /** Why the generation ended (so far: "max_tokens"). */
  reason: StopReason = "max_tokens";
  readonly #decoder: StreamDecoder;
  readonly #stops: StopMatcher;
  #held: GeneratedChunk | null = null;

  constructor(tokenizer: Tokenizer, stop: string[], readonly maxTokens: number) {
    this.#decoder = new StreamDecoder(tokenizer);
    this.#stops = new StopMatcher(stop);
  }

  /** Accept a generated token: the chunks to yield now; `done` when a stop string or `maxTokens` ends it. */
  push(token: number): { chunks: GeneratedChunk[]; done: boolean } {
    this.tokens.push(token);
    const r = this.#stops.push(this.#decoder.push(token));
    const chunks = this.#held ? [this.#held] : [];
    this.#held = null;
    if (r.stopped) {
      this.reason = "stop";
      chunks.push({ token, text: r.emit });
      return { chunks, done: true };
    }
    if (this.tokens.length >= this.maxTokens) {
      chunks.push({ token, text: r.emit + this.#finalText() });
      return { chunks, done: true };
    }
    const chunk = { token, text: r.emit };
    if (this.#decoder.pendingBytes > 0 || this.#stops.holding) this.#held = chunk;
    else chunks.push(chunk);
    return { chunks, done: false };
  }

  /** End at end-of-text or an abort: the held chunk with the flushed tail. */
  end(reason: "eos" | "abort"): GeneratedChunk[] {
    this.reason = reason;
    const tail = this.#finalText();
    if (this.#held) return [{ token: this.#held.token, text: this.#held.text + tail }];
    return tail !== "" ? [{ token: this.tokens.at(-1) ?? END_OF_TEXT, text: tail }] : [];
  }

  /** The result, timed from `t0` (call start) and `tGen` (first generated token). */
  result(t0: number, tGen: number, promptTokens: number, seed: number): GenerationResult {
    const end = performance.now();
    const genSeconds = (end - tGen) / 1000;
    return {
      text: this.#stops.text,
      tokens: this.tokens,
      promptTokens,
      stopReason: this.reason,
      elapsedMs: end - t0,
      tokensPerSecond: genSeconds > 0 ? this.tokens.length / genSeconds : 0,
      seed,
    };
  }

  #finalText(): string {
    const r = this.#stops.push(this.#decoder.flush());
    if (r.stopped) this.reason = "stop";
    return r.stopped ? r.emit : r.emit + this.#stops.flush();
  }
}

/**
 * Throw a RangeError naming the problem when the prompt is empty or holds an id outside [0, V).
 */
export function checkPrompt(ids: number[], V: number, tokenizer: Tokenizer): void {
  if (ids.length === 0) {
    throw new RangeError(
      `the prompt encodes to no tokens with ${tokenizer.name}: pass some text, or the ids [0] ` +
        `(end-of-text) to start a World model from nothing`,
    );
  }
  for (const id of ids) {
    if (!Number.isInteger(id) || id < 0 || id >= V) {
      throw new RangeError(
        `prompt token ${id} is outside the model's vocabulary [0, ${V}): ` +
          `is ${tokenizer.name} the tokenizer this model was trained with?`,
      );
    }
  }
}

/**
 * Generate text, streaming one `{ token, text }` per generated token. Concatenating the
 * streamed `text`s gives exactly `result.text`. A token's `text` is empty while it holds the
 * first bytes of a multi-byte character or text that may start a stop string; that text comes
 * with a later token. Such a token is yielded only when the next token is known, so the text
 * held back when generation ends is attached to the last token instead of being lost.
 *
 * Stops at `maxTokens`, at the first stop string (even one split across tokens; it is not
 * included in the text), at end-of-text (token 0, see `stopAtEndOfText`), or on abort. The
 * last generated token is not fed to the model; feed it yourself to continue the session.
 * Logits beyond the tokenizer's vocabulary (the World model's padding ids 65530…65535) are
 * never sampled.
 *
 * @param model the model session (its state advances as the prompt and tokens are fed).
 * @param tokenizer the tokenizer matching the model.
 * @param prompt the prompt text, or its token ids.
 * @param options sampling and stopping options ({@linkcode GenerateOptions}).
 * @returns an async generator of chunks whose return value is the {@linkcode GenerationResult}.
 * @throws {RangeError} for invalid options, an empty prompt or prompt ids beyond the model's V.
 * @example
 * ```ts
 * import { generate } from "./generate.ts";
 * import { ByteTokenizer } from "../tokenizer/mod.ts";
 * // A toy model that always predicts "a".
 * const model = {
 *   vocabSize: 256,
 *   feed: () => Promise.resolve(new Float32Array(256).fill(-10).fill(10, 97, 98)),
 * };
 * let out = "";
 * for await (const c of generate(model, new ByteTokenizer(), "x", { maxTokens: 3, temperature: 0 })) {
 *   out += c.text;
 * }
 * console.assert(out === "aaa");
 * ```
 */
export async function* generate(
  model: LanguageModel,
  tokenizer: Tokenizer,
  prompt: string | number[],
  options: GenerateOptions = {},
): AsyncGenerator<GeneratedChunk, GenerationResult> {
  const { stopAtEndOfText = tokenizer.name !== "bytes", signal, rng: givenRng, ...rest } = options;
  const opts = parseSamplingOptions(rest);
  const seed = opts.seed ?? randomSeed();
  const rng = givenRng ?? new Rng(seed);
  const promptIds = typeof prompt === "string" ? tokenizer.encode(prompt) : prompt;
  checkPrompt(promptIds, model.vocabSize, tokenizer);
  const limit = Math.min(model.vocabSize, tokenizer.vocabSize);

  const t0 = performance.now();
  let tGen = t0, fed = 0;
  const counts = new Map<number, number>();
  const out = new TokenStream(tokenizer, opts.stop, opts.maxTokens);
  let end: "eos" | "abort" | null = signal?.aborted ? "abort" : null;
  if (!end && opts.maxTokens > 0) {
    let logits = await model.feed(promptIds);
    fed = promptIds.length;
    tGen = performance.now();
    while (true) {
      if (signal?.aborted) {
        end = "abort";
        break;
      }
      const view = logits.length > limit ? logits.subarray(0, limit) : logits;
      const token = sampleToken(view, opts, rng, counts);
      if (stopAtEndOfText && token === END_OF_TEXT) {
        end = "eos";
        break;
      }
      recordToken(counts, token, opts.penaltyDecay);
      const { chunks, done } = out.push(token);
      yield* chunks;
      if (done) break;
      logits = await model.feed([token]);
    }
  }
  if (end) yield* out.end(end);
  return out.result(t0, tGen, fed, seed);
}

/**
 * Run {@linkcode generate} to the end and return its result.
 *
 * @param model the model session.
 * @param tokenizer the tokenizer matching the model.
 * @param prompt the prompt text, or its token ids.
 * @param options {@linkcode GenerateOptions} plus `onChunk`, called for every streamed chunk.
 * @returns the {@linkcode GenerationResult}.
 * @example
 * ```ts
 * import { generateText } from "./generate.ts";
 * import { ByteTokenizer } from "../tokenizer/mod.ts";
 * const model = {
 *   vocabSize: 256,
 *   feed: () => Promise.resolve(new Float32Array(256).fill(-10).fill(10, 98, 99)),
 * };
 * const r = await generateText(model, new ByteTokenizer(), "x", { maxTokens: 2, temperature: 0 });
 * console.assert(r.text === "bb" && r.stopReason === "max_tokens");
 * ```
 */
export async function generateText(
  model: LanguageModel,
  tokenizer: Tokenizer,
  prompt: string | number[],
  options: GenerateOptions & { onChunk?: (chunk: GeneratedChunk) => void } = {},
): Promise<GenerationResult> {
  const { onChunk, ...rest } = options;
  return await drainGeneration(generate(model, tokenizer, prompt, rest), onChunk);
}

/** Run a generation stream to its end, handing each chunk to `onChunk`; its result. */
export async function drainGeneration(
  it: AsyncGenerator<GeneratedChunk, GenerationResult>,
  onChunk?: (chunk: GeneratedChunk) => void,
): Promise<GenerationResult> {
  while (true) {
    const r = await it.next();
    if (r.done) return r.value;
    onChunk?.(r.value);
  }
}
