/**
 * One-call GPU check for a lent GPU machine (docs/GPU_CHECK.md): prints the adapter and fails
 * loudly on a software fallback, runs the GPU-vs-reference test subset on that adapter, times
 * the matmul kernel variants and both WKV forms, benchmarks the 0.1B, 0.4B and 1.5B shapes
 * (seeded random weights) in f32 and f16 — prefill, generation and the state-tuning step at
 * T = 64 / 512 / 4096 plus per-kernel times, each as a fraction of the adapter's peak FLOP/s and
 * bandwidth — and times the same step in PyTorch (bf16 and fp32, eager sequential and the
 * pure-PyTorch chunked form), printing the ratios. Writes gpu_check.json, gpu_check.md and
 * gpu_check_tests.log under OUTDIR.
 *
 *     deno task gpu-check OUTDIR [--quick] [--dry-run] [--python PATH] [--peak-gflops G]
 *       [--peak-gbs B] [--budget-s S] [--skip-tests]
 *
 * `--quick` keeps within ~7 minutes on a GPU (a time budget skips what is left, saying so);
 * `--dry-run` runs every stage at tiny shapes on any adapter, software included, with PyTorch
 * on the CPU (CI: tests/gpu_check_test.ts). Exit status: 2 on a software adapter (not dry-run),
 * 1 when the test subset failed, else 0.
 *
 * The stages live in lib/bench/gpu_check.ts; this file parses the flags.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { getGpu } from "../lib/gpu/device.ts";
import { runGpuCheck } from "../lib/bench/gpu_check.ts";
import { BufferTracker } from "../lib/bench/profile.ts";
import { parseWith, runMain, UsageError } from "./_cli.ts";

const Args = z.object({
  quick: z.boolean(),
  "dry-run": z.boolean(),
  python: z.string().optional(),
  "peak-gflops": z.coerce.number().positive().optional(),
  "peak-gbs": z.coerce.number().positive().optional(),
  "budget-s": z.coerce.number().positive().optional(),
  "skip-tests": z.boolean(),
  help: z.boolean(),
});

const USAGE = `Usage: deno task gpu-check OUTDIR [--quick] [--dry-run] [--python PATH]
                            [--peak-gflops G] [--peak-gbs B] [--budget-s S] [--skip-tests]

  OUTDIR         where gpu_check.json, gpu_check.md and gpu_check_tests.log go
  --quick        the lent-machine run: under 8 minutes on a GPU (budget 400 s for the benches)
  --dry-run      tiny shapes, any adapter (software too), PyTorch on the CPU: CI's check
  --python       interpreter with PyTorch (default: python3, then /usr/bin/python3)
  --peak-gflops  FP32 GFLOP/s peak, --peak-gbs memory GB/s (default: the vendor table)
  --budget-s     seconds for the benches; what is left after it is skipped and listed
  --skip-tests   leave out the GPU-vs-reference subset`;

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      ...{
        quick: { type: "boolean", default: false },
        "dry-run": { type: "boolean", default: false },
      },
      ...{
        python: { type: "string" },
        "peak-gflops": { type: "string" },
        "peak-gbs": { type: "string" },
      },
      ...{ "budget-s": { type: "string" }, "skip-tests": { type: "boolean", default: false } },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  const a = parseWith(Args, values);
  if (a.help) return (console.log(USAGE), 0);
  if (positionals.length !== 1) {
    throw new UsageError(`expected one OUTDIR argument, got ${JSON.stringify(positionals)}`);
  }
  BufferTracker.install();
  const gpu = await getGpu();
  return await runGpuCheck(gpu, {
    outDir: positionals[0],
    mode: a["dry-run"] ? "dry-run" : a.quick ? "quick" : "full",
    ...{ budgetS: a["budget-s"], python: a.python, skipTests: a["skip-tests"] },
    ...{ peakGflops: a["peak-gflops"], peakGbs: a["peak-gbs"] },
  });
}

if (import.meta.main) {
  await runMain(USAGE, async () => {
    const code = await main();
    if (code !== 0) Deno.exit(code);
  });
}
