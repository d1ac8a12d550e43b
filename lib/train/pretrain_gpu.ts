/**
 * Full-weight training (pretraining) of a small RWKV-7 on WebGPU: the GPU counterpart of the CPU
 * engine in `pretrain.ts`, with the same options ({@link PretrainOptionsSchema}), data source,
 * Adam (β 0.9/0.99, eps 1e-8, no weight decay), global-norm clipping and warmup + cosine schedule.
 * Forward, backward (with weight gradients), clipping and Adam all run on the GPU; each step
 * reads back only the loss and gradient norm (one CPU sync). The model's weights are updated in
 * place, so its forward uses the trained weights at once; {@link readGpuWeights} copies them back
 * as {@link RwkvWeights}.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { createStorage, readF32, writeStorage } from "../gpu/buffers.ts";
import { Recorder } from "../gpu/recorder.ts";
import { AdamKernel, type Block } from "../kernels/adam.ts";
import type { GpuMatrix } from "../kernels/matmul.ts";
import type { GpuModel } from "../model/gpu_model.ts";
import { allMatrices, type GpuWeights, LAYER_VECS, MODEL_VECS } from "../model/gpu_weights.ts";
import type { LayerWeights, RwkvWeights } from "../model/types.ts";
import { GpuBackward } from "../model/gpu_backward.ts";
import {
  pretrainLoop,
  type PretrainOptions,
  PretrainOptionsSchema,
  type PretrainRow,
  type SequenceSource,
} from "./pretrain.ts";
import { learningRate } from "./schedule.ts";

/**
 * Every parameter block of `w` with its exact element count, in a fixed order (the same order
 * for a model's weights and for its gradients from `createGradWeights`).
 */
export function weightBlocks(w: GpuWeights): Block[] {
  const C = w.config.nEmbd;
  const out: Block[] = [{ buffer: w.vecs, n: MODEL_VECS.length * C }];
  const add = (m?: GpuMatrix) =>
    m?.chunks.forEach((c) => out.push({ buffer: c.buffer, n: c.rows * m.cols }));
  add(w.emb);
  add(w.head);
  for (const lw of w.layers) {
    out.push({ buffer: lw.vecs, n: LAYER_VECS.length * C });
    for (const m of [lw.Wr, lw.Wk, lw.Wv, lw.Wo, lw.w1, lw.w2, lw.a1, lw.a2, lw.v1, lw.v2]) add(m);
    for (const m of [lw.g1, lw.g2, lw.ffn_key, lw.ffn_value]) add(m);
  }
  return out;
}

async function readMatrix(gpu: Gpu, m: GpuMatrix): Promise<Float32Array> {
  const out = new Float32Array(m.rows * m.cols);
  for (const c of m.chunks) {
    out.set(await readF32(gpu, c.buffer, c.rows * m.cols), c.rowStart * m.cols);
  }
  return out;
}

/**
 * Read weights (or gradients shaped like weights) from the GPU as {@link RwkvWeights}. Layer 0
 * has no `v0`/`v1`/`v2` (unused there). One CPU sync per buffer: call it once, after training.
 *
 * @example
 * ```ts ignore
 * const trained = await readGpuWeights(model.gpu, model.weights);
 * ```
 */
export async function readGpuWeights(gpu: Gpu, w: GpuWeights): Promise<RwkvWeights> {
  const C = w.config.nEmbd;
  const vec = (all: Float32Array, i: number) => all.slice(i * C, (i + 1) * C);
  const mv = await readF32(gpu, w.vecs, MODEL_VECS.length * C);
  const blocks: LayerWeights[] = [];
  for (const [l, lw] of w.layers.entries()) {
    const v = await readF32(gpu, lw.vecs, LAYER_VECS.length * C);
    const b: Record<string, Float32Array> = {};
    LAYER_VECS.forEach((name, i) => {
      if (!(l === 0 && name === "v0")) b[name] = vec(v, i);
    });
    for (const [name, m] of Object.entries(lw)) {
      if (name !== "vecs" && m) b[name] = await readMatrix(gpu, m as GpuMatrix);
    }
    blocks.push(b as unknown as LayerWeights);
  }
  return {
    config: { ...w.config },
    emb: await readMatrix(gpu, w.emb),
    ln0_w: vec(mv, MODEL_VECS.indexOf("ln0_w")),
    ln0_b: vec(mv, MODEL_VECS.indexOf("ln0_b")),
    blocks,
    ln_out_w: vec(mv, MODEL_VECS.indexOf("ln_out_w")),
    ln_out_b: vec(mv, MODEL_VECS.indexOf("ln_out_b")),
    head: await readMatrix(gpu, w.head),
  };
}

/** Right-pad sequences of ids into (B, T) tokens / targets / mask (targets = ids shifted). */
function packBatch(seqs: number[][]) {
  const B = seqs.length, T = Math.max(0, ...seqs.map((s) => s.length - 1));
  if (B === 0 || T === 0) {
    throw new RangeError("pretrainGpu: the source returned no sequence of at least 2 tokens");
  }
  const tokens = new Uint32Array(B * T), targets = new Uint32Array(B * T);
  const mask = new Float32Array(B * T);
  seqs.forEach((ids, b) => {
    for (let t = 0; t + 1 < ids.length; t++) {
      tokens[b * T + t] = ids[t];
      targets[b * T + t] = ids[t + 1];
      mask[b * T + t] = 1;
    }
  });
  return { B, T, tokens, targets, mask };
}

