/**
 * Streaming generation with sampling on the GPU: `burst` steps of (sample → forward) are recorded
 * into one submit and their tokens read back with one readback, instead of one CPU sync per
 * token (each costs ≥ ~11 ms in Deno, which caps token-by-token generation near 90 tokens/s).
 * Same chunks, result and stop handling as {@linkcode generate} (stop strings, end-of-text,
 * `maxTokens`, `AbortSignal`); the draws come from `shaders/sample.wgsl` with a counter-based
 * RNG keyed by (seed, step), so they do not depend on the burst size.
 *
 * State after the call (as with `generate`): the prompt and every generated token except the
 * last one have been fed (on abort, every emitted token). A burst runs ahead of the CPU, so
 * when a stop condition appears mid-burst the GPU has already fed tokens that must be
 * discarded. Choice: every burst first copies the state aside on the GPU (cheap: one copy per
 * burst, no sync); after a mid-burst stop the copy is restored and the kept tokens are fed
 * again one at a time, exactly as the burst fed them, so the final state is the same bits for
 * every burst size. The last burst before `maxTokens` does not feed its last token at all.
 *
 * @module
 */
import { z } from "zod";
import { createStorage, readU32, uploadStorage } from "../gpu/buffers.ts";
import { Recorder } from "../gpu/recorder.ts";
import {
  SAMPLE_ERR_ALL_BANNED,
  SAMPLE_ERR_NONFINITE,
  SampleKernel,
  type SampleSettings,
} from "../kernels/sample.ts";
import type { GpuModel } from "../model/gpu_model.ts";
import { GpuState } from "../model/gpu_state.ts";
import type { RwkvState } from "../model/types.ts";
import { END_OF_TEXT, type Tokenizer } from "../tokenizer/mod.ts";
import { randomSeed } from "../util/rng.ts";
import { checkPrompt, drainGeneration, TokenStream } from "./generate.ts";
import type { GeneratedChunk, GenerationResult } from "./generate.ts";
import { parseSamplingOptions, type SamplingOptionsInput } from "./sampler.ts";

/** Longest prompt chunk fed in one forward (bounds the workspace, as `GpuModel.session`). */
const PROMPT_CHUNK = 512;

/** Options of {@linkcode gpuGenerate} beyond the sampling options. */
export interface GpuGenerateExtras {
  /** Stop at token 0 (end-of-text); default true unless the tokenizer is `"bytes"`. */
  stopAtEndOfText?: boolean;
  /** Stops generation at the next token processed, with `stopReason: "abort"`. */
  signal?: AbortSignal;
  /** Generation steps per submit (and per readback), 1…1024; default 16. */
  burst?: number;
  /** Start from this state (B = 1) and advance it in place; default a fresh one, freed after. */
  state?: GpuState;
  /** Or start a fresh state from these values (e.g. a tuned S0; shapes checked on upload). */
  initialState?: RwkvState;
}

/** Options of {@linkcode gpuGenerate}: sampling options plus {@link GpuGenerateExtras}. */
export type GpuGenerateOptions = SamplingOptionsInput & GpuGenerateExtras;

const ExtrasSchema = z.object({
  stopAtEndOfText: z.boolean({ error: "stopAtEndOfText must be true or false" }).optional(),
  signal: z.instanceof(AbortSignal, { error: "signal must be an AbortSignal" }).optional(),
  burst: z.number({ error: (i) => `burst must be a number, got ${JSON.stringify(i.input)}` })
    .refine((v) => Number.isInteger(v) && v >= 1 && v <= 1024, {
      error: (i) => `burst must be an integer in [1, 1024], got ${i.input}`,
    }).default(16),
  state: z.instanceof(GpuState, { error: "state must be a GpuState (model.createState(1))" })
    .refine((s) => s.B === 1, {
      error: (i) => `state holds ${(i.input as GpuState).B} sequences; gpuGenerate needs B = 1`,
    })
    .optional(),
});

/** The GPU side of one generation: buffers, state snapshot, bursts. */
class GpuRun {
  readonly #bufs: GPUBuffer[] = [];
  readonly #snap: [GPUBuffer, GPUBuffer][] = [];
  readonly ring: GPUBuffer;
  readonly logits: GPUBuffer;
  readonly probs: GPUBuffer;
  readonly counts: GPUBuffer;

