/**
 * The kernel-upscaled ("lifted") state of docs/MATH.md §5 as a {@link TrainablePart} for `tune`: kind
 * `lifted`, tensor `s0` (every lifted layer's Ŝ0, the layout of {@link GpuLifted.s0}), trained by
 * the loop's Adam with its own learning-rate scale; R moves only by DBP after each step.
 *
 * The per-head gate of the writes mode will be one more entry of {@link LiftedPart.tensors}
 * (`gate`, gradient from `GradBuffers.dLiftedGate`) and of {@link LiftedPart.read} /
 * {@link LiftedPart.write}; see the marked places.
 *
 * @module
 */
import { createStorage, readF32, writeStorage } from "../gpu/buffers.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { type DbpRows, GpuLifted, saveLifted } from "../model/gpu_lifted.ts";
import type { GpuModel } from "../model/gpu_model.ts";
import type { LiftedLayers } from "../ref/lifted_types.ts";
import type { Batch, Example } from "../train/data.ts";
import type { GradBuffers } from "../model/gpu_backward.ts";
import type {
  MicroBatchContext,
  PartBackwardArgs,
  PartTensor,
  TrainablePart,
} from "../train/parts.ts";
import { Rng } from "../util/rng.ts";
import { type DbpConfig, type DbpConfigInput, DbpConfigSchema } from "./config.ts";

/** Options of {@link LiftedPart.create}. */
export interface LiftedPartOptions {
  /**
   * the lifted layers (from `initLiftedLayers` or `loadLifted`), or a set already on the GPU
   * (trained in place and left to the caller to destroy)
   */
  layers: LiftedLayers | GpuLifted;
  /**
   * DBP after each step ({@link DbpConfigSchema} options; `{}` = the defaults). Omitted or
   * false: R fixed and no decorrelation loss recorded. `{ enabled: false }`: R fixed, losses
   * recorded. Sampling (`sample` > 0) draws one sample of the step's kk and r vectors for every
   * layer and head.
   */
  dbp?: DbpConfigInput | false;
  /** Ŝ0's learning rate relative to the schedule's. Default 1. */
  lrScale?: number;
}

/** Ŝ0 (and R through DBP) trained by `tune`; create with {@link LiftedPart.create}. */
export class LiftedPart implements TrainablePart {
  readonly kind = "lifted";
  readonly tensors: PartTensor[];
  #idx: GPUBuffer[] = [];
  #rows?: DbpRows[];
  #count = 0;

  private constructor(
    readonly set: GpuLifted,
    readonly lrScale: number,
    readonly dbp: DbpConfig | undefined,
    private readonly grad: GPUBuffer,
    private readonly owns: boolean,
    /** the gate's gradient, when some layer writes (memory-mode gates get zero gradient) */
    private readonly gateGrad?: GPUBuffer,
  ) {
    this.tensors = [{ name: "s0", param: set.s0, grad, n: set.size }];
    if (gateGrad) {
      this.tensors.push({ name: "gate", param: set.gate, grad: gateGrad, n: set.gateSize });
    }
  }

  /**
   * Upload (or adopt) the lifted set and allocate its gradient.
   *
   * @example
   * ```ts ignore
   * const layers = initLiftedLayers(weights, calib, LiftedConfigSchema.parse({ enabled: true }));
   * const lifted = await LiftedPart.create(model, { layers, dbp: {} });
   * await tune(model, ds, { parts: [await StatePart.create(model), lifted], steps: 100 });
   * await lifted.save("lifted.safetensors");
   * ```
   */
  static async create(model: GpuModel, o: LiftedPartOptions): Promise<LiftedPart> {
    const owns = !(o.layers instanceof GpuLifted);
    const set = o.layers instanceof GpuLifted
      ? o.layers
      : await GpuLifted.create(model.gpu, model.config, o.layers);
    const dbp = o.dbp === undefined || o.dbp === false ? undefined : DbpConfigSchema.parse(o.dbp);
    const lrScale = o.lrScale ?? 1;
    if (!(lrScale >= 0) || !Number.isFinite(lrScale)) {
      throw new RangeError(`lifted part: lrScale must be a finite number ≥ 0, got ${lrScale}`);
    }
    const grad = createStorage(model.gpu, "tune.lifted.grad", set.size * 4);
    const writes = set.layers.some((ly) => ly?.writes);
    const gateGrad = writes
      ? createStorage(model.gpu, "tune.lifted.gateGrad", set.gateSize * 4)
      : undefined;
    return new LiftedPart(set, lrScale, dbp, grad, owns, gateGrad);
  }

