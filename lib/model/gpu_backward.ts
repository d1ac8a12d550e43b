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
import { HeadCeKernel } from "../kernels/head_ce.ts";
import { type LayerIo, recordLayer } from "./gpu_layer.ts";
import { GpuLiftedState } from "./gpu_lifted.ts";
import type { GpuModel } from "./gpu_model.ts";
import { GpuState } from "./gpu_state.ts";
import { allBuffers, type GpuWeights, modelVec } from "./gpu_weights.ts";
import {
  type BackwardKernels,
  backwardKernels,
  createGradWeights,
  createGradWorkspace,
  destroyGradWorkspace,
  recordLayerBackward,
  recordNormAffine,
} from "./gpu_layer_backward.ts";
import type {
  Buffers,
  GpuBackwardOptions,
  GradBuffers,
  LossAndGradArgs,
} from "./gpu_backward_types.ts";

export type {
  GpuBackwardOptions,
  GradBuffers,
  InitialState,
  LossAndGradArgs,
} from "./gpu_backward_types.ts";
export { createGradWeights } from "./gpu_grad_workspace.ts";

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
    for (const [n, v] of [["B", a.B], ["T", a.T]] as const) {
      if (!Number.isInteger(v) || v < 1) {
        throw new RangeError(`backward: ${n} = ${v}; expected ≥ 1`);
      }
    }
    if (a.init.kind === "state" && a.init.state.B !== a.B) {
      throw new RangeError(`backward: initial state holds ${a.init.state.B} sequences, B = ${a.B}`);
    }
    const b = this.#buffers(a.B, a.T);
    const dW = this.dWeights;
    if (dW && !a.accumulateWeightGrads) { for (const x of allBuffers(dW)) rec.clear(x); }
    const lifted = this.#lifted(a, b);
    this.#forwardSaving(rec, a, b, lifted);
    this.#head(rec, a, b);
    this.#backwardLayers(rec, a, b, lifted);
    if (dW) this.#embedding(rec, a, b, dW);
    const { stats, dS0, dS0Sum, dShiftAtt, dShiftFfn } = b;
    return {
      ...{ stats, dS0, dS0Sum, dShiftAtt, dShiftFfn },
      ...(dW ? { dWeights: dW } : {}),
      ...(lifted ? { dLifted: lifted.dLifted, dLiftedGate: lifted.dLiftedGate } : {}),
    };
  }

  /** The forward of layer l over the saved residuals (its input b.xs[l], output b.xs[l + 1]). */
  #layerIo(a: LossAndGradArgs, b: Buffers, l: number, lifted: Buffers["lifted"]): LayerIo {
    return {
      B: a.B,
      T: a.T,
      xIn: b.xs[l],
      xOut: b.xs[l + 1],
      vFirst: b.vFirst,
      state: b.work,
      ...(lifted ? { lifted: { set: lifted.set, state: lifted.work } } : {}),
    };
  }

  /** Embedding and every layer from the initial state, saving each layer's input residual. */
  #forwardSaving(rec: Recorder, a: LossAndGradArgs, b: Buffers, lifted: Buffers["lifted"]): void {
    const C = this.model.config.nEmbd, w = this.#weights(a);
    const ws = this.model.workspace(a.B * a.T);
    const ctx = { kernels: this.model.kernels, weights: w };
    this.#loadInitial(rec, a, b);
    this.model.kernels.embed.record(rec, {
      rows: a.B * a.T,
      tokens: a.tokens,
      emb: w.emb,
      vecs: w.vecs,
      wOff: modelVec("ln0_w", C),
      bOff: modelVec("ln0_b", C),
      out: b.xs[0],
    });
    for (let l = 0; l < this.model.config.nLayer; l++) {
      recordLayer(ctx, rec, l, this.#layerIo(a, b, l, lifted), ws);
      if (a.lifted?.dbp && lifted?.set.layers[l]) lifted.set.recordCovariance(rec, l, a.lifted.dbp);
    }
  }

  /**
   * For l = L−1 … 0: recompute layer l from the initial state's copy, back-propagate b.dx
   * through it (dS0, dShift, weight gradients) and sum its dS0 over the batch.
   */
  #backwardLayers(rec: Recorder, a: LossAndGradArgs, b: Buffers, lifted: Buffers["lifted"]) {
    const cfg = this.model.config, w = this.#weights(a), dW = this.dWeights;
    const ws = this.model.workspace(a.B * a.T);
    const ctx = { kernels: this.model.kernels, weights: w };
    this.#loadInitial(rec, a, b);
    rec.clear(b.dvFirst);
    const s0 = a.init.kind === "state" ? a.init.state.wkv : a.init.wkv;
    const st = a.init.kind === "state" ? a.init.state : undefined;
    const NN = cfg.nHead * cfg.headSize * cfg.headSize;
    for (let l = cfg.nLayer - 1; l >= 0; l--) {
      recordLayer(ctx, rec, l, this.#layerIo(a, b, l, lifted), ws);
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
      const src = { src: b.dS0, srcOff: l * a.B * NN };
      this.k.wkv.sumBatch(rec, { B: a.B, n: NN, ...src, dst: b.dS0Sum, outOff: l * NN });
    }
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