  constructor(
    readonly model: GpuModel,
    readonly kernel: SampleKernel,
    readonly state: GpuState,
    readonly ownsState: boolean,
    readonly settings: SampleSettings & { limit: number },
    burst: number,
  ) {
    const gpu = model.gpu, V = model.config.vocabSize;
    const make = (label: string, bytes: number) => {
      const b = createStorage(gpu, `gpuGenerate.${label}`, bytes);
      this.#bufs.push(b);
      return b;
    };
    this.ring = make("tokens", burst * 4);
    this.logits = make("logits", V * 4);
    this.probs = make("probs", V * 4);
    this.counts = make("counts", V * 4);
    const lifted = model.lifted ? state.liftedFor(model.lifted) : undefined;
    for (const b of [state.att, state.wkv, state.ffn, ...(lifted ? [lifted.buffer] : [])]) {
      this.#snap.push([b, make(`snapshot(${b.label})`, b.size)]);
    }
  }

  /** Feed the prompt; its last logits go to `logits` (waits for the GPU: one sync). */
  async prefill(ids: number[]): Promise<void> {
    const buf = uploadStorage(this.model.gpu, "gpuGenerate.prompt", Uint32Array.from(ids));
    const rec = new Recorder(this.model.gpu, "gpuGenerate.prefill");
    for (let i = 0; i < ids.length; i += PROMPT_CHUNK) {
      const T = Math.min(PROMPT_CHUNK, ids.length - i), last = i + T >= ids.length;
      this.model.recordForward(rec, {
        B: 1,
        T,
        tokens: buf,
        tokOff: i,
        state: this.state,
        logits: last ? "last" : "none",
        out: this.logits,
      });
    }
    await rec.flush();
    buf.destroy();
  }

