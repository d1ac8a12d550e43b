/**
 * The whole-model backward on WebGPU down to dL/dS0 (state tuning), all recorded into one
 * {@link Recorder} with no CPU sync until a result is read:
 *
 * 1. forward from the initial state, saving only each layer's input residual (L + 1 buffers of
 *    (B·T, C) plus v_first: activation memory grows with L by one (B·T, C) buffer per layer);
 * 2. ln_out + head + masked cross-entropy and its backward, one block of rows at a time;
 * 3. for l = L−1 … 0: recompute layer l into the shared workspace (the forward's own
 *    `recordLayer`), then back-propagate through the channel mix, the time mix and the WKV
 *    recurrence into dL/dS0 (and dL/d shift states) of that layer.
 *
 * With `GpuBackward.create(model, { weightGrads: true })` the same recording also produces the
 * gradient of every weight ({@link GradBuffers.dWeights}: a {@link GpuWeights}-shaped set of
 * buffers, same chunks and packed `vecs` layout as the model's, so an optimiser steps buffer i of
 * `allBuffers(dWeights)` against buffer i of `allBuffers(model.weights)`), summed over the batch
 * without float atomics (deterministic). Off (the default, state tuning) it allocates no
 * gradient buffer and records exactly the state-tuning dispatches.
 *
 * Right-padded batches: positions past a sequence's end must have mask 0; causality then keeps
 * them out of every gradient.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { shared } from "../gpu/shared.ts";
import { createStorage, readF32 } from "../gpu/buffers.ts";
import { Recorder } from "../gpu/recorder.ts";
import { ChannelMixBackwardKernel } from "../kernels/channel_mix_backward.ts";
import { HeadCeKernel } from "../kernels/head_ce.ts";
import type { GpuMatrix } from "../kernels/matmul.ts";
import { MatmulDwKernel } from "../kernels/matmul_dw.ts";
import { NormBackwardKernel } from "../kernels/norm_backward.ts";
import { TimeMixBackwardKernel } from "../kernels/time_mix_backward.ts";
import { TokenShiftBackwardKernel } from "../kernels/token_shift_backward.ts";
import { Wkv7ChunkedBackwardKernel } from "../kernels/wkv7_chunked.ts";
import { Wkv7BackwardKernel } from "../kernels/wkv7_backward.ts";
import { recordLayer } from "./gpu_layer.ts";
import { type DbpRows, type GpuLifted, GpuLiftedState } from "./gpu_lifted.ts";
import type { GpuModel } from "./gpu_model.ts";
import { GpuState } from "./gpu_state.ts";
import { allBuffers, type GpuLayerWeights, type GpuWeights, modelVec } from "./gpu_weights.ts";
import {
  type BackwardKernels,
  createGradWorkspace,
  destroyGradWorkspace,
  type GradWorkspace,
  recordLayerBackward,
  recordNormAffine,
} from "./gpu_layer_backward.ts";

/** Options of {@link GpuBackward.create}. */
export interface GpuBackwardOptions {
  /**
   * Also compute the gradient of every weight (pretraining). Off (default) costs nothing: no
   * gradient buffer is allocated and no weight-gradient dispatch is recorded.
   */
  weightGrads?: boolean;
}

/**
 * Zeroed gradient buffers shaped like `w` (same matrices, chunks and packed vectors; labels
 * prefixed `dW.`).
 */
