/**
 * WebGPU benchmark: matmul GFLOP/s beside numpy's on the same matrices, then per model shape
 * prefill and generation tokens/s, the state-tuning step (forward + backward to S0 + clipped
 * Adam on S0) at T ∈ {64, 512}, the GPU memory accounted for by the forward and by the step,
 * and per-kernel time with achieved GFLOP/s (matmuls) or GB/s (others) and the fraction of the
 * adapter's peak. `--vs-torch` runs scripts/bench_torch.py (the same step in PyTorch, fp32 and
 * bf16) and prints the WebGPU/PyTorch ratio pair by pair.
 *
 *     deno task bench [--quick] [--shapes tiny,0.1B,0.4B,1.5B] [--train-T 64,512] [--json PATH]
 *       [--vs-torch] [--python PATH] [--timer auto|timestamp|replay] [--peak-gflops G]
 *       [--peak-gbs B]
 *
 * Per-kernel times come from timestamp queries when the adapter has `timestamp-query`, else
 * from a dispatch-level replay timer (scripts/_bench_profile.ts); the table and JSON say which.
 * On a software adapter the default shapes are tiny and 0.1B, and the step runs at T = 512 only
 * for tiny unless `--train-T` asks. Shapes that do not fit are skipped with the reason.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { getGpu, type Gpu } from "../lib/gpu/device.ts";
import { isSoftwareAdapter } from "../lib/gpu/software.ts";
import { createStorage } from "../lib/gpu/buffers.ts";
import { Recorder } from "../lib/gpu/recorder.ts";
import { MatmulKernel } from "../lib/kernels/matmul.ts";
import { uploadMatrixTextures } from "../lib/kernels/matmul_tex.ts";
import { uploadMatrix, useWeightTextures } from "../lib/model/gpu_weights.ts";
import { loadModel } from "../lib/model/load.ts";
import { planSkipReason } from "../lib/model/memory_plan.ts";
import { OFFICIAL_SHAPES, randomWeights } from "../lib/model/random.ts";
import type { RwkvConfig, RwkvWeights } from "../lib/model/types.ts";
import { parseWith, runMain, UsageError } from "./_cli.ts";
import { BufferTracker, resolvePeak, type TimerKind } from "./_bench_profile.ts";
import { add, benchShape, results, timeIt } from "./_bench_model.ts";

const TINY = new URL("../../shared/fixtures/models/tiny-rwkv7-834K.safetensors", import.meta.url)
  .pathname;

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
a = np.ones(1 << 24, np.float32); b = np.empty_like(a); np.copyto(b, a); ts = []
for r in range(5):
    t0 = time.perf_counter(); np.copyto(b, a); ts.append(time.perf_counter() - t0)
print(json.dumps({"gflops": out, "gbs": 2 * a.nbytes / sorted(ts)[2] / 1e9}))
`;

interface Numpy {
  gflops: number[];
  gbs: number;
}

/** numpy's GFLOP/s for `x · Wᵀ` on each shape and its copy GB/s, or null without numpy. */
async function numpyRef(python: string, shapes: number[][]): Promise<Numpy | null> {
  try {
    const p = await new Deno.Command(python, { args: ["-c", NUMPY, JSON.stringify(shapes)] })
      .output();
    if (!p.success) throw new Error(new TextDecoder().decode(p.stderr).trim().split("\n").pop());
    return JSON.parse(new TextDecoder().decode(p.stdout));
  } catch (e) {
    console.log(`numpy comparison skipped (${python}): ${(e as Error).message}`);
    return null;
  }
}