  /** With DBP: the step's sample of kk (kind 0) and r (kind 1) rows, one list per micro-batch. */
  beginStep(step: number, examples: Example[][], batches: Batch[]): void {
    const dbp = this.dbp;
    if (!dbp) return;
    // writes mode (every lifted layer writes): the written k rows too (kind 2, stride 3)
    const stride = this.set.layers.every((ly) => !ly || ly.writes) ? 3 : 2;
    let all: [number, number][] = [];
    batches.forEach((b, a) => {
      examples[a].forEach((ex, bi) => {
        for (let t = 0; t < ex.ids.length - 1; t++) {
          for (let kind = 0; kind < stride; kind++) all.push([a, (bi * b.T + t) * stride + kind]);
        }
      });
    });
    if (dbp.sample > 0 && dbp.sample < all.length) {
      all = new Rng(dbp.seed * 1_000_003 + step).shuffle(all).slice(0, dbp.sample);
    }
    this.#count = all.length;
    const gpu = this.set.gpu;
    this.#rows = batches.map((_, a) => {
      const list = Uint32Array.from(all.filter((x) => x[0] === a).map((x) => x[1]));
      if (!this.#idx[a] || this.#idx[a].size < list.byteLength) {
        this.#idx[a]?.destroy();
        this.#idx[a] = createStorage(gpu, `tune.dbpIdx${a}`, Math.max(256, list.byteLength));
      }
      writeStorage(gpu, this.#idx[a], list);
      return { idx: this.#idx[a], n: list.length, accumulate: a > 0, stride };
    });
  }

  /** The set (every sequence from Ŝ0) and, while training with DBP, the slot's rows. */
  backwardArgs(ctx: MicroBatchContext): PartBackwardArgs {
    const dbp = ctx.validation ? undefined : this.#rows?.[ctx.slot];
    return { lifted: { set: this.set, ...(dbp ? { dbp } : {}) } };
  }

  /** grad (+)= dL/dŜ0 (writes mode: also the gate's gradient from `bufs.dLiftedGate`). */
  recordGrads(rec: Recorder, bufs: GradBuffers, accumulate: boolean): void {
    if (!bufs.dLifted) throw new Error("lifted part: the backward produced no dL/dŜ0");
    this.set.recordAdd(rec, bufs.dLifted, this.grad, accumulate);
    if (this.gateGrad) {
      if (!bufs.dLiftedGate) throw new Error("lifted part: the backward produced no dL/dg");
      this.set.recordAddGate(rec, bufs.dLiftedGate, this.gateGrad, accumulate);
    }
  }

