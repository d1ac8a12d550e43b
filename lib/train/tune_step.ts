/**
 * One optimiser step of {@link tune} over a list of {@link TrainablePart}s: the micro-batches'
 * backward and gradient accumulation, the global gradient norm over every part's tensors, Adam on
 * each tensor, and the validation loss. The GPU buffers of a run (Adam moments, batch uploads,
 * the zero initial state) live here.
 *
 * @module
 */
import { shared } from "../gpu/shared.ts";
import { createStorage, readF32, writeStorage } from "../gpu/buffers.ts";
import { Recorder } from "../gpu/recorder.ts";
import { AdamKernel } from "../kernels/adam.ts";
import type { GpuModel } from "../model/gpu_model.ts";
import { type Batch, type Example, makeBatch } from "./data.ts";
import { GpuBackward, type GradBuffers, type LossAndGradArgs } from "../model/gpu_backward.ts";
import type { MicroBatchContext, PartBackwardArgs, PartTensor, TrainablePart } from "./parts.ts";

/** What one step measured (before the update). */
export interface StepStats {
  /** mean loss over the micro-batches */
  loss: number;
  /** global gradient norm over every part's tensors (of the mean gradient) */
  gradNorm: number;
  /** counted tokens of the step */
  tokens: number;
}

/** Adam moments of one tensor. */
interface Moments {
  part: TrainablePart;
  tensor: PartTensor;
  m: GPUBuffer;
  v: GPUBuffer;
}

/** The GPU side of a tuning run; create with {@link StepRunner.create}. */
export class StepRunner {
  #batchBufs: GPUBuffer[] = [];
  #zeroInit?: GPUBuffer;

  private constructor(
    readonly model: GpuModel,
    readonly parts: readonly TrainablePart[],
    readonly moments: Moments[],
    private readonly bwd: GpuBackward,
    private readonly adam: AdamKernel,
    private readonly partials: GPUBuffer,
    private readonly norm: GPUBuffer,
    private readonly stats: GPUBuffer,
    private readonly o: { gradAccum: number; clip: number; l2wrap: boolean },
  ) {}

  /**
   * Allocate a run's buffers (Adam moments zero) and compile the backward with every part's
   * {@link TrainablePart.backwardOptions} merged.
   *
   * @throws {RangeError} when there is no part, or two parts share a kind or a tensor name
   */
  static async create(
    model: GpuModel,
    parts: readonly TrainablePart[],
    o: { gradAccum: number; clip: number; l2wrap: boolean },
  ): Promise<StepRunner> {
    if (parts.length === 0) throw new RangeError("tune: parts is empty; pass at least one part");
    const kinds = parts.map((p) => p.kind);
    const dup = kinds.find((k, i) => kinds.indexOf(k) !== i);
    if (dup) throw new RangeError(`tune: two parts of kind "${dup}"; each kind may appear once`);
    const gpu = model.gpu;
    const moments: Moments[] = [];
    for (const part of parts) {
      const names = new Set<string>();
      for (const tensor of part.tensors) {
        if (names.has(tensor.name)) {
          throw new RangeError(`tune: part "${part.kind}" has two tensors "${tensor.name}"`);
        }
        names.add(tensor.name);
        const label = `tune.${part.kind}.${tensor.name}`;
        moments.push({
          part,
          tensor,
          m: createStorage(gpu, `${label}.m`, tensor.n * 4),
          v: createStorage(gpu, `${label}.v`, tensor.n * 4),
        });
      }
    }
    const weightGrads = parts.some((p) => p.backwardOptions?.weightGrads);
    const bwd = await GpuBackward.create(model, weightGrads ? { weightGrads } : {});
    const adam = await shared(gpu, "adam", () => AdamKernel.create(gpu)); // one per device
    return new StepRunner(
      model,
      parts,
      moments,
      bwd,
      adam,
      adam.createPartials(moments.length),
      createStorage(gpu, "tune.norm", 8),
      createStorage(gpu, "tune.stats", 16 * o.gradAccum),
      o,
    );
  }

