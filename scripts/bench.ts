/**
 * WebGPU benchmark: matmul GFLOP/s beside numpy's on the same matrices, then per model shape
 * prefill and generation tokens/s, the state-tuning step (forward + backward to S0), GPU memory
 * accounted for, and per-kernel time with achieved GFLOP/s for the matmuls.
 *
 *     deno task bench [--quick] [--shapes tiny,0.1B,0.4B,1.5B] [--json PATH] [--vs-torch]
 *
 * Per-kernel times come from a dispatch-level timer: the forward is captured, then each
 * kernel's dispatches are replayed alone in one submit and timed by wall clock (the Recorder has
 * no timestamp-query hook yet). On a software adapter the default shapes are tiny and 0.1B;
 * larger ones run only when `--shapes` asks for them and the host has the memory.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { getGpu, type Gpu } from "../lib/gpu/device.ts";
import { createStorage, readF32, uploadStorage } from "../lib/gpu/buffers.ts";
import { type Binding, Recorder } from "../lib/gpu/recorder.ts";
import { MatmulKernel } from "../lib/kernels/matmul.ts";
import { GpuModel } from "../lib/model/gpu_model.ts";
import { loadModel } from "../lib/model/load.ts";
import { OFFICIAL_SHAPES, randomWeights } from "../lib/model/random.ts";
import type { RwkvConfig, RwkvWeights } from "../lib/model/types.ts";
import { GpuBackward } from "../lib/train/gpu_backward.ts";

interface Row {
  shape: string;
  test: string;
  value: number;
  unit: string;
  note?: string;
}

const TINY = new URL("../../shared/fixtures/models/tiny-rwkv7-834K.safetensors", import.meta.url)
  .pathname;
const rows: Row[] = [];

function add(shape: string, test: string, value: number, unit: string, note?: string): void {
  rows.push({ shape, test, value, unit, note });
  console.error(`  ${shape} ${test}: ${value.toFixed(unit === "tok/s" ? 1 : 2)} ${unit}`);
}

const med = (a: number[]) => [...a].sort((p, q) => p - q)[a.length >> 1];
const seq = (T: number, V: number) => Array.from({ length: T }, (_, i) => (i * 7919 + 13) % V);

/** Seconds of `fn` (median of `reps`). */
async function timeIt(reps: number, fn: () => Promise<void>): Promise<number> {
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn();
    ts.push((performance.now() - t0) / 1000);
  }
  return med(ts);
}

// ---- numpy reference ----------------------------------------------------------------------

const NUMPY = `
import json, sys, time
import numpy as np
out = []
for M, K, N in json.loads(sys.argv[1]):
    x = np.random.rand(M, K).astype(np.float32); w = np.random.rand(N, K).astype(np.float32)
    n = max(1, min(200, int(2e9 / (2 * M * K * N)))); x @ w.T; ts = []
    for r in range(5):
        t0 = time.perf_counter()
        for i in range(n): x @ w.T
        ts.append((time.perf_counter() - t0) / n)
    out.append(2 * M * K * N / sorted(ts)[2] / 1e9)
print(json.dumps(out))
`;

/** numpy's GFLOP/s for `x · Wᵀ` on each shape, or null when python3/numpy are absent. */
async function numpyGflops(shapes: number[][]): Promise<number[] | null> {
  try {
    const p = await new Deno.Command("python3", { args: ["-c", NUMPY, JSON.stringify(shapes)] })
      .output();
    if (!p.success) throw new Error(new TextDecoder().decode(p.stderr).trim().split("\n").pop());
    return JSON.parse(new TextDecoder().decode(p.stdout));
  } catch (e) {
    console.log(`numpy comparison skipped: ${(e as Error).message}`);
    return null;
  }
}