/** GFLOP/s of one recorded product (batched into one submit of ≈ 0.3 s), added as a row. */
async function timeProduct(
  gpu: Gpu,
  [M, K, N]: number[],
  test: string,
  quick: boolean,
  numpy: number | undefined,
  record: (rec: Recorder) => void,
): Promise<void> {
  const run = async (n: number) => {
    const rec = new Recorder(gpu, "bench.matmul");
    for (let i = 0; i < n; i++) record(rec);
    await rec.flush();
  };
  const one = await timeIt(1, () => run(1));
  const n = Math.max(1, Math.min(20, Math.round(0.3 / one)));
  const s = (await timeIt(quick ? 1 : 3, () => run(n))) / n;
  const g = (2 * M * K * N) / s / 1e9;
  const note = numpy
    ? `numpy ${numpy.toFixed(1)} GFLOP/s, ratio ${(100 * g / numpy).toFixed(1)}%`
    : "";
  add(`matmul ${M}x${K}x${N}`, test, g, "GFLOP/s", note);
}

async function matmulSection(gpu: Gpu, quick: boolean, python: string): Promise<Numpy | null> {
  const mm = await MatmulKernel.create(gpu, { tune: "probe" });
  const t = mm.tuning;
  console.log(
    `matmul tiles (${t.source}): linear ${t.linear.TR}x${t.linear.TC}, ` +
      `lowrank ${t.lowrank.TR}x${4 * t.lowrank.TC} per invocation`,
  );
  const shapes = quick ? [[64, 768, 768]] : [[512, 512, 512], [64, 768, 768], [1, 768, 768]];
  const np = await numpyRef(python, shapes);
  for (const [si, [M, K, N]] of shapes.entries()) {
    const x = createStorage(gpu, "bench.x", M * K * 4);
    const w = createStorage(gpu, "bench.w", K * N * 4);
    const y = createStorage(gpu, "bench.y", M * N * 4);
    for (const entry of ["linear", "lowrank"] as const) {
      const test = entry === "linear" ? "x·Wᵀ" : "x·M";
      await timeProduct(gpu, [M, K, N], test, quick, np?.gflops[si], (rec) => {
        mm[entry](rec, { rows: M, K, Nc: N, x, w, y });
      });
    }
    for (const b of [x, w, y]) b.destroy();
  }
  return np;
}

/**
 * The same products through `linearMatrix` / `lowrankMatrix` over uploaded weight matrices:
 * f32 and f16 storage buffers, and their texture copies (the software-adapter path).
 */
async function matrixSection(gpu: Gpu, quick: boolean, np: Numpy | null): Promise<void> {
  const mm = await MatmulKernel.create(gpu);
  await mm.prepare("f16");
  await mm.prepareTextures();
  const shapes = quick ? [[64, 768, 768]] : [[512, 512, 512], [64, 768, 768], [1, 768, 768]];
  for (const [si, [M, K, N]] of shapes.entries()) {
    const x = createStorage(gpu, "bench.x", M * K * 4);
    const y = createStorage(gpu, "bench.y", M * N * 4);
    const data = new Float32Array(K * N).map((_, i) => ((i * 2654435761) % 1000) / 1000 - 0.5);
    for (const dtype of ["f32", "f16"] as const) {
      for (const tex of [false, true]) {
        const W = uploadMatrix(gpu, "bench.W", data, N, K, undefined, dtype);
        const Mx = uploadMatrix(gpu, "bench.M", data, K, N, undefined, dtype);
        if (tex) {
          W.tex = uploadMatrixTextures(gpu, "bench.W", data, N, K, dtype);
          Mx.tex = uploadMatrixTextures(gpu, "bench.M", data, K, N, dtype);
        }
        for (const entry of ["linear", "lowrank"] as const) {
          const test = `${entry === "linear" ? "x·Wᵀ" : "x·M"} ${dtype}${tex ? " texture" : ""}`;
          await timeProduct(gpu, [M, K, N], test, quick, np?.gflops[si], (rec) => {
            if (entry === "linear") mm.linearMatrix(rec, W, { rows: M, x, y });
            else mm.lowrankMatrix(rec, Mx, { rows: M, x, y });
          });
        }
        for (const m of [W, Mx]) {
          m.chunks.forEach((c) => c.buffer.destroy());
          m.tex?.parts.forEach((p) => p.texture.destroy());
        }
      }
    }
    for (const b of [x, y]) b.destroy();
  }
}