  /** Record and run the step's backward over `examples` (one list per micro-batch). */
  async backward(step: number, examples: Example[][]): Promise<StepStats> {
    const gpu = this.model.gpu, A = this.o.gradAccum;
    const batches = examples.map(makeBatch);
    for (const p of this.parts) p.beginStep?.(step, examples, batches);
    const rec = new Recorder(gpu, `tune.step${step}`);
    let tokens = 0;
    for (let a = 0; a < A; a++) {
      tokens += batches[a].count;
      const ctx: MicroBatchContext = { step, slot: a, examples: examples[a], batch: batches[a] };
      const bufs: GradBuffers = this.bwd.record(rec, this.#args(ctx));
      for (const p of this.parts) p.recordGrads(rec, bufs, a > 0);
      rec.copy(bufs.stats, 0, this.stats, a * 16, 16);
    }
    const grads = this.moments.map((x) => ({ buffer: x.tensor.grad, n: x.tensor.n }));
    this.adam.gradNorm(rec, grads, this.partials, this.norm, this.o.clip * A);
    rec.submit();
    const stats = await readF32(gpu, this.stats, 4 * A);
    const nrm = await readF32(gpu, this.norm, 2);
    let loss = 0;
    for (let a = 0; a < A; a++) loss += stats[a * 4] / A;
    return { loss, gradNorm: Math.sqrt(nrm[0]) / A, tokens };
  }

  /** Adam on every tensor (lr · part.lrScale · tensor.lrScale), then each part's afterUpdate. */
  update(step: number, lr: number): void {
    const rec = new Recorder(this.model.gpu, "tune.adam");
    const clip = this.o.clip > 0 ? this.norm : undefined;
    for (const { part, tensor: t, m, v } of this.moments) {
      const block = { buffer: t.param, n: t.n }, grad = { buffer: t.grad, n: t.n };
      const tlr = lr * part.lrScale * (t.lrScale ?? 1);
      this.adam.step(rec, block, grad, m, v, { lr: tlr, step: step + 1, clip });
    }
    for (const p of this.parts) p.afterUpdate?.(rec, step + 1);
    rec.submit();
  }

  /** Token-weighted mean masked loss over `val` with the parts as they are now. */
  async validationLoss(val: Example[], B: number, step: number): Promise<number> {
    let sum = 0, count = 0;
    for (let i = 0; i < val.length; i += B) {
      const examples = val.slice(i, i + B), batch = makeBatch(examples);
      const rec = new Recorder(this.model.gpu, "tune.val");
      const bufs = this.bwd.record(
        rec,
        this.#args({ step, slot: 0, examples, batch, validation: true }),
      );
      rec.submit();
      const st = await readF32(this.model.gpu, bufs.stats, 2);
      sum += st[0] * st[1];
      count += st[1];
    }
    return sum / Math.max(1, count);
  }

  /** The backward's arguments: the batch, then every part's share (merged left to right). */
  #args(ctx: MicroBatchContext): LossAndGradArgs {
    const shares: PartBackwardArgs[] = this.parts.map((p) => p.backwardArgs(ctx));
    const inits = shares.filter((s) => s.init).length;
    if (inits > 1) throw new RangeError(`tune: ${inits} parts set the initial state; at most one`);
    const merged = Object.assign({}, ...shares) as PartBackwardArgs;
    return {
      ...this.#upload(ctx.batch, ctx.slot),
      init: merged.init ?? { kind: "shared", wkv: this.#zero() },
      l2wrap: this.o.l2wrap,
      ...merged,
    } as LossAndGradArgs;
  }

  /** A zero (L, H, N, N) state, for runs where no part trains S0. */
  #zero(): GPUBuffer {
    const { nLayer: L, nHead: H, headSize: N } = this.model.config;
    this.#zeroInit ??= createStorage(this.model.gpu, "tune.zeroS0", L * H * N * N * 4);
    return this.#zeroInit;
  }