export function createGradWeights(gpu: Gpu, w: GpuWeights): GpuWeights {
  const like = (b: GPUBuffer) => createStorage(gpu, `dW.${b.label}`, b.size);
  const mx = (m: GpuMatrix): GpuMatrix => ({
    ...m,
    chunks: m.chunks.map((c) => ({ rowStart: c.rowStart, rows: c.rows, buffer: like(c.buffer) })),
  });
  const layers = w.layers.map((lw): GpuLayerWeights => {
    const out = { vecs: like(lw.vecs) } as GpuLayerWeights;
    for (const [k, v] of Object.entries(lw)) {
      if (k !== "vecs" && v) (out as unknown as Record<string, GpuMatrix>)[k] = mx(v as GpuMatrix);
    }
    return out;
  });
  const out: GpuWeights = {
    config: w.config,
    emb: mx(w.emb),
    head: mx(w.head),
    vecs: like(w.vecs),
    layers,
    bytes: 0,
  };
  out.bytes = allBuffers(out).reduce((s, b) => s + b.size, 0);
  return out;
}

/** The initial state: per sequence (a {@link GpuState}, not modified), or one S0 per layer. */
export type InitialState =
  | { kind: "state"; state: GpuState }
  | {
    kind: "shared";
    /** (L, H, N, N) wkv states shared by every sequence; token-shift states are zero */
    wkv: GPUBuffer;
  };

/** Arguments of {@link GpuBackward.record}. */
export interface LossAndGradArgs {
  B: number;
  T: number;
  /** (B, T) u32 token ids (< V, not checked here) */
  tokens: GPUBuffer;
  /** (B, T) u32 next-token targets */
  targets: GPUBuffer;
  /** (B, T) f32: positions with a non-zero mask count; the loss is their mean */
  mask: GPUBuffer;
  init: InitialState;
  /** add the L2Wrap term to the logit gradient (loss unchanged) */
  l2wrap?: boolean;
  /**
   * weight gradients only: add into the existing dW buffers (gradient accumulation over several
   * recordings) instead of zeroing them first
   */
  accumulateWeightGrads?: boolean;
  /**
   * kernel-upscaled state (SPEC §6): the branches of `set`, every sequence starting from the
   * set's Ŝ0 (shared by the batch, whatever `init` is); {@link GradBuffers.dLifted} gets
   * dL/dŜ0. With `dbp`, each lifted layer's DBP covariance of the listed vectors is recorded.
   */
  lifted?: { set: GpuLifted; dbp?: DbpRows };
  /**
   * run with these weights instead of {@link GpuModel.activeWeights} (same shapes and chunks,
   * e.g. merged adapter weights); `dWeights` is then dL/d(these weights)
   */
  weights?: GpuWeights;
}

/** Where {@link GpuBackward.record} leaves its results (valid once the recording ran). */
export interface GradBuffers {
  /** (4): [loss, counted positions, Σ nll, ·] */
  stats: GPUBuffer;
  /** (L, B, H, N, N) dL/dS0 per sequence */
  dS0: GPUBuffer;
  /** (L, H, N, N) dL/dS0 summed over the batch (the gradient of a shared S0) */
  dS0Sum: GPUBuffer;
  /** (L, B, C) dL/d(time-mix shift state), dL/d(channel-mix shift state) */
  dShiftAtt: GPUBuffer;
  dShiftFfn: GPUBuffer;
  /** with `weightGrads`: dL/dW of every weight, shaped like the model's {@link GpuWeights} */
  dWeights?: GpuWeights;
  /** with `lifted`: dL/dŜ0 summed over the batch, laid out like the set's `s0` */
  dLifted?: GPUBuffer;
  /** with `lifted`: dL/dg summed over the batch, laid out like the set's `gate` (0 in memory mode) */
  dLiftedGate?: GPUBuffer;
}

interface Buffers extends GradBuffers {
  B: number;
  T: number;
  xs: GPUBuffer[];
  vFirst: GPUBuffer;
  dvFirst: GPUBuffer;
  xNorm: GPUBuffer;
  dx: GPUBuffer;
  nll: GPUBuffer;
  logits: GPUBuffer;
  work: GpuState;
  grad: GradWorkspace;
  /** lifted work state and dŜ0 of the set last used with these B, T */
  lifted?: { set: GpuLifted; work: GpuLiftedState; dLifted: GPUBuffer; dLiftedGate: GPUBuffer };
}