/** Why a shape is skipped, or null to run it. */
function skipReason(
  gpu: Gpu,
  cfg: RwkvConfig,
  T: number,
  asked: boolean,
  upload: { weightDtype: "f32" | "f16"; textures: boolean },
): string | null {
  const { nLayer: L, nEmbd: C, vocabSize: V, dimFfn: F } = cfg;
  const host = Deno.systemMemoryInfo().total;
  const bytes = 4 * (2 * V * C + L * (4 * C * C + 2 * C * F));
  if (bytes > 0.5 * host) {
    return `${(bytes / 2 ** 30).toFixed(1)} GiB of f32 weights exceed half the host memory`;
  }
  const soft = isSoftwareAdapter(gpu);
  const { maxBufferSize, maxStorageBufferBindingSize } = gpu.limits;
  const limits = {
    maxBufferSize,
    maxStorageBufferBindingSize,
    ...(soft ? { memoryBytes: host } : {}),
  };
  const why = planSkipReason(cfg, { T, B: 1, ...upload }, limits);
  if (why) return why;
  if (soft && !asked) return "software adapter: ask with --shapes";
  return null;
}

/** One row of bench_torch.py's output. */
interface TorchRow {
  shape: string;
  T: number;
  device: string;
  dtype: string;
  tokensPerSecond: number;
}

/** bench_torch.py on the first interpreter that has PyTorch; rows, or null with the reason. */
async function vsTorch(
  pythons: string[],
  shape: string,
  Ts: number[],
  reps: number,
): Promise<TorchRow[] | string> {
  const script = new URL("./bench_torch.py", import.meta.url).pathname;
  const args = [script, "--shapes", shape, "--T", Ts.join(","), "--fixture", TINY];
  let reason = "no Python interpreter found";
  for (const py of pythons) {
    let p: Deno.CommandOutput;
    try {
      p = await new Deno.Command(py, { args: [...args, "--reps", String(reps)] }).output();
    } catch (e) {
      reason = `${py}: ${(e as Error).message}`;
      continue;
    }
    const err = new TextDecoder().decode(p.stderr).trim();
    if (!p.success) return `bench_torch.py failed under ${py}: ${err.split("\n").pop()}`;
    const doc = JSON.parse(new TextDecoder().decode(p.stdout).trim().split("\n").pop()!);
    if (doc.torch) return doc.rows;
    reason = doc.reason;
  }
  return reason;
}

/** WebGPU / PyTorch tokens/s of the state-tuning step, pair by pair. */
interface TorchRatio {
  shape: string;
  T: number;
  dtype: string;
  device: string;
  webgpuTokensPerSecond: number;
  torchTokensPerSecond: number;
  ratio: number;
}

/** bench_torch.py for every shape that ran, and the ratios to this run's steps. */
async function torchSection(
  pythons: string[],
  ran: { shape: string; Ts: number[] }[],
  quick: boolean,
): Promise<{ torch: TorchRow[] | null; torchStatus: string; torchRatios: TorchRatio[] }> {
  let torch: TorchRow[] | null = null, torchStatus = "no shape ran";
  for (const r of ran) {
    const got = await vsTorch(pythons, r.shape, r.Ts, quick ? 1 : 3);
    if (typeof got === "string") {
      console.log(`--vs-torch: ${got}; no PyTorch ratios`);
      return { torch, torchStatus: got, torchRatios: [] };
    }
    torch = [...(torch ?? []), ...got];
    torchStatus = "ran";
  }
  const torchRatios: TorchRatio[] = [];
  for (const t of torch ?? []) {
    const test = `state-tuning step T=${t.T}`;
    const mine = results.rows.find((r) => r.shape === t.shape && r.test === test);
    if (!mine) continue;
    torchRatios.push({
      ...{ shape: t.shape, T: t.T, dtype: t.dtype, device: t.device },
      webgpuTokensPerSecond: mine.value,
      torchTokensPerSecond: t.tokensPerSecond,
      ratio: mine.value / t.tokensPerSecond,
    });
  }
  return { torch, torchStatus, torchRatios };
}