async function matmulSection(gpu: Gpu, quick: boolean): Promise<void> {
  const mm = await MatmulKernel.create(gpu, { tune: "probe" });
  const t = mm.tuning;
  console.log(
    `matmul tiles (${t.source}): linear ${t.linear.TR}x${t.linear.TC}, ` +
      `lowrank ${t.lowrank.TR}x${4 * t.lowrank.TC} per invocation`,
  );
  const shapes = quick ? [[64, 768, 768]] : [[512, 512, 512], [64, 768, 768], [1, 768, 768]];
  const np = await numpyGflops(shapes);
  for (const [si, [M, K, N]] of shapes.entries()) {
    const x = createStorage(gpu, "bench.x", M * K * 4);
    const w = createStorage(gpu, "bench.w", K * N * 4);
    const y = createStorage(gpu, "bench.y", M * N * 4);
    for (const entry of ["linear", "lowrank"] as const) {
      const run = async (n: number) => {
        const rec = new Recorder(gpu, "bench.matmul");
        for (let i = 0; i < n; i++) mm[entry](rec, { M, K, Nc: N, x, w, y });
        await rec.flush();
      };
      const one = await timeIt(1, () => run(1));
      const n = Math.max(1, Math.min(20, Math.round(0.3 / one)));
      const s = (await timeIt(quick ? 1 : 3, () => run(n))) / n;
      const g = (2 * M * K * N) / s / 1e9;
      const ref = np?.[si];
      const note = ref
        ? `numpy ${ref.toFixed(1)} GFLOP/s, ratio ${(100 * g / ref).toFixed(1)}%`
        : "";
      add(`matmul ${M}x${K}x${N}`, entry === "linear" ? "x·Wᵀ" : "x·M", g, "GFLOP/s", note);
    }
    x.destroy();
    w.destroy();
    y.destroy();
  }
}

// ---- per-kernel timer ---------------------------------------------------------------------

interface Captured {
  pipeline: GPUComputePipeline;
  params: number[];
  bindings: Binding[];
  groups: readonly [number, number?, number?];
  label: string;
}

/** A Recorder that keeps the dispatches instead of submitting them. */
class CaptureRecorder extends Recorder {
  ops: Captured[] = [];
  override dispatch(
    pipeline: GPUComputePipeline,
    params: number[],
    bindings: Binding[],
    groups: readonly [number, number?, number?],
    label = pipeline.label,
  ): this {
    this.ops.push({ pipeline, params, bindings, groups, label });
    return this;
  }
  override copy(): this {
    return this;
  }
  override clear(): this {
    return this;
  }
}

/** Time each kernel (by label, chunk suffixes merged) of one recorded forward. */
async function perKernel(model: GpuModel, shape: string, T: number): Promise<void> {
  const { gpu } = model;
  const cap = new CaptureRecorder(gpu, "capture");
  const tokens = uploadStorage(
    gpu,
    "bench.tokens",
    Uint32Array.from(seq(T, model.config.vocabSize)),
  );
  const st = model.createState(1);
  model.recordForward(cap, { B: 1, T, tokens, state: st, logits: "last" });
  const groups = new Map<string, Captured[]>();
  for (const op of cap.ops) {
    const key = op.label.replace(/\[.*?\]/g, "");
    groups.set(key, [...(groups.get(key) ?? []), op]);
  }
  const sync = await timeIt(3, () => gpu.device.queue.onSubmittedWorkDone());
  const out: { key: string; s: number; flop: number }[] = [];
  for (const [key, ops] of groups) {
    const s = await timeIt(1, async () => {
      const rec = new Recorder(gpu, `bench.${key}`);
      for (const o of ops) rec.dispatch(o.pipeline, o.params, o.bindings, o.groups, o.label);
      await rec.flush();
    });
    const flop = key.startsWith("matmul")
      ? ops.reduce((f, o) => f + 2 * o.params[0] * o.params[1] * o.params[2], 0)
      : 0;
    out.push({ key, s: Math.max(s - sync, 1e-6), flop });
  }
  const total = out.reduce((a, o) => a + o.s, 0);
  out.sort((a, b) => b.s - a.s);
  console.log(`\nper-kernel time, ${shape} forward T=${T} (dispatch-level timer):`);
  console.log("| kernel | dispatches | ms | share | GFLOP/s |");
  console.log("| ------ | ---------: | -: | ----: | ------: |");
  for (const o of out) {
    const g = o.flop ? (o.flop / o.s / 1e9).toFixed(2) : "";
    const n = groups.get(o.key)!.length;
    console.log(
      `| ${o.key} | ${n} | ${(o.s * 1e3).toFixed(1)} | ${(100 * o.s / total).toFixed(0)}% | ${g} |`,
    );
    if (o.flop) add(shape, `kernel ${o.key} T=${T}`, o.flop / o.s / 1e9, "GFLOP/s");
  }
  tokens.destroy();
  st.destroy();
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
        B: 1,
        T: 1,
        tokens,
        tokOff: i,
        state: st,
        logits: "last",
        out,
        outOff: i * V,
      });
    }
    rec.submit();
    await readF32(gpu, out, V, (steps - 1) * V);
  };
  await run();
  const s = await timeIt(reps, run);
  tokens.destroy();
  out.destroy();
  st.destroy();
  return s / steps;
}

