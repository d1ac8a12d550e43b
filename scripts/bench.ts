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
 * from a dispatch-level replay timer (lib/bench/profile.ts); the table and JSON say which.
 * On a software adapter the default shapes are tiny and 0.1B, and the step runs at T = 512 only
 * for tiny unless `--train-T` asks. Shapes that do not fit are skipped with the reason.
 *
 * The measuring lives in lib/bench/suite.ts; this file parses the flags and prints.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { getGpu } from "../lib/gpu/device.ts";
import { isSoftwareAdapter } from "../lib/gpu/software.ts";
import { BufferTracker } from "../lib/bench/profile.ts";
import { type BenchDoc, benchShapes, runBench } from "../lib/bench/suite.ts";
import { parseWith, runMain, UsageError } from "./_cli.ts";

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

/** The result table and the WebGPU/PyTorch ratios. */
function printTables(doc: BenchDoc): void {
  console.log("\n| shape | test | value | unit | note |");
  console.log("| ----- | ---- | ----: | ---- | ---- |");
  for (const r of doc.rows) {
    console.log(`| ${r.shape} | ${r.test} | ${r.value.toFixed(2)} | ${r.unit} | ${r.note ?? ""} |`);
  }
  for (const s of doc.skipped) console.log(`| ${s.shape} | skipped | | | ${s.reason} |`);
  if (doc.torchRatios.length) {
    console.log("\nstate-tuning step, WebGPU (f32) vs PyTorch:");
    console.log("| shape | T | dtype | device | WebGPU tok/s | torch tok/s | ratio |");
    console.log("| ----- | -: | ----- | ------ | -----------: | ----------: | ----: |");
    for (const r of doc.torchRatios) {
      const [w, p] = [r.webgpuTokensPerSecond.toFixed(1), r.torchTokensPerSecond.toFixed(1)];
      console.log(
        `| ${r.shape} | ${r.T} | ${r.dtype} | ${r.device} | ${w} | ${p} | ${r.ratio.toFixed(3)} |`,
      );
    }
  }
}

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
  BufferTracker.install();
  const gpu = await getGpu();
  const soft = isSoftwareAdapter(gpu);
  console.log(`adapter: ${gpu.description}${soft ? " (software)" : ""}`);
  if (a.timer === "timestamp" && !gpu.hasTimestamps) {
    throw new UsageError("--timer timestamp: this adapter has no timestamp-query; use replay");
  }
  const shapes = a.shapes?.split(",").map((s) => s.trim());
  try {
    benchShapes(shapes, soft);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const doc = await runBench(gpu, {
    ...{ quick: a.quick, shapes, trainTs: a["train-T"]?.split(",").map(Number) },
    ...{ timer: a.timer, peakGflops: a["peak-gflops"], peakGbs: a["peak-gbs"] },
    ...{ python: a.python, vsTorch: a["vs-torch"], weights: a.weights },
    textures: a.textures === "auto" ? "auto" : a.textures === "on",
  });
  printTables(doc);
  if (a.json) {
    await Deno.writeTextFile(a.json, JSON.stringify(doc, null, 2) + "\n");
    console.log(`wrote ${a.json}`);
  }
}

if (import.meta.main) await runMain(USAGE, main);
