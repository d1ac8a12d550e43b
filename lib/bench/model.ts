/**
 * The per-model part of `deno task bench` (lib/bench/suite.ts): prefill, generation and the
 * state-tuning step (forward + backward to S0 + clipped Adam on S0) of one model, its GPU
 * memory by part, and its per-kernel times.
 *
 * Memory parts: `weights` (the uploaded matrices and vectors, with their texture copies when
 * the matmuls read textures), `workspace` (the forward's layer
 * workspace and residual buffers for T rows), `scratch` (buffers the forward kernels own, such
 * as the WKV uniform windows), `state` (one RNN state, or the tuned S0),
 * `backward` (every live buffer the backward allocated: activations kept per layer, gradient
 * scratch, logits, its work state), `optimiser` (Adam moments, norm, partial sums), `inputs`
 * (tokens, targets, mask). Buffers are counted by a tracker of `createBuffer`/`destroy`.
 *
 * @module
 */
import { getGpu } from "../gpu/device.ts";
import { createStorage, readF32, uploadStorage } from "../gpu/buffers.ts";
import { Recorder } from "../gpu/recorder.ts";
import { AdamKernel } from "../kernels/adam.ts";
import { GpuModel } from "../model/gpu_model.ts";
import { memoryPlan } from "../model/memory_plan.ts";
import { allBuffers, type UploadOptions } from "../model/gpu_weights.ts";
import type { RwkvWeights } from "../model/types.ts";
import { GpuBackward, type LossAndGradArgs } from "../model/gpu_backward.ts";
import {
  BufferTracker,
  type KernelTime,
  type Peak,
  profileKernels,
  tagMatmuls,
  type TimerKind,
} from "./profile.ts";

/** One result line. */
export interface Row {
  shape: string;
  test: string;
  value: number;
  unit: string;
  note?: string;
}
/** Per-kernel time of one profiled recording. */
export type KernelRow = KernelTime & { shape: string; phase: string; T: number };
/** GPU memory accounted for one phase. */
export interface MemoryRow {
  shape: string;
  phase: "forward" | "state-tuning step";
  T: number;
  /** accounted: the sum of `parts` */
  bytes: number;
  /** lib/model/memory_plan.ts's total for the same phase and T */
  plannedBytes: number;
  parts: Record<string, number>;
}
/** What to measure for each model. */
export interface Opts {
  /** weight storage of the models (`GpuModel.create` options) */
  upload?: UploadOptions;
  quick: boolean;
  prefillTs: number[];
  trainTs: number[];
  timer: TimerKind;
  peak: Peak;
}

/** Everything measured, for the table and the JSON file. */
export const results = {
  rows: [] as Row[],
  kernels: [] as KernelRow[],
  memory: [] as MemoryRow[],
  skipped: [] as { shape: string; reason: string }[],
};

/** Add a result row (echoed to stderr unless `quiet`). */
export function add(
  shape: string,
  test: string,
  value: number,
  unit: string,
  note?: string,
  quiet = false,
): void {
  results.rows.push({ shape, test, value, unit, ...(note ? { note } : {}) });
  if (!quiet) {
    console.error(`  ${shape} ${test}: ${value.toFixed(unit === "tok/s" ? 1 : 2)} ${unit}`);
  }
}

const med = (a: number[]) => [...a].sort((p, q) => p - q)[a.length >> 1];
/** The benchmark's token ids: (i·7919 + 13) mod V. */
export const seq = (T: number, V: number) =>
  Array.from({ length: T }, (_, i) => (i * 7919 + 13) % V);
const mib = (b: number) => b / 2 ** 20;

/** Seconds of `fn` (median of `reps`). */
export async function timeIt(reps: number, fn: () => Promise<void>): Promise<number> {
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn();
    ts.push((performance.now() - t0) / 1000);
  }
  return med(ts);
}

// ---- per-kernel times ---------------------------------------------------------------------

async function perKernel(
  model: GpuModel,
  where: { shape: string; phase: string; T: number },
  record: (rec: Recorder) => void,
  o: Opts,
): Promise<void> {
  const out = await profileKernels(model.gpu, record, o.timer, o.peak);
  const f = (x: number | null, d = 2) => x === null ? "" : x.toFixed(d);
  console.log(
    `\nper-kernel time, ${where.shape} ${where.phase} T=${where.T} (${o.timer} timer; ` +
      `peak ${f(o.peak.gflops, 0)} GFLOP/s, ${f(o.peak.gbs, 0)} GB/s: ${o.peak.source}):`,
  );
  console.log("| kernel | dispatches | ms | share | GFLOP/s | GB/s (bound bytes) | of peak |");
  console.log("| ------ | ---------: | -: | ----: | ------: | -----------------: | ------: |");
  for (const k of out) {
    const frac = k.peakFraction === null ? "" : `${(100 * k.peakFraction).toFixed(1)}%`;
    console.log(
      `| ${k.kernel} | ${k.dispatches} | ${k.ms.toFixed(2)} | ${(100 * k.share).toFixed(0)}% | ` +
        `${f(k.gflops)} | ${f(k.gbs)} | ${frac} |`,
    );
    results.kernels.push({ ...where, ...k });
    if (k.gflops !== null && where.phase === "forward") {
      add(
        where.shape,
        `kernel ${k.kernel} T=${where.T}`,
        k.gflops,
        "GFLOP/s",
        `${k.timer} timer`,
        true,
      );
    }
  }
}