const Args = z.object({
  quick: z.boolean(),
  shapes: z.string().optional(),
  json: z.string().optional(),
  "vs-torch": z.boolean(),
  "train-T": z.string().regex(/^\d+(,\d+)*$/, "expected token counts such as 64,512").optional(),
  timer: z.enum(["auto", "timestamp", "replay"]).default("auto"),
  "peak-gflops": z.coerce.number().positive().optional(),
  "peak-gbs": z.coerce.number().positive().optional(),
  python: z.string().optional(),
  weights: z.enum(["f32", "f16"], { error: "--weights must be f32 or f16" }).default("f32"),
  textures: z.enum(["auto", "on", "off"], { error: "--textures must be auto, on or off" })
    .default("auto"),
  help: z.boolean(),
});

const USAGE =
  `Usage: deno task bench [--quick] [--shapes tiny,0.1B,0.4B,1.5B] [--train-T 64,512] [--json PATH]
                        [--vs-torch] [--python PATH] [--timer auto|timestamp|replay]
                        [--peak-gflops G] [--peak-gbs B] [--weights f32|f16]
                        [--textures auto|on|off]

  --quick        fewer repetitions, T = 64 only (unless --train-T)
  --shapes       models: the tiny fixture and seeded random official shapes
                 (default: tiny,0.1B on a software adapter, all four on a GPU)
  --train-T      state-tuning step lengths for every shape (default 64,512; on a software
                 adapter 512 only for tiny)
  --json         also write rows, per-kernel times, memory and torch ratios as JSON
  --vs-torch     run scripts/bench_torch.py (the same state-tuning step in PyTorch, fp32 and
                 bf16) and print the WebGPU/PyTorch ratio per pair
  --python       interpreter for numpy and PyTorch (default: python3, then /usr/bin/python3
                 for PyTorch)
  --timer        per-kernel timer (auto: timestamp queries when the adapter has them)
  --peak-gflops  the adapter's FP32 GFLOP/s peak, --peak-gbs its memory GB/s (else a table of
                 known GPUs, or numpy's figures on a software adapter)
  --weights      storage of the models' weight matrices (f16: halves, f32 accumulation)
  --textures     texture copies of the weights for the texture matmul kernels (auto: on for
                 software adapters, where they are several times faster)`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      ...{ quick: { type: "boolean", default: false }, shapes: { type: "string" } },
      ...{ json: { type: "string" }, "vs-torch": { type: "boolean", default: false } },
      ...{ "train-T": { type: "string" }, timer: { type: "string" }, python: { type: "string" } },
      ...{ "peak-gflops": { type: "string" }, "peak-gbs": { type: "string" } },
      ...{ weights: { type: "string" }, textures: { type: "string" } },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  const a = parseWith(Args, values);
  if (a.help) return console.log(USAGE);
  const { rows, kernels, memory, skipped } = results;
  BufferTracker.install();
  const gpu = await getGpu();
  const soft = isSoftwareAdapter(gpu);
  console.log(`adapter: ${gpu.description}${soft ? " (software)" : ""}`);
  if (a.timer === "timestamp" && !gpu.hasTimestamps) {
    throw new UsageError("--timer timestamp: this adapter has no timestamp-query; use replay");
  }
  const timer: TimerKind = a.timer === "auto"
    ? (gpu.hasTimestamps ? "timestamp" : "replay")
    : a.timer;
  const shapes = (a.shapes ?? (soft ? "tiny,0.1B" : "tiny,0.1B,0.4B,1.5B")).split(",")
    .map((s) => s.trim());
  for (const s of shapes) {
    if (s !== "tiny" && !(s in OFFICIAL_SHAPES)) {
      throw new UsageError(`--shapes: unknown shape "${s}"; expected tiny, 0.1B, 0.4B or 1.5B`);
    }
  }
  const askedT = a["train-T"]?.split(",").map(Number);
  const prefillTs = a.quick ? [64] : [64, 512];
  const trainTs = (shape: string) =>
    askedT ?? (a.quick ? [64] : soft && shape !== "tiny" ? [64] : [64, 512]);
  const python = a.python ?? "python3";
  const np = await matmulSection(gpu, a.quick, python);
  await matrixSection(gpu, a.quick, np);
  const numpy = np ? { gflops: Math.max(...np.gflops), gbs: np.gbs } : null;
  const peak = resolvePeak(
    gpu.description,
    { gflops: a["peak-gflops"], gbs: a["peak-gbs"] },
    numpy,
    soft,
  );
  console.log(`peak: ${peak.gflops ?? "?"} GFLOP/s, ${peak.gbs ?? "?"} GB/s (${peak.source})`);
  const ran: { shape: string; Ts: number[] }[] = [];
  for (const shape of shapes) {
    const o = {
      ...{ quick: a.quick, prefillTs, trainTs: trainTs(shape), timer, peak },
      upload: {
        weightDtype: a.weights,
        textures: a.textures === "auto" ? "auto" as const : a.textures === "on",
      },
    };
    let weights: RwkvWeights;
    if (shape === "tiny") {
      try {
        weights = (await loadModel(TINY)).weights;
      } catch {
        skipped.push({ shape, reason: `fixture ${TINY} not found` });
        console.log(`skip tiny: fixture ${TINY} not found`);
        continue;
      }
    } else {
      const cfg = OFFICIAL_SHAPES[shape as keyof typeof OFFICIAL_SHAPES];
      const T = Math.max(...prefillTs, ...o.trainTs);
      const upload = {
        weightDtype: a.weights,
        textures: useWeightTextures(gpu, a.textures === "auto" ? "auto" : a.textures === "on"),
      };
      const why = skipReason(gpu, cfg, T, a.shapes !== undefined || shape === "0.1B", upload);
      if (why) {
        skipped.push({ shape, reason: why });
        console.log(`skip ${shape}: ${why}`);
        continue;
      }
      weights = randomWeights(cfg, 1);
    }
    try {
      await benchShape(shape, weights, o);
      ran.push({ shape, Ts: o.trainTs });
    } catch (e) { // e.g. out of GPU memory on a shape the plan let through
      skipped.push({ shape, reason: `failed: ${(e as Error).message}` });
      console.log(`skip ${shape}: failed: ${(e as Error).message}`);
    }
  }
  const t = a["vs-torch"]
    ? await torchSection(a.python ? [a.python] : ["python3", "/usr/bin/python3"], ran, a.quick)
    : { torch: null, torchStatus: "not asked (--vs-torch)", torchRatios: [] };
  console.log("\n| shape | test | value | unit | note |");
  console.log("| ----- | ---- | ----: | ---- | ---- |");
  for (const r of rows) {
    console.log(`| ${r.shape} | ${r.test} | ${r.value.toFixed(2)} | ${r.unit} | ${r.note ?? ""} |`);
  }
  for (const s of skipped) console.log(`| ${s.shape} | skipped | | | ${s.reason} |`);
  if (t.torchRatios.length) {
    console.log("\nstate-tuning step, WebGPU (f32) vs PyTorch:");
    console.log("| shape | T | dtype | device | WebGPU tok/s | torch tok/s | ratio |");
    console.log("| ----- | -: | ----- | ------ | -----------: | ----------: | ----: |");
    for (const r of t.torchRatios) {
      const [w, p] = [r.webgpuTokensPerSecond.toFixed(1), r.torchTokensPerSecond.toFixed(1)];
      console.log(
        `| ${r.shape} | ${r.T} | ${r.dtype} | ${r.device} | ${w} | ${p} | ${r.ratio.toFixed(3)} |`,
      );
    }
  }
  if (a.json) {
    const doc = {
      ...{ adapter: gpu.description, software: soft, date: new Date().toISOString() },
      ...{ quick: a.quick, timer, peak, numpy: np, rows, kernels, memory, skipped },
      ...t,
    };
    await Deno.writeTextFile(a.json, JSON.stringify(doc, null, 2) + "\n");
    console.log(`wrote ${a.json}`);
  }
}

if (import.meta.main) await runMain(USAGE, main);
