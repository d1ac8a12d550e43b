/**
 * `deno task bench` as a library: matmul GFLOP/s beside numpy's, then per model shape prefill
 * and generation tokens/s, the state-tuning step, its GPU memory and per-kernel times
 * (`model.ts`), and optionally the same step in PyTorch (`scripts/bench_torch.py`) with the
 * WebGPU/PyTorch ratios. {@link runBench} returns the document `--json` writes.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { isSoftwareAdapter } from "../gpu/software.ts";
import { useWeightTextures } from "../model/gpu_weights.ts";
import { loadModel } from "../model/load.ts";
import { planSkipReason } from "../model/memory_plan.ts";
import { OFFICIAL_SHAPES, randomWeights } from "../model/random.ts";
import type { RwkvConfig, RwkvWeights } from "../model/types.ts";
import { benchShape, results } from "./model.ts";
import { type Peak, resolvePeak, type TimerKind } from "./profile.ts";
import { matmulSection, matrixSection, type Numpy } from "./products.ts";

/** The tiny fixture model (shape "tiny"). */
export const TINY = new URL(
  "../../../shared/fixtures/models/tiny-rwkv7-834K.safetensors",
  import.meta.url,
).pathname;

/** Why a shape is skipped, or null to run it. */
export function skipReason(
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
export interface TorchRow {
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
  const script = new URL("../../scripts/bench_torch.py", import.meta.url).pathname;
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
export interface TorchRatio {
  shape: string;
  T: number;
  dtype: string;
  device: string;
  webgpuTokensPerSecond: number;
  torchTokensPerSecond: number;
  ratio: number;
}

/** bench_torch.py for every shape that ran, and the ratios to this run's steps. */
export async function torchSection(
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

/** What {@link runBench} measures (the CLI's flags, parsed). */
export interface BenchOptions {
  quick: boolean;
  /** model shapes: "tiny" and the keys of OFFICIAL_SHAPES; default by adapter */
  shapes?: string[];
  /** state-tuning step lengths for every shape (default by mode and adapter) */
  trainTs?: number[];
  timer: "auto" | TimerKind;
  peakGflops?: number;
  peakGbs?: number;
  python?: string;
  vsTorch: boolean;
  weights: "f32" | "f16";
  textures: boolean | "auto";
}

/** The document `deno task bench --json` writes. */
export interface BenchDoc {
  adapter: string;
  software: boolean;
  date: string;
  quick: boolean;
  timer: TimerKind;
  peak: Peak;
  numpy: Numpy | null;
  rows: typeof results.rows;
  kernels: typeof results.kernels;
  memory: typeof results.memory;
  skipped: typeof results.skipped;
  torch: TorchRow[] | null;
  torchStatus: string;
  torchRatios: TorchRatio[];
}

/** Shapes to run: those asked for (checked), else by adapter. */
export function benchShapes(asked: string[] | undefined, soft: boolean): string[] {
  const shapes = asked ?? (soft ? ["tiny", "0.1B"] : ["tiny", "0.1B", "0.4B", "1.5B"]);
  for (const s of shapes) {
    if (s !== "tiny" && !(s in OFFICIAL_SHAPES)) {
      throw new RangeError(`--shapes: unknown shape "${s}"; expected tiny, 0.1B, 0.4B or 1.5B`);
    }
  }
  return shapes;
}

/** The weights of `shape`, or null (with the reason added to `results.skipped`) to skip it. */
async function shapeWeights(
  gpu: Gpu,
  shape: string,
  T: number,
  o: BenchOptions,
): Promise<RwkvWeights | null> {
  const skip = (reason: string) => {
    results.skipped.push({ shape, reason });
    console.log(`skip ${shape}: ${reason}`);
    return null;
  };
  if (shape === "tiny") {
    try {
      return (await loadModel(TINY)).weights;
    } catch {
      return skip(`fixture ${TINY} not found`);
    }
  }
  const cfg = OFFICIAL_SHAPES[shape as keyof typeof OFFICIAL_SHAPES];
  const upload = { weightDtype: o.weights, textures: useWeightTextures(gpu, o.textures) };
  const why = skipReason(gpu, cfg, T, o.shapes !== undefined || shape === "0.1B", upload);
  return why ? skip(why) : randomWeights(cfg, 1);
}

/**
 * Run the whole benchmark on `gpu` (printing progress) and return its document.
 *
 * @throws {RangeError} for an unknown shape, or the timestamp timer on an adapter without
 *   `timestamp-query`
 */
export async function runBench(gpu: Gpu, o: BenchOptions): Promise<BenchDoc> {
  const soft = isSoftwareAdapter(gpu);
  if (o.timer === "timestamp" && !gpu.hasTimestamps) {
    throw new RangeError("--timer timestamp: this adapter has no timestamp-query; use replay");
  }
  const timer: TimerKind = o.timer === "auto"
    ? (gpu.hasTimestamps ? "timestamp" : "replay")
    : o.timer;
  const shapes = benchShapes(o.shapes, soft);
  const prefillTs = o.quick ? [64] : [64, 512];
  const trainTs = (shape: string) =>
    o.trainTs ?? (o.quick ? [64] : soft && shape !== "tiny" ? [64] : [64, 512]);
  const np = await matmulSection(gpu, o.quick, o.python ?? "python3");
  await matrixSection(gpu, o.quick, np);
  const numpy = np ? { gflops: Math.max(...np.gflops), gbs: np.gbs } : null;
  const peak = resolvePeak(gpu.description, { gflops: o.peakGflops, gbs: o.peakGbs }, numpy, soft);
  console.log(`peak: ${peak.gflops ?? "?"} GFLOP/s, ${peak.gbs ?? "?"} GB/s (${peak.source})`);
  const ran: { shape: string; Ts: number[] }[] = [];
  for (const shape of shapes) {
    const opts = {
      ...{ quick: o.quick, prefillTs, trainTs: trainTs(shape), timer, peak },
      upload: { weightDtype: o.weights, textures: o.textures },
    };
    const weights = await shapeWeights(gpu, shape, Math.max(...prefillTs, ...opts.trainTs), o);
    if (!weights) continue;
    try {
      await benchShape(shape, weights, opts);
      ran.push({ shape, Ts: opts.trainTs });
    } catch (e) { // e.g. out of GPU memory on a shape the plan let through
      results.skipped.push({ shape, reason: `failed: ${(e as Error).message}` });
      console.log(`skip ${shape}: failed: ${(e as Error).message}`);
    }
  }
  const t = o.vsTorch
    ? await torchSection(o.python ? [o.python] : ["python3", "/usr/bin/python3"], ran, o.quick)
    : { torch: null, torchStatus: "not asked (--vs-torch)", torchRatios: [] };
  const { rows, kernels, memory, skipped } = results;
  return {
    ...{ adapter: gpu.description, software: soft, date: new Date().toISOString() },
    ...{ quick: o.quick, timer, peak, numpy: np, rows, kernels, memory, skipped },
    ...t,
  };
}