  /** Upload a batch into reusable buffers (one set per micro-batch slot). */
  #upload(b: Batch, slot: number) {
    const gpu = this.model.gpu, list = this.#batchBufs, rows = b.B * b.T;
    const get = (i: number, label: string) => {
      const k = slot * 3 + i;
      if (!list[k] || list[k].size < rows * 4) {
        list[k]?.destroy();
        list[k] = createStorage(gpu, `tune.${label}${slot}`, Math.max(rows, 256) * 4);
      }
      return list[k];
    };
    const tok = new Uint32Array(rows), tgt = new Uint32Array(rows), msk = new Float32Array(rows);
    for (let r = 0; r < b.B; r++) {
      tok.set(b.tokens[r], r * b.T);
      tgt.set(b.targets[r], r * b.T);
      msk.set(b.mask[r], r * b.T);
    }
    const tokens = get(0, "tokens"), targets = get(1, "targets"), mask = get(2, "mask");
    writeStorage(gpu, tokens, tok);
    writeStorage(gpu, targets, tgt);
    writeStorage(gpu, mask, msk);
    return { B: b.B, T: b.T, tokens, targets, mask };
  }

  /** Every part's {@link TrainablePart.read} and Adam moments, named `{kind}.{name}`. */
  async readAll(): Promise<Record<string, Float32Array>> {
    const out: Record<string, Float32Array> = {};
    for (const p of this.parts) {
      for (const [k, v] of Object.entries(await p.read())) out[`${p.kind}.${k}`] = v;
    }
    for (const { part, tensor: t, m, v } of this.moments) {
      out[`${part.kind}.${t.name}.adam_m`] = await readF32(this.model.gpu, m, t.n);
      out[`${part.kind}.${t.name}.adam_v`] = await readF32(this.model.gpu, v, t.n);
    }
    return out;
  }

  /**
   * Restore what {@link readAll} returned into the parts and the moments.
   *
   * @throws {RangeError} naming `source` when a part's tensor is missing, extra or of the wrong
   *   length (the checkpoint belongs to another run)
   */
  writeAll(tensors: Record<string, Float32Array>, source: string): void {
    const kinds = new Set(this.parts.map((p) => p.kind));
    const stored = new Set(Object.keys(tensors).map((k) => k.split(".")[0]));
    const extra = [...stored].filter((k) => !kinds.has(k));
    const missing = [...kinds].filter((k) => !stored.has(k));
    if (extra.length || missing.length) {
      throw new RangeError(
        `${source} holds the parts ${[...stored].join(", ")} but this run trains ` +
          `${[...kinds].join(", ")}: resume with the same parts (the same part flags), or ` +
          `use a new --out folder`,
      );
    }
    const need = (k: string, n: number) => {
      const x = tensors[k];
      if (!x || x.length !== n) {
        throw new RangeError(
          `${source}: tensor "${k}" has ${x?.length ?? 0} values, this run needs ${n}; the ` +
            `checkpoint belongs to another model or part configuration (use a new --out folder)`,
        );
      }
      return x;
    };
    for (const p of this.parts) {
      for (const t of p.tensors) need(`${p.kind}.${t.name}`, t.n);
      const own: Record<string, Float32Array> = {};
      const pre = `${p.kind}.`;
      for (const [k, v] of Object.entries(tensors)) {
        if (k.startsWith(pre) && !/\.adam_[mv]$/.test(k)) own[k.slice(pre.length)] = v;
      }
      p.write(own);
    }
    for (const { part, tensor: t, m, v } of this.moments) {
      writeStorage(this.model.gpu, m, need(`${part.kind}.${t.name}.adam_m`, t.n));
      writeStorage(this.model.gpu, v, need(`${part.kind}.${t.name}.adam_v`, t.n));
    }
  }

  /** Free the run's buffers (not the parts'). */
  destroy(): void {
    for (const { m, v } of this.moments) [m, v].forEach((b) => b.destroy());
    for (const b of [this.partials, this.norm, this.stats, ...this.#batchBufs]) b.destroy();
    this.#zeroInit?.destroy();
    this.bwd.destroy();
  }
}
