/**
 * The RWKV-7 forward pass on WebGPU (f32): B sequences × T tokens per call, the recurrent state
 * carried on the GPU, one submit per forward and one readback for the logits asked for.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { createStorage, readF32, writeStorage } from "../gpu/buffers.ts";
import { Recorder } from "../gpu/recorder.ts";
import { Kernels } from "../kernels/kernels.ts";
import type { GpuLifted } from "./gpu_lifted.ts";
import {
  createLayerWorkspace,
  destroyLayerWorkspace,
  type LayerWorkspace,
  recordLayer,
} from "./gpu_layer.ts";
import { GpuState } from "./gpu_state.ts";
import {
  destroyWeights,
  type GpuWeights,
  modelVec,
  uploadWeights,
  useWeightTextures,
} from "./gpu_weights.ts";
import type { RwkvConfig, RwkvState, RwkvWeights } from "./types.ts";
import type {
  GpuModelOptions,
  GpuSession,
  LogitsMode,
  RecordForwardArgs,
} from "./gpu_model_types.ts";
import { Wkv7ChunkedKernel } from "../kernels/wkv7_chunked.ts";
import { mayChooseChunked, type WkvFormOption, WkvFormOptionSchema } from "../kernels/wkv_form.ts";

export type {
  GpuModelOptions,
  GpuSession,
  LogitsMode,
  RecordForwardArgs,
} from "./gpu_model_types.ts";

/** Model-level buffers: residual ping-pong, v_first, normalised head input, tokens, logits. */
type BufName = "x0" | "x1" | "vFirst" | "xNorm" | "tokens" | "logits";

/** Longest chunk a session feeds in one forward (bounds the workspace). */
const SESSION_CHUNK = 512;