  /** DBP moves R (when on and the step had rows). */
  afterUpdate(rec: Recorder): void {
    const dbp = this.dbp;
    if (!dbp || this.#count === 0) return;
    this.set.recordDbp(rec, {
      count: this.#count,
      lr: dbp.lr,
      kappa: dbp.kappa,
      enabled: dbp.enabled,
    });
  }

  /** With DBP: the step's decorrelation and correlation losses (means over layers and heads). */
  async historyFields(): Promise<Record<string, number>> {
    if (!this.dbp) return {};
    const { decorrelationLoss, correlationLoss } = await this.set.readDbpLosses();
    return { decorrelationLoss, correlationLoss };
  }

  /**
   * `s0` (flat, the set's layout), and per lifted layer `R.{l}` (H·M·M) and, for the Gaussian
   * map, `support.{l}` (H·M·N) and `gamma.{l}` (H): everything a resume needs to continue
   * exactly, even if the calibration data changed.
   */
  async read(): Promise<Record<string, Float32Array>> {
    const layers = await this.layers();
    const out: Record<string, Float32Array> = {};
    const s0 = new Float32Array(this.set.size);
    layers.forEach((s, l) => {
      const ly = this.set.layers[l];
      if (!s || !ly) return;
      s0.set(s.s0, ly.s0Off);
      out[`R.${l}`] = Float32Array.from(s.R);
      if (s.support) out[`support.${l}`] = Float32Array.from(s.support);
      if (s.gamma) out[`gamma.${l}`] = Float32Array.from(s.gamma);
    });
    if (this.gateGrad) out.gate = await readF32(this.set.gpu, this.set.gate, this.set.gateSize);
    return { s0, ...out };
  }

  /** Restore what {@link read} returned. */
  write(t: Record<string, Float32Array>): void {
    const { nHead: H } = this.set.config, gpu = this.set.gpu;
    if (t.s0?.length !== this.set.size) {
      throw new RangeError(
        `lifted part: s0 has ${t.s0?.length ?? 0} values, expected ${this.set.size}`,
      );
    }
    writeStorage(gpu, this.set.s0, t.s0);
    if (this.gateGrad && t.gate) {
      if (t.gate.length !== this.set.gateSize) {
        throw new RangeError(
          `lifted part: gate has ${t.gate.length} values, expected ${this.set.gateSize}`,
        );
      }
      writeStorage(gpu, this.set.gate, t.gate);
    }
    this.set.layers.forEach((ly, l) => {
      if (!ly) return;
      const R = t[`R.${l}`];
      if (R?.length !== H * ly.M * ly.M) {
        throw new RangeError(
          `lifted part: R.${l} has ${R?.length ?? 0} values, expected ${H * ly.M * ly.M}`,
        );
      }
      writeStorage(gpu, ly.arena, R); // R is the first block of the layer's arena
      if (ly.featureMap !== "gaussian") return;
      const N = this.set.config.headSize;
      for (
        const [k, n, off] of [["support", H * ly.M * N, ly.supOff], [
          "gamma",
          H,
          ly.gamOff,
        ]] as const
      ) {
        const x = t[`${k}.${l}`];
        if (x === undefined) continue; // checkpoints before support / γ were kept: as built
        if (x.length !== n) {
          throw new RangeError(`lifted part: ${k}.${l} has ${x.length} values, expected ${n}`);
        }
        writeStorage(gpu, ly.arena, x, off * 4);
      }
    });
  }

  /** The current lifted layers (Ŝ0, R, and the support vectors and γ, read back). */
  async layers(): Promise<LiftedLayers> {
    const out = await this.set.read(), { nHead: H, headSize: N } = this.set.config;
    for (const [l, ly] of this.set.layers.entries()) {
      const s = out[l];
      if (!ly || !s || ly.featureMap !== "gaussian") continue;
      const arena = await readF32(this.set.gpu, ly.arena, ly.gamOff + H);
      s.support = arena.slice(ly.supOff, ly.supOff + H * ly.M * N);
      s.gamma = arena.slice(ly.gamOff, ly.gamOff + H);
    }
    return out;
  }

  /** Save the current lifted layers as `lifted.safetensors` (see {@link saveLifted}). */
  async save(path: string): Promise<void> {
    await saveLifted(path, await this.layers(), this.set.config.nHead);
  }

  /** Free the gradient and DBP buffers, and the set when this part uploaded it. */
  destroy(): void {
    for (const b of [this.grad, ...(this.gateGrad ? [this.gateGrad] : []), ...this.#idx]) {
      b.destroy();
    }
    this.#idx = [];
    if (this.owns) this.set.destroy();
  }
}