/** Forward + backward to dL/dS0 of one sequence of T tokens (state tuning); seconds per step. */
async function trainStep(model: GpuModel, T: number, reps: number): Promise<number> {
  const { gpu } = model, cfg = model.config;
  const bw = await GpuBackward.create(model);
  const ids = seq(T + 1, cfg.vocabSize);
  const tokens = uploadStorage(gpu, "bench.tok", Uint32Array.from(ids.slice(0, T)));
  const targets = uploadStorage(gpu, "bench.tgt", Uint32Array.from(ids.slice(1)));
  const mask = uploadStorage(gpu, "bench.mask", new Float32Array(T).fill(1));
  const n = cfg.nLayer * cfg.nHead * cfg.headSize * cfg.headSize;
  const wkv = createStorage(gpu, "bench.S0", n * 4);
  const step = async () => {
    await bw.lossAndGrad({ B: 1, T, tokens, targets, mask, init: { kind: "shared", wkv } });
  };
  await step();
  const s = await timeIt(reps, step);
  bw.destroy();
  for (const b of [tokens, targets, mask, wkv]) b.destroy();
  return s;
}

/** Bytes of the buffers the forward holds for `rows` rows: weights, workspace, one state. */
function accountedBytes(model: GpuModel, rows: number): number {
  const ws = model.workspace(rows) as unknown as Record<string, unknown>;
  let b = model.weights.bytes;
  for (const v of Object.values(ws)) if (v instanceof GPUBuffer) b += v.size;
  const st = model.createState(1);
  b += st.att.size + st.wkv.size + st.ffn.size;
  st.destroy();
  return b + 3 * rows * model.config.nEmbd * 4; // residual ping-pong and v_first
}

async function benchShape(
  shape: string,
  weights: RwkvWeights,
  o: { quick: boolean; trainTs: number[] },
): Promise<void> {
  const gpu = await getGpu();
  const model = await GpuModel.create(gpu, weights);
  const big = model.config.vocabSize > 4096;
  const reps = o.quick || big ? 1 : 3;
  const Ts = o.quick ? [64] : [64, 512];
  for (const T of Ts) add(shape, `prefill T=${T}`, T / await prefill(model, T, reps), "tok/s");
  const steps = big ? 4 : 16;
  add(shape, `generate ×${steps}/submit`, 1 / await generateBatched(model, steps, reps), "tok/s");
  for (const T of o.trainTs) {
    add(shape, `state-tuning step T=${T}`, T / await trainStep(model, T, reps), "tok/s");
  }
  const T = Math.max(...Ts, ...o.trainTs);
  add(
    shape,
    `GPU memory, forward T=${T}`,
    accountedBytes(model, T) / 2 ** 20,
    "MiB",
    "weights + workspace + state",
  );
  await perKernel(model, shape, 64);
  model.destroy();
}

/** Why a shape is skipped, or null to run it. */
function skipReason(gpu: Gpu, cfg: RwkvConfig, asked: boolean): string | null {
  const { nLayer: L, nEmbd: C, vocabSize: V, dimFfn: F } = cfg;
  const bytes = 4 * (2 * V * C + L * (4 * C * C + 2 * C * F));
  if (bytes > 0.5 * Deno.systemMemoryInfo().total) {
    return `${(bytes / 2 ** 30).toFixed(1)} GiB of f32 weights exceed half the host memory`;
  }
  if (gpu.isFallback && !asked) return "software adapter: ask with --shapes";
  return null;
}

/** Run scripts/bench_torch.py; returns its JSON rows or null (absent PyTorch is reported). */
/** One row of bench_torch.py's output. */
interface TorchRow {
  shape: string;
  T: number;
  device: string;
  dtype: string;
  tokensPerSecond: number;
}