/** The backward's own kernels (all but the model's matmul). */
async function backwardKernels(
  gpu: Gpu,
  N: number,
  options: GpuBackwardOptions,
  chunked: boolean,
): Promise<Omit<BackwardKernels, "matmul" | "wkvForm">> {
  const dw = options.weightGrads ? await MatmulDwKernel.create(gpu) : undefined;
  return {
    norm: await NormBackwardKernel.create(gpu),
    timeMix: await TimeMixBackwardKernel.create(gpu, dw !== undefined),
    channelMix: await ChannelMixBackwardKernel.create(gpu),
    shift: await TokenShiftBackwardKernel.create(gpu, dw !== undefined),
    wkv: await Wkv7BackwardKernel.create(gpu, [N]),
    ...(chunked ? { wkvChunked: await Wkv7ChunkedBackwardKernel.create(gpu, [N]) } : {}),
    ...(dw ? { dw } : {}),
  };
}

/** The model backward; create once per model with {@link GpuBackward.create}. */
export class GpuBackward {
  #bufs?: Buffers;

  private constructor(
    readonly model: GpuModel,
    private readonly k: BackwardKernels,
    private readonly ce: HeadCeKernel,
    /** the weight gradients (allocated once) when `weightGrads` is on */
    readonly dWeights?: GpuWeights,
  ) {}

  /**
   * Compile the backward kernels for `model` (and allocate the weight gradients when asked).
   *
   * @param options.weightGrads also produce every weight's gradient ({@link GradBuffers.dWeights})
   * @example
   * ```ts ignore
   * const bwd = await GpuBackward.create(model);
   * const { loss, dS0Sum } = await bwd.lossAndGrad({ B, T, tokens, targets, mask, init });
   * const full = await GpuBackward.create(model, { weightGrads: true }); // pretraining
   * ```
   */
  static async create(model: GpuModel, options: GpuBackwardOptions = {}): Promise<GpuBackward> {
    const gpu = model.gpu, N = model.config.headSize;
    if (options.weightGrads && model.weights.head.dtype !== "f32") {
      throw new Error(
        `weight gradients need f32 weights, but this model stores ${model.weights.head.dtype} ` +
          `weights; create it with GpuModel.create(gpu, weights, { weightDtype: "f32" })`,
      );
    }
    // one kernel set per device and shape: the kernels own placeholder buffers, which a set
    // made per run would leave behind
    const chunked = model.wkvChunked !== undefined;
    const key = `backward:N${N}:dw${Boolean(options.weightGrads)}:chunked${chunked}`;
    const { dw, ...own } = await shared(gpu, key, () => backwardKernels(gpu, N, options, chunked));
    const k: BackwardKernels = {
      matmul: model.kernels.matmul,
      wkvForm: model.wkvForm,
      ...own,
      ...(dw ? { dw } : {}),
    };
    const ce = await HeadCeKernel.create(gpu, model.kernels.matmul, dw);
    const dW = dw ? createGradWeights(gpu, model.weights) : undefined;
    return new GpuBackward(model, k, ce, dW);
  }