  /** Sample n tokens from step `step` on, feeding each (the last only when `feedLast`). */
  async burst(step: number, n: number, feedLast: boolean): Promise<Uint32Array> {
    const rec = new Recorder(this.model.gpu, "gpuGenerate.burst");
    for (const [src, dst] of this.#snap) rec.copy(src, 0, dst, 0, src.size);
    for (let s = 0; s < n; s++) {
      this.kernel.record(rec, {
        B: 1,
        V: this.model.config.vocabSize,
        limit: this.settings.limit,
        logits: this.logits,
        probs: this.probs,
        counts: this.counts,
        tokens: this.ring,
        tokOff: s,
        step: step + s,
        settings: this.settings,
      });
      if (s < n - 1 || feedLast) this.#recordFeed(rec, s, "last");
    }
    rec.submit();
    return await readU32(this.model.gpu, this.ring, n);
  }

  /** Put the state back to the start of the last burst and feed its first `keep` tokens. */
  rewind(keep: number): void {
    const rec = new Recorder(this.model.gpu, "gpuGenerate.rewind");
    for (const [src, dst] of this.#snap) rec.copy(dst, 0, src, 0, src.size);
    for (let s = 0; s < keep; s++) this.#recordFeed(rec, s, "none");
    rec.submit();
  }

  #recordFeed(rec: Recorder, slot: number, logits: "last" | "none"): void {
    this.model.recordForward(rec, {
      B: 1,
      T: 1,
      tokens: this.ring,
      tokOff: slot,
      state: this.state,
      logits,
      out: this.logits,
    });
  }

  destroy(): void {
    for (const b of this.#bufs) b.destroy();
    if (this.ownsState) {
      this.state.destroy();
    }
  }
}

function sampleError(token: number, index: number): RangeError | null {
  if (token === SAMPLE_ERR_NONFINITE) {
    return new RangeError(
      `generated token ${index}: the logits hold NaN or +Infinity; the model output is broken`,
    );
  }
  if (token === SAMPLE_ERR_ALL_BANNED) {
    return new RangeError(`generated token ${index}: every logit is -Infinity: nothing to sample`);
  }
  return null;
}

/** Parse the options and set up the GPU run (the caller destroys it). */
async function setup(model: GpuModel, tokenizer: Tokenizer, options: GpuGenerateOptions) {
  const { stopAtEndOfText, signal, burst, state, initialState, ...rest } = options;
  const opts = parseSamplingOptions(rest);
  const r = ExtrasSchema.safeParse({ stopAtEndOfText, signal, burst, state });
  if (!r.success) {
    throw new RangeError(
      `invalid gpuGenerate options: ${r.error.issues.map((i) => i.message).join("; ")}`,
    );
  }
  if (state && initialState) {
    throw new RangeError("pass either state (a GpuState to advance) or initialState, not both");
  }
  const seed = opts.seed ?? randomSeed();
  const limit = Math.min(model.config.vocabSize, tokenizer.vocabSize);
  const kernel = await SampleKernel.create(model.gpu);
  const st = state ?? (initialState ? model.uploadState([initialState]) : model.createState(1));
  const run = new GpuRun(model, kernel, st, !state, { ...opts, seed, limit }, r.data.burst);
  return { opts, seed, run, burst: r.data.burst, signal, eot: stopAtEndOfText };
}

/**
 * Generate text with sampling on the GPU, streaming one `{ token, text }` per generated token
 * exactly like {@linkcode generate} (same chunk rules, stop handling and result), but running
 * `burst` steps per submit. Greedy (`temperature: 0`) is the argmax of the penalised logits;
 * otherwise draws follow `shaders/sample.wgsl` (same options as `sampler.ts`; penalties count
 * generated tokens only, in f32). With a `seed`, the tokens are reproducible and do not depend
 * on `burst`. Ids beyond the tokenizer's vocabulary are never sampled.
 *
 * @param model the model on the GPU.
 * @param tokenizer the tokenizer matching the model.
 * @param prompt the prompt text, or its token ids.
 * @param options sampling options plus {@link GpuGenerateExtras} (`burst`, `state`, …).
 * @returns an async generator of chunks whose return value is the {@linkcode GenerationResult}.
 * @throws {RangeError} for invalid options, an empty prompt, prompt ids beyond V, or logits
 *   that are NaN/+Infinity or all −Infinity.
 * @example
 * ```ts ignore
 * const gen = gpuGenerate(model, tokenizer, "User: hi\n\nAssistant:", { stop: ["\n\n"] });
 * for await (const chunk of gen) await Deno.stdout.write(new TextEncoder().encode(chunk.text));
 * ```
 */
export async function* gpuGenerate(
  model: GpuModel,
  tokenizer: Tokenizer,
  prompt: string | number[],
  options: GpuGenerateOptions = {},
): AsyncGenerator<GeneratedChunk, GenerationResult> {
  const promptIds = typeof prompt === "string" ? tokenizer.encode(prompt) : prompt;
  checkPrompt(promptIds, model.config.vocabSize, tokenizer);
  const { opts, seed, run, burst, signal, eot } = await setup(model, tokenizer, options);
  const stopAtEndOfText = eot ?? tokenizer.name !== "bytes";
  const t0 = performance.now();
  let tGen = t0, fed = 0;
  const out = new TokenStream(tokenizer, opts.stop, opts.maxTokens);
  const tokens = out.tokens;
  let end: "eos" | "abort" | null = signal?.aborted ? "abort" : null;
  try {
    if (!end && opts.maxTokens > 0) {
      await run.prefill(promptIds);
      fed = promptIds.length;
      tGen = performance.now();
      let done = false;
      while (!done) {
        const n = Math.min(burst, opts.maxTokens - tokens.length);
        const last = tokens.length + n >= opts.maxTokens;
        const ids = await run.burst(tokens.length, n, !last);
        let stopAt = -1; // the burst's token where generation ended (accepted unless eos/abort)
        for (let j = 0; j < n && stopAt < 0; j++) {
          const token = ids[j];
          const err = sampleError(token, tokens.length);
          if (err) {
            run.rewind(j);
            throw err;
          }
          if (signal?.aborted) end = "abort";
          else if (stopAtEndOfText && token === END_OF_TEXT) end = "eos";
          if (end) {
            stopAt = j;
            break;
          }
          const r = out.push(token);
          yield* r.chunks;
          if (r.done) stopAt = j;
        }
        if (stopAt < 0) continue;
        done = true;
        if (stopAt < (last ? n - 1 : n)) run.rewind(stopAt);
      }
    }
    if (end) yield* out.end(end);
  } finally {
    run.destroy();
  }
  return out.result(t0, tGen, fed, seed);
}

/**
 * Run {@linkcode gpuGenerate} to the end and return its result.
 *
 * @param model the model on the GPU.
 * @param tokenizer the tokenizer matching the model.
 * @param prompt the prompt text, or its token ids.
 * @param options {@link GpuGenerateOptions} plus `onChunk`, called for every streamed chunk.
 * @returns the {@linkcode GenerationResult}.
 * @example
 * ```ts ignore
 * const r = await gpuGenerateText(model, tok, "Once", { maxTokens: 32, temperature: 0 });
 * ```
 */
export async function gpuGenerateText(
  model: GpuModel,
  tokenizer: Tokenizer,
  prompt: string | number[],
  options: GpuGenerateOptions & { onChunk?: (chunk: GeneratedChunk) => void } = {},
): Promise<GenerationResult> {
  const { onChunk, ...rest } = options;
  return await drainGeneration(gpuGenerate(model, tokenizer, prompt, rest), onChunk);
}