async function vsTorch(trainTs: number[]): Promise<TorchRow[] | null> {
  const script = new URL("./bench_torch.py", import.meta.url).pathname;
  const p = await new Deno.Command("python3", { args: [script, "--T", trainTs.join(",")] })
    .output();
  const text = new TextDecoder().decode(p.stdout).trim();
  if (!p.success) {
    console.log(`--vs-torch: bench_torch.py failed: ${new TextDecoder().decode(p.stderr).trim()}`);
    return null;
  }
  const doc = JSON.parse(text.split("\n").pop()!);
  if (!doc.torch) {
    console.log(`--vs-torch: ${doc.reason}; no PyTorch ratios`);
    return null;
  }
  return doc.rows;
}

const USAGE =
  `Usage: deno task bench [--quick] [--shapes tiny,0.1B,0.4B,1.5B] [--json PATH] [--vs-torch]

  --quick     fewer repetitions and T = 64 only
  --shapes    models to measure: the tiny fixture and seeded random official shapes
              (default: tiny,0.1B on a software adapter, all four on a GPU)
  --json      also write the rows as JSON
  --vs-torch  run scripts/bench_torch.py (the same state-tuning step in PyTorch) and print ratios

Prints the matmul GFLOP/s beside numpy's, prefill / generation / state-tuning tokens/s,
GPU memory and per-kernel times for the current adapter.`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      quick: { type: "boolean", default: false },
      shapes: { type: "string" },
      json: { type: "string" },
      "vs-torch": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) return console.log(USAGE);
  const gpu = await getGpu();
  console.log(`adapter: ${gpu.description}${gpu.isFallback ? " (software)" : ""}`);
  const quick = values.quick!;
  const soft = gpu.isFallback || /llvmpipe/i.test(gpu.description);
  const asked = values.shapes !== undefined;
  const shapes = (values.shapes ?? (soft ? "tiny,0.1B" : "tiny,0.1B,0.4B,1.5B")).split(",")
    .map((s) => s.trim());
  const trainTs = quick ? [64] : [64, 512];
  await matmulSection(gpu, quick);
  for (const shape of shapes) {
    if (shape === "tiny") {
      let weights: RwkvWeights;
      try {
        weights = (await loadModel(TINY)).weights;
      } catch {
        console.log(`skip tiny: fixture ${TINY} not found`);
        continue;
      }
      await benchShape("tiny", weights, { quick, trainTs });
      continue;
    }
    const cfg = OFFICIAL_SHAPES[shape as keyof typeof OFFICIAL_SHAPES];
    if (!cfg) throw new RangeError(`unknown shape "${shape}"; expected tiny, 0.1B, 0.4B or 1.5B`);
    const why = skipReason(gpu, cfg, asked || shape === "0.1B");
    if (why) {
      console.log(`skip ${shape}: ${why}`);
      continue;
    }
    await benchShape(shape, randomWeights(cfg, 1), { quick, trainTs: soft ? [64] : trainTs });
  }
  const torch = values["vs-torch"] ? await vsTorch(trainTs) : null;
  console.log("\n| shape | test | value | unit | note |");
  console.log("| ----- | ---- | ----: | ---- | ---- |");
  for (const r of rows) {
    console.log(`| ${r.shape} | ${r.test} | ${r.value.toFixed(2)} | ${r.unit} | ${r.note ?? ""} |`);
  }
  for (const t of torch ?? []) {
    const mine = rows.find((r) => r.shape === t.shape && r.test === `state-tuning step T=${t.T}`);
    const ratio = mine ? ` (WebGPU/torch ${(mine.value / t.tokensPerSecond).toFixed(3)})` : "";
    console.log(
      `torch ${t.device} ${t.dtype} ${t.shape} T=${t.T}: ${t.tokensPerSecond} tok/s${ratio}`,
    );
  }
  if (values.json) {
    const doc = { adapter: gpu.description, date: new Date().toISOString(), quick, rows, torch };
    await Deno.writeTextFile(values.json, JSON.stringify(doc, null, 2) + "\n");
    console.log(`wrote ${values.json}`);
  }
}

if (import.meta.main) await main();