  #buffers(B: number, T: number): Buffers {
    if (this.#bufs && this.#bufs.B === B && this.#bufs.T === T) return this.#bufs;
    this.#destroyBuffers();
    const gpu: Gpu = this.model.gpu, cfg = this.model.config;
    const { nLayer: L, nEmbd: C, nHead: H, headSize: N, vocabSize: V } = cfg;
    const rows = B * T, rc = rows * C * 4;
    const buf = (label: string, bytes: number) => createStorage(gpu, `bwd.${label}`, bytes);
    this.#bufs = {
      B,
      T,
      stats: buf("stats", 16),
      dS0: buf("dS0", L * B * H * N * N * 4),
      dS0Sum: buf("dS0Sum", L * H * N * N * 4),
      dShiftAtt: buf("dShiftAtt", L * B * C * 4),
      dShiftFfn: buf("dShiftFfn", L * B * C * 4),
      xs: Array.from({ length: L + 1 }, (_, l) => buf(`x${l}`, rc)),
      vFirst: buf("vFirst", rc),
      dvFirst: buf("dvFirst", rc),
      xNorm: buf("xNorm", rc),
      dx: buf("dx", rc),
      nll: buf("nll", rows * 4),
      logits: this.ce.createLogits(rows, V),
      work: new GpuState(gpu, cfg, B, "bwd.work"),
      grad: createGradWorkspace(gpu, cfg, this.k.wkv, B, T, this.dWeights !== undefined),
    };
    return this.#bufs;
  }

  /** Record loss and gradients; returns where they will be. Reuses buffers for equal B, T. */
  record(rec: Recorder, a: LossAndGradArgs): GradBuffers {
    const cfg = this.model.config, C = cfg.nEmbd, L = cfg.nLayer;
    for (const [n, v] of [["B", a.B], ["T", a.T]] as const) {
      if (!Number.isInteger(v) || v < 1) {
        throw new RangeError(`backward: ${n} = ${v}; expected ≥ 1`);
      }
    }
    if (a.init.kind === "state" && a.init.state.B !== a.B) {
      throw new RangeError(`backward: initial state holds ${a.init.state.B} sequences, B = ${a.B}`);
    }
    const b = this.#buffers(a.B, a.T), rows = a.B * a.T, w = this.#weights(a);
    const ws = this.model.workspace(rows);
    const ctx = { kernels: this.model.kernels, weights: w };
    const dW = this.dWeights;
    if (dW && !a.accumulateWeightGrads) { for (const x of allBuffers(dW)) rec.clear(x); }
    const lifted = this.#lifted(a, b);
    this.#loadInitial(rec, a, b);
    this.model.kernels.embed.record(rec, {
      rows,
      tokens: a.tokens,
      emb: w.emb,
      vecs: w.vecs,
      wOff: modelVec("ln0_w", C),
      bOff: modelVec("ln0_b", C),
      out: b.xs[0],
    });
    const io = (l: number) => ({
      B: a.B,
      T: a.T,
      xIn: b.xs[l],
      xOut: b.xs[l + 1],
      vFirst: b.vFirst,
      state: b.work,
      ...(lifted ? { lifted: { set: lifted.set, state: lifted.work } } : {}),
    });
    for (let l = 0; l < L; l++) {
      recordLayer(ctx, rec, l, io(l), ws);
      if (a.lifted?.dbp && lifted?.set.layers[l]) lifted.set.recordCovariance(rec, l, a.lifted.dbp);
    }
    this.#head(rec, a, b);
    this.#loadInitial(rec, a, b);
    rec.clear(b.dvFirst);
    const s0 = a.init.kind === "state" ? a.init.state.wkv : a.init.wkv;
    const st = a.init.kind === "state" ? a.init.state : undefined;
    const NN = cfg.nHead * cfg.headSize * cfg.headSize;
    for (let l = L - 1; l >= 0; l--) {
      recordLayer(ctx, rec, l, io(l), ws);
      recordLayerBackward(this.k, w, rec, l, ws, b.grad, {
        xIn: b.xs[l],
        dx: b.dx,
        vFirst: b.vFirst,
        dvFirst: b.dvFirst,
        s0,
        s0Off: a.init.kind === "state" ? a.init.state.wkvOffset(l) : l * NN,
        sharedS0: a.init.kind === "shared",
        dS0: b.dS0,
        dShiftAtt: b.dShiftAtt,
        dShiftFfn: b.dShiftFfn,
        ...(dW ? { dW: dW.layers[l] } : {}),
        ...(dW && st ? { shift0: { att: st.att, ffn: st.ffn, off: st.shiftOffset(l) } } : {}),
        ...(lifted
          ? {
            lifted: { set: lifted.set, dLifted: lifted.dLifted, dLiftedGate: lifted.dLiftedGate },
          }
          : {}),
      });
      this.k.wkv.sumBatch(rec, {
        B: a.B,
        n: NN,
        src: b.dS0,
        srcOff: l * a.B * NN,
        dst: b.dS0Sum,
        outOff: l * NN,
      });
    }
    if (dW) this.#embedding(rec, a, b, dW);
    const { stats, dS0, dS0Sum, dShiftAtt, dShiftFfn } = b;
    return {
      ...{ stats, dS0, dS0Sum, dShiftAtt, dShiftFfn },
      ...(dW ? { dWeights: dW } : {}),
      ...(lifted ? { dLifted: lifted.dLifted, dLiftedGate: lifted.dLiftedGate } : {}),
    };
  }

  /** The weights this recording runs with. */
  #weights(a: LossAndGradArgs): GpuWeights {
    return a.weights ?? this.model.activeWeights;
  }

  /** The lifted work state and dŜ0 buffer for `a.lifted` (kept while the set and B stay). */
  #lifted(a: LossAndGradArgs, b: Buffers): Buffers["lifted"] {
    const set = a.lifted?.set;
    if (!set) return undefined;
    if (b.lifted?.set !== set) {
      if (b.lifted) {
        b.lifted.work.destroy();
        b.lifted.dLifted.destroy();
        b.lifted.dLiftedGate.destroy();
      }
      b.lifted = {
        set,
        work: new GpuLiftedState(set, a.B, "bwd.liftedWork"),
        dLifted: createStorage(this.model.gpu, "bwd.dLifted", set.size * 4),
        dLiftedGate: createStorage(this.model.gpu, "bwd.dLiftedGate", set.gateSize * 4),
      };
    }
    return b.lifted;
  }

  /** Weight gradients of ln0 and the embedding from b.dx = dL/dx0, x0 = LN(emb[token]; ln0). */
  #embedding(rec: Recorder, a: LossAndGradArgs, b: Buffers, dW: GpuWeights): void {
    const w = this.#weights(a), C = this.model.config.nEmbd, rows = a.B * a.T;
    const g = b.grad, dw = this.k.dw!;
    dw.embGather(rec, rows, a.tokens, w.emb, g.dxMid);
    const [wOff, bOff] = [modelVec("ln0_w", C), modelVec("ln0_b", C)];
    this.k.norm.record(rec, {
      rows,
      G: 1,
      S: C,
      x: g.dxMid,
      dy: b.dx,
      vecs: w.vecs,
      wOff,
      dx: g.du,
      xhat: g.wScratch,
      label: "norm_backward.dw_ln0", // only weight gradients need dL/d(emb[token])
    });
    recordNormAffine(dw, rec, rows, C, b.dx, g.wScratch!, dW.vecs, wOff, bOff);
    dw.embScatter(rec, rows, a.tokens, g.du, dW.emb);
  }

  /** Copy (or broadcast) the initial state into the working state the forward advances. */
  #loadInitial(rec: Recorder, a: LossAndGradArgs, b: Buffers): void {
    if (a.lifted && b.lifted) b.lifted.work.recordReset(rec);
    if (a.init.kind === "state") {
      const s = a.init.state;
      for (const key of ["att", "wkv", "ffn"] as const) {
        rec.copy(s[key], 0, b.work[key], 0, s[key].size);
      }
      return;
    }
    const { nLayer: L, nHead: H, headSize: N } = this.model.config;
    const bytes = H * N * N * 4;
    rec.clear(b.work.att);
    rec.clear(b.work.ffn);
    for (let l = 0; l < L; l++) {
      for (let s = 0; s < a.B; s++) {
        rec.copy(
          a.init.wkv,
          l * bytes,
          b.work.wkv,
          (b.work.wkvOffset(l) + s * H * N * N) * 4,
          bytes,
        );
      }
    }
  }

  /** ln_out, head, cross-entropy and their backward: b.dx = dL/d(last residual). */
  #head(rec: Recorder, a: LossAndGradArgs, b: Buffers): void {
    const w = this.#weights(a), C = this.model.config.nEmbd, rows = a.B * a.T;
    const xLast = b.xs[this.model.config.nLayer];
    const ln = { vecs: w.vecs, wOff: modelVec("ln_out_w", C) };
    this.model.kernels.layerNorm.record(rec, {
      rows,
      C,
      x: xLast,
      ...ln,
      bOff: modelVec("ln_out_b", C),
      out: b.xNorm,
    });
    this.ce.record(rec, {
      rows,
      xNorm: b.xNorm,
      head: w.head,
      targets: a.targets,
      mask: a.mask,
      logits: b.logits,
      dx: b.grad.du,
      stats: b.stats,
      nll: b.nll,
      l2wrap: a.l2wrap,
      ...(this.dWeights ? { dHead: this.dWeights.head } : {}),
    });
    const xhat = b.grad.wScratch;
    this.k.norm.record(rec, { rows, G: 1, S: C, x: xLast, dy: b.grad.du, ...ln, dx: b.dx, xhat });
    if (this.dWeights) {
      const [wOff, bOff] = [modelVec("ln_out_w", C), modelVec("ln_out_b", C)];
      recordNormAffine(this.k.dw!, rec, rows, C, b.grad.du, xhat!, this.dWeights.vecs, wOff, bOff);
    }
  }

  /**
   * Run {@link record}, submit, and read the loss and the batch-summed dL/dS0 back (one sync).
   *
   * @returns loss, counted positions and dS0Sum (L, H, N, N)
   */
  async lossAndGrad(
    a: LossAndGradArgs,
  ): Promise<{
    loss: number;
    count: number;
    dS0Sum: Float32Array;
    /** with `a.lifted`: dL/dŜ0 in the layout of the set's `s0` */
    dLifted?: Float32Array;
    /** with `a.lifted`: dL/dg in the layout of the set's `gate` */
    dLiftedGate?: Float32Array;
    bufs: GradBuffers;
  }> {
    const gpu = this.model.gpu, cfg = this.model.config;
    const rec = new Recorder(gpu, "backward");
    const bufs = this.record(rec, a);
    rec.submit();
    const stats = await readF32(gpu, bufs.stats, 4);
    const n = cfg.nLayer * cfg.nHead * cfg.headSize * cfg.headSize;
    const dS0Sum = await readF32(gpu, bufs.dS0Sum, n);
    const out = { loss: stats[0], count: stats[1], dS0Sum, bufs };
    if (!bufs.dLifted || !a.lifted) return out;
    const dLifted = await readF32(gpu, bufs.dLifted, a.lifted.set.size);
    const dLiftedGate = await readF32(gpu, bufs.dLiftedGate!, a.lifted.set.gateSize);
    return { ...out, dLifted, dLiftedGate };
  }

  /** Free the backward's buffers, weight gradients included (the model's are its own). */
  destroy(): void {
    this.#destroyBuffers();
    for (const x of this.dWeights ? allBuffers(this.dWeights) : []) x.destroy();
  }

  #destroyBuffers(): void {
    const b = this.#bufs;
    if (!b) return;
    for (const x of [b.stats, b.dS0, b.dS0Sum, b.dShiftAtt, b.dShiftFfn, ...b.xs, b.vFirst]) {
      x.destroy();
    }
    for (
      const x of [b.dvFirst, b.xNorm, b.dx, b.nll, b.logits, b.work.att, b.work.wkv, b.work.ffn]
    ) x.destroy();
    destroyGradWorkspace(b.grad);
    b.lifted?.work.destroy();
    b.lifted?.dLifted.destroy();
    b.lifted?.dLiftedGate.destroy();
    this.#bufs = undefined;
  }
}