// ---- model benchmarks ---------------------------------------------------------------------

async function prefill(model: GpuModel, T: number, reps: number): Promise<number> {
  const st = model.createState(1);
  const tokens = [seq(T, model.config.vocabSize)];
  await model.forward([tokens[0].slice(0, 1)], st);
  model.workspace(T);
  const s = await timeIt(reps, async () => {
    st.reset();
    await model.forward(tokens, st);
  });
  st.destroy();
  return s;
}

/** `steps` single-token forwards recorded into one submit, logits read back once. */
async function generateBatched(model: GpuModel, steps: number, reps: number): Promise<number> {
  const { gpu } = model, V = model.config.vocabSize;
  const tokens = uploadStorage(gpu, "bench.tokens", Uint32Array.from(seq(steps, V)));
  const out = createStorage(gpu, "bench.logits", steps * V * 4);
  const st = model.createState(1);
  const run = async () => {
    const rec = new Recorder(gpu, "bench.generate");
    for (let i = 0; i < steps; i++) {
      model.recordForward(rec, {
        ...{ B: 1, T: 1, tokens, tokOff: i, state: st, logits: "last" },
        ...{ out, outOff: i * V },
      });
    }
    rec.submit();
    await readF32(gpu, out, V, (steps - 1) * V);
  };
  await run();
  const s = await timeIt(reps, run);
  for (const b of [tokens, out]) b.destroy();
  st.destroy();
  return s / steps;
}

/** Forward workspace bytes for `rows` rows: layer workspace + the model's residual buffers. */
function workspaceBytes(model: GpuModel, rows: number): number {
  const ws = model.workspace(rows) as unknown as Record<string, unknown>;
  let b = BufferTracker.largestByLabel("model.", new Set(allBuffers(model.weights)));
  for (const v of Object.values(ws)) if (v instanceof GPUBuffer) b += v.size;
  return b;
}

/** Record the accounted bytes of one phase beside lib/model/memory_plan.ts's plan for it. */
function addMemory(
  model: GpuModel,
  shape: string,
  phase: MemoryRow["phase"],
  T: number,
  parts: MemoryRow["parts"],
) {
  const bytes = Object.values(parts).reduce((s, x) => s + x, 0);
  const plannedBytes = memoryPlan(model.config, {
    mode: phase === "forward" ? "forward" : "state-tuning",
    T,
    maxStorageBufferBindingSize: model.gpu.limits.maxStorageBufferBindingSize,
    weightDtype: model.weights.head.dtype,
    textures: model.weights.head.tex !== undefined,
    maxTextureDimension2D: model.gpu.limits.maxTextureDimension2D,
  }).total;
  results.memory.push({ shape, phase, T, bytes, plannedBytes, parts });
  const note = Object.entries(parts).map(([k, v]) => `${k} ${mib(v).toFixed(1)}`).join(" + ");
  add(
    shape,
    `GPU memory, ${phase} T=${T}`,
    mib(bytes),
    "MiB",
    `${note}; plan ${mib(plannedBytes).toFixed(1)}`,
  );
}

/** One state-tuning step's buffers: S0, Adam moments, one sequence of T tokens, the backward. */
class TrainRig {
  private constructor(
    readonly model: GpuModel,
    readonly args: LossAndGradArgs,
    readonly adam: AdamKernel,
    readonly opt: { m: GPUBuffer; v: GPUBuffer; norm: GPUBuffer; partials: GPUBuffer },
    readonly bw: GpuBackward,
    readonly mark: number,
  ) {}

  static async create(model: GpuModel, T: number): Promise<TrainRig> {
    const { gpu } = model, cfg = model.config;
    const ids = seq(T + 1, cfg.vocabSize), n = cfg.nLayer * cfg.nHead * cfg.headSize ** 2;
    const args: LossAndGradArgs = {
      B: 1,
      T,
      tokens: uploadStorage(gpu, "bench.tok", Uint32Array.from(ids.slice(0, T))),
      targets: uploadStorage(gpu, "bench.tgt", Uint32Array.from(ids.slice(1))),
      mask: uploadStorage(gpu, "bench.mask", new Float32Array(T).fill(1)),
      init: { kind: "shared", wkv: createStorage(gpu, "bench.S0", n * 4) },
    };
    const adam = await AdamKernel.create(gpu);
    const opt = {
      m: createStorage(gpu, "bench.m", n * 4),
      v: createStorage(gpu, "bench.v", n * 4),
      norm: createStorage(gpu, "bench.norm", 8),
      partials: adam.createPartials(1),
    };
    const mark = BufferTracker.mark();
    return new TrainRig(model, args, adam, opt, await GpuBackward.create(model), mark);
  }