/** The batch's token, target and mask buffers, grown when a batch needs more, reused across steps. */
class BatchInputs {
  readonly #io: Partial<Record<"tokens" | "targets" | "mask", GPUBuffer>> = {};
  constructor(readonly gpu: Gpu) {}

  /** Write `data` into the `k` buffer (a larger one when it does not fit); returns it. */
  upload(k: "tokens" | "targets" | "mask", data: Uint32Array | Float32Array): GPUBuffer {
    const io = this.#io;
    if (!io[k] || io[k]!.size < data.byteLength) {
      io[k]?.destroy();
      io[k] = createStorage(this.gpu, `pretrain.${k}`, data.byteLength);
    }
    writeStorage(this.gpu, io[k]!, data);
    return io[k]!;
  }

  destroy(): void {
    for (const b of Object.values(this.#io)) b?.destroy();
  }
}

/** Stop before an update that would make the weights non-finite. */
function checkFinite(loss: number, gradNorm: number, step: number): void {
  if (!Number.isFinite(loss) || !Number.isFinite(gradNorm)) {
    throw new Error(
      `pretrainGpu: loss ${loss}, gradient norm ${gradNorm} at step ${step} (not applied); ` +
        `lower lrInit`,
    );
  }
}

/**
 * Train every weight of `model` in place with Adam on sequences from `source`, on the GPU.
 * Same options, schedule, clipping, data order and loss as the CPU `pretrain`: a model created
 * from `randomWeights(config, seed)` and the same options follows the same loss curve (up to
 * f32 rounding).
 *
 * @returns the loss history and the trained weights read back
 * @throws {Error} when the loss or gradient norm stops being finite (the step is not applied)
 * @example
 * ```ts ignore
 * const model = await GpuModel.create(gpu, randomWeights(config, 0), { textures: false });
 * const { history } = await pretrainGpu(model, source, { steps: 100, seed: 0 });
 * ```
 */
export async function pretrainGpu(
  model: GpuModel,
  source: SequenceSource,
  options: PretrainOptions = {},
): Promise<{ weights: RwkvWeights; history: PretrainRow[] }> {
  const o = PretrainOptionsSchema.parse(options);
  const gpu = model.gpu;
  if (allMatrices(model.weights).some((m) => m.tex)) {
    throw new Error(
      "pretrainGpu updates the weight buffers in place, but this model also reads texture " +
        "copies of them; create it with GpuModel.create(gpu, weights, { textures: false })",
    );
  }
  const bwd = await GpuBackward.create(model, { weightGrads: true });
  const adam = await AdamKernel.create(gpu);
  const params = weightBlocks(model.weights), grads = weightBlocks(bwd.dWeights!);
  const moment = (p: Block, k: string) =>
    createStorage(gpu, `pretrain.${k}.${p.buffer.label}`, p.n * 4);
  const m = params.map((p) => moment(p, "m")), v = params.map((p) => moment(p, "v"));
  const partials = adam.createPartials(grads.length);
  const norm = createStorage(gpu, "pretrain.norm", 8);
  const report = createStorage(gpu, "pretrain.report", 32);
  const { nLayer: L, nHead: H, headSize: N } = model.config;
  const s0 = createStorage(gpu, "pretrain.S0", L * H * N * N * 4); // zero initial state
  const io = new BatchInputs(gpu);
  const { rng, sched, history, progress } = pretrainLoop(o, "pretrain (GPU)");
  try {
    for (let step = 0; step < o.steps; step++) {
      const b = packBatch(source(step, o.batch, rng));
      const rec = new Recorder(gpu, `pretrain.step${step}`);
      const out = bwd.record(rec, {
        B: b.B,
        T: b.T,
        tokens: io.upload("tokens", b.tokens),
        targets: io.upload("targets", b.targets),
        mask: io.upload("mask", b.mask),
        init: { kind: "shared", wkv: s0 },
      });
      adam.gradNorm(rec, grads, partials, norm, o.clip);
      rec.copy(out.stats, 0, report, 0, 16);
      rec.copy(norm, 0, report, 16, 8);
      rec.submit();
      const r = await readF32(gpu, report, 6);
      const loss = r[0], gradNorm = Math.sqrt(r[4]);
      checkFinite(loss, gradNorm, step);
      const lr = learningRate(sched, step);
      const upd = new Recorder(gpu, "pretrain.adam");
      const clip = o.clip > 0 ? norm : undefined;
      params.forEach((p, i) =>
        adam.step(upd, p, grads[i], m[i], v[i], { lr, step: step + 1, clip })
      );
      upd.submit();
      history.push({ step: step + 1, loss, lr, gradNorm });
      progress.update(step + 1, { loss: loss.toFixed(4) });
    }
  } finally {
    await progress.finish();
    for (const x of [...m, ...v, partials, norm, report, s0]) x.destroy();
    io.destroy();
    bwd.destroy();
  }
  return { weights: await readGpuWeights(gpu, model.weights), history };
}