/** The model on the GPU: weights, kernels, workspace. */
export class GpuModel {
  #ws?: LayerWorkspace;
  #retired: GPUBuffer[] = [];
  #lifted?: GpuLifted;
  #active?: GpuWeights;
  #bufs: Record<BufName, GPUBuffer | undefined> = {
    x0: undefined,
    x1: undefined,
    vFirst: undefined,
    xNorm: undefined,
    tokens: undefined,
    logits: undefined,
  };

  private constructor(
    readonly gpu: Gpu,
    readonly weights: GpuWeights,
    readonly kernels: Kernels,
    /** the WKV form option ("auto": per shape, see `chooseWkvForm`) */
    readonly wkvForm: WkvFormOption = "auto",
    /** the chunked WKV kernel, when the form can pick it on this adapter */
    readonly wkvChunked?: Wkv7ChunkedKernel,
  ) {}

  /**
   * Upload `weights` and compile the kernels.
   *
   * @param options.maxChunkBytes split weight matrices into chunks of at most this many bytes
   *   (default one storage binding)
   * @param options.weightDtype f32 (default) or f16 storage of the weight matrices
   * @param options.textures texture copies of the weights for the texture matmul kernels
   *   ("auto": on software adapters)
   * @param options.wkvForm the WKV recurrence in the sequential or the chunked form (docs/MATH.md §3);
   *   "auto" (default) picks per shape (`chooseWkvForm`: sequential on software adapters)
   * @example
   * ```ts ignore
   * const model = await GpuModel.create(gpu, weights);
   * const logits = await model.forward([[34, 105, 110]], model.createState(1));
   * ```
   */
  static async create(
    gpu: Gpu,
    weights: RwkvWeights,
    options: GpuModelOptions = {},
  ): Promise<GpuModel> {
    const wkvForm = WkvFormOptionSchema.parse(options.wkvForm ?? "auto");
    const kernels = await Kernels.create(gpu, weights.config.headSize, options.matmul);
    // the chunked kernel only when the form can choose it (never on software adapters in "auto")
    const chunked = mayChooseChunked(gpu, wkvForm, weights.config.headSize);
    const wkvChunked = chunked
      ? await Wkv7ChunkedKernel.create(gpu, weights.config.headSize)
      : undefined;
    await kernels.matmul.prepare(options.weightDtype ?? "f32");
    if (useWeightTextures(gpu, options.textures)) await kernels.matmul.prepareTextures();
    gpu.device.pushErrorScope("out-of-memory");
    const w = uploadWeights(gpu, weights, options);
    const err = await gpu.device.popErrorScope();
    if (err) {
      destroyWeights(w);
      throw new Error(`out of GPU memory uploading the weights: ${err.message}`);
    }
    return new GpuModel(gpu, w, kernels, wkvForm, wkvChunked);
  }

  /** Sizes of the model. */
  get config(): RwkvConfig {
    return this.weights.config;
  }

  /**
   * Attach a kernel-upscaled state (docs/MATH.md §5) to every later forward, or detach it (undefined).
   * Each {@link GpuState} then carries a lifted state too, starting from the set's Ŝ0 at its
   * first forward ({@link GpuState.liftedFor}; `reset` puts it back to Ŝ0, `destroy` frees
   * it). The set stays the caller's to destroy.
   *
   * @example
   * ```ts ignore
   * model.setLifted(await GpuLifted.create(gpu, model.config, await loadLifted("lifted.safetensors")));
   * const s = model.session(tunedS0); // generation with the tuned S0 and Ŝ0
   * ```
   */
  setLifted(set?: GpuLifted): void {
    this.#lifted = set;
  }

  /** The attached lifted set, if any. */
  get lifted(): GpuLifted | undefined {
    return this.#lifted;
  }

  /**
   * Run every later forward (sessions, generation, evaluation) and backward with `w` in place of
   * the uploaded {@link weights}, or go back to them (undefined). `w` must have the model's
   * shapes (e.g. a LoRA set's merged weights); it stays the caller's to destroy.
   *
   * @throws {RangeError} when `w` is for another shape of model
   */
  useWeights(w?: GpuWeights): void {
    if (
      w && (w.layers.length !== this.config.nLayer ||
        JSON.stringify(w.config) !== JSON.stringify(this.config))
    ) {
      throw new RangeError(
        `useWeights: weights for ${JSON.stringify(w.config)} do not fit this model ` +
          `(${JSON.stringify(this.config)}); pass weights built from this model's`,
      );
    }
    this.#active = w;
  }

  /** The weights forwards use: those given to {@link useWeights}, else the uploaded ones. */
  get activeWeights(): GpuWeights {
    return this.#active ?? this.weights;
  }

  /** A zero state for B sequences. */
  createState(B = 1): GpuState {
    return new GpuState(this.gpu, this.config, B);
  }

  /** A state holding `states` (one per sequence). */
  uploadState(states: RwkvState[]): GpuState {
    const s = this.createState(states.length);
    s.upload(states);
    return s;
  }

  /** Read a state back (one CPU sync). */
  readState(s: GpuState): Promise<RwkvState[]> {
    return s.read();
  }

  /** The workspace sized for at least `rows` = B·T rows (grows; never shrinks). */
  workspace(rows: number): LayerWorkspace {
    if (!this.#ws || this.#ws.rows < rows) {
      // Buffers of a smaller workspace may still be referenced by recorded work: retire them.
      if (this.#ws) {
        for (const v of Object.values(this.#ws)) if (v instanceof GPUBuffer) this.#retired.push(v);
      }
      const cap = Math.max(rows, this.#ws?.rows ?? 0);
      this.#ws = createLayerWorkspace(this.gpu, this.config, cap);
      const C = this.config.nEmbd;
      for (const name of ["x0", "x1", "vFirst"] as const) this.#grow(name, cap * C * 4);
    }
    return this.#ws;
  }

  #grow(name: BufName, bytes: number): GPUBuffer {
    const cur = this.#bufs[name];
    if (cur && cur.size >= bytes) return cur;
    if (cur) this.#retired.push(cur);
    const b = createStorage(this.gpu, `model.${name}`, bytes);
    this.#bufs[name] = b;
    return b;
  }

  /**
   * Record a whole forward (embedding, every layer, head) into `rec` without reading back.
   * The state advances in place when the recording is submitted.
   *
   * @returns the buffer holding the logits (`args.out` or an internal one) and their count
   */
  recordForward(rec: Recorder, args: RecordForwardArgs): { logits?: GPUBuffer; count: number } {
    const { B, T, state } = args;
    if (!Number.isInteger(B) || B < 1) throw new RangeError(`forward: B = ${B}; expected ≥ 1`);
    if (!Number.isInteger(T) || T < 1) throw new RangeError(`forward: T = ${T}; expected ≥ 1`);
    if (state.B !== B) throw new RangeError(`forward: state holds ${state.B} sequences, B = ${B}`);
    const cfg = this.config, C = cfg.nEmbd, rows = B * T;
    const ws = this.workspace(rows);
    const b = this.#bufs as Record<string, GPUBuffer>;
    const W = args.weights ?? this.activeWeights;
    this.kernels.embed.record(rec, {
      rows,
      tokens: args.tokens,
      tokOff: args.tokOff,
      emb: W.emb,
      vecs: W.vecs,
      wOff: modelVec("ln0_w", C),
      bOff: modelVec("ln0_b", C),
      out: b.x0,
    });
    const ctx = {
      kernels: this.kernels,
      weights: W,
      wkvForm: this.wkvForm,
      ...(this.wkvChunked ? { wkvChunked: this.wkvChunked } : {}),
    };
    const ls = this.#lifted && (args.liftedState ?? state.liftedFor(this.#lifted));
    const lifted = ls ? { lifted: { set: this.#lifted!, state: ls } } : {};
    for (let l = 0; l < cfg.nLayer; l++) {
      const [xIn, xOut] = l % 2 === 0 ? [b.x0, b.x1] : [b.x1, b.x0];
      recordLayer(ctx, rec, l, { B, T, xIn, xOut, vFirst: b.vFirst, state, ...lifted }, ws);
    }
    if (args.logits === "none") return { count: 0 };
    return this.#recordHead(rec, args, W, cfg.nLayer % 2 === 0 ? b.x0 : b.x1);
  }

  /** ln_out and the head over the last token of each sequence or every token. */
  #recordHead(
    rec: Recorder,
    args: RecordForwardArgs,
    W: GpuWeights,
    xLast: GPUBuffer,
  ): { logits: GPUBuffer; count: number } {
    const { B, T } = args, cfg = this.config, C = cfg.nEmbd;
    const headRows = args.logits === "last" ? B : B * T;
    const count = headRows * cfg.vocabSize;
    if (count * 4 > this.gpu.limits.maxStorageBufferBindingSize) {
      throw new RangeError(
        `forward: ${headRows} rows × V ${cfg.vocabSize} logits exceed one storage binding; ` +
          `ask for logits "last" or feed fewer tokens per call`,
      );
    }
    const xNorm = this.#grow("xNorm", headRows * C * 4);
    this.kernels.layerNorm.record(rec, {
      rows: headRows,
      C,
      x: xLast,
      inRowStep: args.logits === "last" ? T : 1,
      inRowOff: args.logits === "last" ? T - 1 : 0,
      vecs: W.vecs,
      wOff: modelVec("ln_out_w", C),
      bOff: modelVec("ln_out_b", C),
      out: xNorm,
    });
    const out = args.out ?? this.#grow("logits", count * 4);
    this.kernels.matmul.linearMatrix(rec, W.head, {
      rows: headRows,
      x: xNorm,
      y: out,
      yOff: args.outOff ?? 0,
    });
    return { logits: out, count };
  }

  /**
   * Upload `tokens` (B × T, all rows the same length) into the model's token buffer.
   *
   * @throws {RangeError} for ragged rows or ids outside [0, V)
   */
  uploadTokens(tokens: number[][]): GPUBuffer {
    const B = tokens.length, T = tokens[0]?.length ?? 0;
    if (B === 0 || T === 0) throw new RangeError("forward: tokens must be a non-empty B × T array");
    const flat = new Uint32Array(B * T);
    tokens.forEach((row, bi) => {
      if (row.length !== T) {
        throw new RangeError(
          `forward: sequence ${bi} has ${row.length} tokens, sequence 0 has ${T}`,
        );
      }
      row.forEach((tok, t) => {
        if (!Number.isInteger(tok) || tok < 0 || tok >= this.config.vocabSize) {
          throw new RangeError(
            `forward: token ${tok} at [${bi}][${t}] is outside the vocabulary [0, ${this.config.vocabSize})`,
          );
        }
        flat[bi * T + t] = tok;
      });
    });
    const buf = this.#grow("tokens", flat.byteLength);
    writeStorage(this.gpu, buf, flat);
    return buf;
  }

  /**
   * Run B sequences of T tokens from `state` (advanced in place).
   *
   * @returns logits (B, V) for "last", (B, T, V) for "all", empty for "none"
   */
  async forward(
    tokens: number[][],
    state: GpuState,
    opts: { logits?: LogitsMode; weights?: GpuWeights } = {},
  ): Promise<Float32Array> {
    const mode = opts.logits ?? "last";
    const buf = this.uploadTokens(tokens);
    const rec = new Recorder(this.gpu, "forward");
    const { logits, count } = this.recordForward(rec, {
      B: tokens.length,
      T: tokens[0].length,
      tokens: buf,
      state,
      logits: mode,
      ...(opts.weights ? { weights: opts.weights } : {}),
    });
    rec.submit();
    if (!logits) {
      await this.gpu.device.queue.onSubmittedWorkDone();
      return new Float32Array(0);
    }
    return await readF32(this.gpu, logits, count);
  }

  /**
   * A single-sequence session (structurally a `LanguageModel`): `feed` runs tokens and returns
   * the logits after the last one.
   */
  session(initial?: RwkvState): GpuSession {
    const st = initial ? this.uploadState([initial]) : this.createState(1);
    const V = this.config.vocabSize;
    return {
      vocabSize: V,
      feed: async (tokens: number[]) => {
        if (tokens.length === 0) throw new RangeError("feed: at least one token is needed");
        let logits: Float32Array = new Float32Array(V);
        for (let i = 0; i < tokens.length; i += SESSION_CHUNK) {
          const part = tokens.slice(i, i + SESSION_CHUNK);
          const last = i + SESSION_CHUNK >= tokens.length;
          if (last) logits = await this.forward([part], st, { logits: "last" });
          else this.#submitNoLogits(part, st);
        }
        return logits;
      },
      state: async () => (await st.read())[0],
      destroy: () => {
        st.destroy();
      },
    };
  }

  #submitNoLogits(tokens: number[], st: GpuState): void {
    const buf = this.uploadTokens([tokens]);
    const rec = new Recorder(this.gpu, "forward");
    this.recordForward(rec, { B: 1, T: tokens.length, tokens: buf, state: st, logits: "none" });
    rec.submit();
  }

  /** Free every GPU buffer of the model (states created from it are freed separately). */
  destroy(): void {
    destroyWeights(this.weights);
    if (this.#ws) destroyLayerWorkspace(this.#ws);
    for (const b of Object.values(this.#bufs)) b?.destroy();
    for (const b of this.#retired) b.destroy();
    this.#retired = [];
  }
}