  /** Record forward, backward to dS0, global-norm clip to 1 and Adam on S0 (step `i` ≥ 1). */
  record(rec: Recorder, i = 1): GPUBuffer {
    const { m, v, norm, partials } = this.opt;
    const out = this.bw.record(rec, this.args);
    const n = out.dS0Sum.size / 4, s0 = this.args.init as { wkv: GPUBuffer };
    this.adam.gradNorm(rec, [{ buffer: out.dS0Sum, n }], partials, norm, 1);
    this.adam.step(rec, { buffer: s0.wkv, n }, { buffer: out.dS0Sum, n }, m, v, {
      ...{ lr: 1e-2, step: i, clip: norm },
    });
    return out.stats;
  }

  /** Seconds per step (one submit and one loss read-back per step, as tuning does). */
  async seconds(reps: number): Promise<number> {
    let i = 0;
    const step = async () => {
      const rec = new Recorder(this.model.gpu, "bench.step");
      const stats = this.record(rec, ++i);
      rec.submit();
      await readF32(this.model.gpu, stats, 4);
    };
    await step();
    return await timeIt(reps, step);
  }

  /** Bytes of the step by part (call after a step ran). */
  parts(): Record<string, number> {
    const a = this.args, o = this.opt, m = this.model;
    const backward = BufferTracker.since(this.mark, (l) => !/^(ws|model)\./.test(l));
    return {
      weights: m.weights.bytes,
      workspace: workspaceBytes(m, a.T),
      backward,
      state: (a.init as { wkv: GPUBuffer }).wkv.size,
      optimiser: o.m.size + o.v.size + o.norm.size + o.partials.size,
      inputs: a.tokens.size + a.targets.size + a.mask.size,
    };
  }

  destroy(): void {
    this.bw.destroy();
    const a = this.args;
    for (const b of [a.tokens, a.targets, a.mask, (a.init as { wkv: GPUBuffer }).wkv]) b.destroy();
    for (const b of Object.values(this.opt)) b.destroy();
  }
}

/** Measure one model: per-kernel times at the smallest T, then each T ascending. */
export async function benchShape(shape: string, w: RwkvWeights, o: Opts): Promise<void> {
  const mark = BufferTracker.mark();
  const model = await GpuModel.create(await getGpu(), w, o.upload);
  // right after creation the model's live buffers are its weights and its kernels' own scratch
  const weights = new Set(allBuffers(model.weights));
  const scratch = BufferTracker.since(mark, (_, b) => !weights.has(b));
  try {
    await measure(model, shape, { ...o, scratch });
  } finally {
    model.destroy();
  }
}

async function measure(
  model: GpuModel,
  shape: string,
  o: Opts & { scratch: number },
): Promise<void> {
  const gpu = model.gpu;
  tagMatmuls(model.kernels.matmul);
  const V = model.config.vocabSize, big = V > 4096;
  const reps = o.quick || big ? 1 : 3;
  const Ts = [...new Set([...o.prefillTs, ...o.trainTs])].sort((a, b) => a - b);
  const T0 = Ts[0];
  for (const T of Ts) { // ascending, so each T's workspace is the one measured
    if (T === T0) {
      const tokens = uploadStorage(gpu, "bench.tokens", Uint32Array.from(seq(T, V)));
      const state = model.createState(1);
      const record = (rec: Recorder) =>
        model.recordForward(rec, { B: 1, T, tokens, state, logits: "last" });
      await perKernel(model, { shape, phase: "forward", T }, record, o);
      tokens.destroy();
      state.destroy();
    }
    if (o.prefillTs.includes(T)) {
      add(shape, `prefill T=${T}`, T / await prefill(model, T, reps), "tok/s");
      const st = model.createState(1);
      const state = st.att.size + st.wkv.size + st.ffn.size;
      st.destroy();
      const parts = {
        ...{ weights: model.weights.bytes, workspace: workspaceBytes(model, T) },
        ...{ scratch: o.scratch, state },
      };
      addMemory(model, shape, "forward", T, parts);
    }
    if (o.trainTs.includes(T)) {
      const rig = await TrainRig.create(model, T);
      try {
        add(shape, `state-tuning step T=${T}`, T / await rig.seconds(reps), "tok/s");
        addMemory(model, shape, "state-tuning step", T, { ...rig.parts(), scratch: o.scratch });
        if (T === T0) {
          const where = { shape, phase: "state-tuning step", T };
          await perKernel(model, where, (rec) => rig.record(rec), o);
        }
      } finally {
        rig.destroy();
      }
    }
  }
  const steps = big ? 4 : 16;
  add(shape, `generate ×${steps}/submit`, 1 / await generateBatched(model, steps, reps), "tok/s");
}
