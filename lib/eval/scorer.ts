/**
 * The GPU scoring engine. RWKV's advantage for multiple choice: the shared context runs once,
 * its state is copied on the GPU into one sequence per choice (B = number of choices), and all
 * choices are scored in one batched forward with logits "all" (rows padded at the end; padded
 * positions are never read). Few-shot prefixes are cached as GPU states keyed by their text.
 *
 * Tokens of a row: `[0] ++ encode(prefix) ++ encode(context) ++ encode(continuation)`; only the
 * continuation's tokens are scored. The longest common token prefix of the rows' contexts is
 * what runs once (for WinoGrande: the sentence up to the options).
 *
 * @module
 */
import { readF32 } from "../gpu/buffers.ts";
import { createStorage, writeStorage } from "../gpu/buffers.ts";
import { Recorder } from "../gpu/recorder.ts";
import type { GpuModel } from "../model/gpu_model.ts";
import { GpuState } from "../model/gpu_state.ts";
import type { RwkvState } from "../model/types.ts";
import type { Tokenizer } from "../tokenizer/mod.ts";
import { generateText, type GenerationResult, type LanguageModel } from "../generate/generate.ts";
import { tokenLogprob } from "./metrics.ts";
import type { GenerationRequest, LoglikRequest } from "./prompts.ts";

/** The score of one row (context → continuation). */
export interface RowScore {
  /** Summed log-likelihood of the continuation tokens (natural log). */
  loglik: number;
  /** Whether every continuation token was the argmax (LAMBADA's accuracy). */
  greedy: boolean;
  /** Number of continuation tokens. */
  tokens: number;
}

/** A state after a prefix, and the logits after its last token. */
interface PrefixState {
  state: GpuState;
  logits: Float32Array;
  tokens: number[];
}

/** Longest chunk fed in one forward while running a prefix. */
const CHUNK = 512;

/**
 * Copy sequence `sb` of `src` into sequence `db` of `dst` (recorded; every layer, all three
 * parts of the state).
 */
export function recordStateCopy(
  rec: Recorder,
  src: GpuState,
  sb: number,
  dst: GpuState,
  db: number,
): void {
  const { nLayer: L, nEmbd: C, nHead: H, headSize: N } = src.config;
  const S = H * N * N;
  for (let l = 0; l < L; l++) {
    rec.copy(
      src.att,
      (src.shiftOffset(l) + sb * C) * 4,
      dst.att,
      (dst.shiftOffset(l) + db * C) * 4,
      C * 4,
    );
    rec.copy(
      src.ffn,
      (src.shiftOffset(l) + sb * C) * 4,
      dst.ffn,
      (dst.shiftOffset(l) + db * C) * 4,
      C * 4,
    );
    rec.copy(
      src.wkv,
      (src.wkvOffset(l) + sb * S) * 4,
      dst.wkv,
      (dst.wkvOffset(l) + db * S) * 4,
      S * 4,
    );
  }
}

/** Length of the longest common prefix of token lists. */
function commonPrefix(rows: number[][]): number {
  let n = 0;
  const min = Math.min(...rows.map((r) => r.length));
  while (n < min && rows.every((r) => r[n] === rows[0][n])) n++;
  return n;
}

/** Options of {@link Scorer}. */
export interface ScorerOptions {
  /** The initial state every item starts from (zero state when omitted). */
  initial?: RwkvState;
}

/**
 * Scores log-likelihood requests and runs greedy generation on a {@link GpuModel}.
 *
 * @example
 * ```ts ignore
 * const scorer = new Scorer(model, tokenizer);
 * const rows = await scorer.score(arcRequest(item)); // one RowScore per choice
 * scorer.destroy();
 * ```
 */
export class Scorer {
  #cache = new Map<string, PrefixState>();
  #tokens?: GPUBuffer;
  #out?: GPUBuffer;

  constructor(
    readonly model: GpuModel,
    readonly tokenizer: Tokenizer,
    readonly options: ScorerOptions = {},
  ) {}

  /** Number of cached prefix states. */
  get cachedPrefixes(): number {
    return this.#cache.size;
  }

  /** Run `tokens` from `initial` (or the scorer's initial state) into a fresh B = 1 state. */
  async #runPrefix(tokens: number[], initial?: RwkvState): Promise<PrefixState> {
    const init = initial ?? this.options.initial;
    const state = init ? this.model.uploadState([init]) : this.model.createState(1);
    let logits: Float32Array = new Float32Array(0);
    for (let i = 0; i < tokens.length; i += CHUNK) {
      const last = i + CHUNK >= tokens.length;
      const part = tokens.slice(i, i + CHUNK);
      logits = await this.model.forward([part], state, { logits: last ? "last" : "none" });
    }
    return { state, logits, tokens };
  }

  /**
   * The state after `[0] ++ encode(prefix)`: cached by text unless a per-item `initial` is
   * given (then the caller owns it and must destroy it).
   */
  async prefixState(prefix: string, initial?: RwkvState): Promise<PrefixState> {
    const tokens = [0, ...this.tokenizer.encode(prefix)];
    if (initial) return await this.#runPrefix(tokens, initial);
    let p = this.#cache.get(prefix);
    if (!p) {
      p = await this.#runPrefix(tokens);
      this.#cache.set(prefix, p);
    }
    return p;
  }

  #buffer(which: "tokens" | "out", bytes: number): GPUBuffer {
    const cur = which === "tokens" ? this.#tokens : this.#out;
    if (cur && cur.size >= bytes) return cur;
    cur?.destroy();
    const b = createStorage(this.model.gpu, `eval.${which}`, Math.max(bytes, 256));
    if (which === "tokens") this.#tokens = b;
    else this.#out = b;
    return b;
  }

  /**
   * Score every row of `req`: the common part of the contexts runs once from the prefix state,
   * then the state is forked into one sequence per row.
   *
   * @param initial a per-item initial state (no prefix caching then).
   * @returns one {@link RowScore} per row.
   * @throws {RangeError} for an empty continuation.
   */
  async score(req: LoglikRequest, initial?: RwkvState): Promise<RowScore[]> {
    const tok = this.tokenizer;
    const base = await this.prefixState(req.prefix, initial);
    try {
      const ctx = req.contexts.map((c) => [...base.tokens, ...tok.encode(c)]);
      const cont = req.continuations.map((c, r) => {
        const ids = tok.encode(c);
        if (ids.length === 0) {
          throw new RangeError(`row ${r}: the continuation encodes to no tokens`);
        }
        return ids;
      });
      const common = Math.max(commonPrefix(ctx), base.tokens.length);
      const seqs = ctx.map((c, r) => [...c.slice(common), ...cont[r]]);
      return await this.#scoreRows(base, ctx[0].slice(base.tokens.length, common), seqs, cont);
    } finally {
      if (initial) base.state.destroy();
    }
  }

  async #scoreRows(
    base: PrefixState,
    tail: number[],
    seqs: number[][],
    cont: number[][],
  ): Promise<RowScore[]> {
    const { gpu } = this.model;
    const V = this.model.config.vocabSize, R = seqs.length;
    const T = Math.max(...seqs.map((s) => s.length - 1));
    const head = tail.length ? V : 0;
    const count = head + (T > 0 ? R * T * V : 0);
    const limit = gpu.limits.maxStorageBufferBindingSize;
    if (count * 4 > limit) {
      throw new RangeError(
        `eval: ${R} rows × ${T} tokens × V ${V} logits exceed one storage binding ` +
          `(${limit} bytes); shorten the choices or evaluate a smaller batch`,
      );
    }
    const out = this.#buffer("out", count * 4);
    const data = await this.#forwardRows(base, tail, seqs, T, out, count);
    return rowScores(seqs, cont, {
      data,
      last: tail.length ? data.subarray(0, V) : base.logits,
      head,
      T,
      V,
    });
  }

  /**
   * The logits of `seqs` (padded to `T` tokens) after `base` plus `tail`, in `out`: the last
   * logits of the tail first (when there is a tail), then every row's (R, T, V).
   */
  async #forwardRows(
    base: PrefixState,
    tail: number[],
    seqs: number[][],
    T: number,
    out: GPUBuffer,
    count: number,
  ): Promise<Float32Array> {
    const { gpu } = this.model;
    const V = this.model.config.vocabSize, R = seqs.length;
    const head = tail.length ? V : 0;
    const flat = [...tail];
    for (const s of seqs) for (let t = 0; t < T; t++) flat.push(s[t] ?? 0);
    const rec = new Recorder(gpu, "eval.score");
    let data: Float32Array = new Float32Array(0);
    const temp: GpuState[] = [];
    try {
      if (flat.length) {
        const tokBuf = this.#buffer("tokens", flat.length * 4);
        writeStorage(gpu, tokBuf, new Uint32Array(flat));
        let ctxState = base.state;
        if (tail.length) {
          ctxState = new GpuState(gpu, this.model.config, 1, "eval.context");
          temp.push(ctxState);
          recordStateCopy(rec, base.state, 0, ctxState, 0);
          this.model.recordForward(rec, {
            B: 1,
            T: tail.length,
            tokens: tokBuf,
            state: ctxState,
            logits: "last",
            out,
          });
        }
        if (T > 0) {
          const fork = new GpuState(gpu, this.model.config, R, "eval.fork");
          temp.push(fork);
          for (let r = 0; r < R; r++) recordStateCopy(rec, ctxState, 0, fork, r);
          this.model.recordForward(rec, {
            B: R,
            T,
            tokens: tokBuf,
            tokOff: tail.length,
            state: fork,
            logits: "all",
            out,
            outOff: head,
          });
        }
        rec.submit();
        data = await readF32(gpu, out, count);
      }
    } finally {
      for (const s of temp) s.destroy();
    }
    return data;
  }

  /**
   * Greedy generation for `req` from the prefix state (presence/frequency penalties off).
   *
   * @param maxTokens the most tokens to generate.
   * @param initial a per-item initial state (no prefix caching then).
   */
  async generate(
    req: GenerationRequest,
    maxTokens: number,
    initial?: RwkvState,
  ): Promise<GenerationResult> {
    const base = await this.prefixState(req.prefix, initial);
    const st = new GpuState(this.model.gpu, this.model.config, 1, "eval.generate");
    try {
      const rec = new Recorder(this.model.gpu, "eval.copy");
      recordStateCopy(rec, base.state, 0, st, 0);
      rec.submit();
      const lm: LanguageModel = {
        vocabSize: this.model.config.vocabSize,
        feed: async (tokens) => {
          let logits: Float32Array = new Float32Array(0);
          for (let i = 0; i < tokens.length; i += CHUNK) {
            const last = i + CHUNK >= tokens.length;
            const part = tokens.slice(i, i + CHUNK);
            logits = await this.model.forward([part], st, { logits: last ? "last" : "none" });
          }
          return logits;
        },
      };
      return await generateText(lm, this.tokenizer, this.tokenizer.encode(req.context), {
        temperature: 0,
        presencePenalty: 0,
        frequencyPenalty: 0,
        maxTokens,
        stop: req.stop,
        seed: 0,
      });
    } finally {
      st.destroy();
      if (initial) base.state.destroy();
    }
  }

  /** Free the cached prefix states and scratch buffers (the model stays). */
  destroy(): void {
    for (const p of this.#cache.values()) p.state.destroy();
    this.#cache.clear();
    this.#tokens?.destroy();
    this.#out?.destroy();
  }
}

/** What {@linkcode rowScores} reads: the logits, where each row's start, and the shapes. */
interface RowLogits {
  data: Float32Array;
  /** Logits after the context (before each row's first token). */
  last: Float32Array;
  /** Offset of the rows' logits in `data`. */
  head: number;
  T: number;
  V: number;
}

/** Each row's log-likelihood of its continuation, and whether greedy decoding picks it. */
function rowScores(seqs: number[][], cont: number[][], l: RowLogits): RowScore[] {
  const { data, last, head, T, V } = l;
  return seqs.map((s, r) => {
    let loglik = 0, greedy = true;
    for (let j = s.length - cont[r].length; j < s.length; j++) {
      const lp = j === 0
        ? tokenLogprob(last, 0, V, s[j])
        : tokenLogprob(data, head + (r * T + j - 1) * V, V, s[j]);
      loglik += lp.logprob;
      greedy &&= lp.greedy;
    }
    return { loglik, greedy, tokens: cont[r].length };
  });
}
