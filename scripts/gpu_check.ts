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
 * @module
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { describeGpu, getGpu, type Gpu } from "../lib/gpu/device.ts";
import { adapterFacts } from "../lib/bench/adapter.ts";
import { phaseFractions, shapeCost } from "../lib/bench/cost.ts";
import { benchMatmuls } from "../lib/bench/matmul.ts";
import {
  type GpuCheckReport,
  type PhaseRow,
  renderMarkdown,
  writeReport,
} from "../lib/bench/report.ts";
import { GPU_SUBSET, runSubset } from "../lib/bench/subset.ts";
import { runTorch, torchRatios, type TorchRequest } from "../lib/bench/torch.ts";
import { benchWkv, suggestMinT } from "../lib/bench/wkv.ts";
import { planSkipReason } from "../lib/model/memory_plan.ts";
import { OFFICIAL_SHAPES, randomWeights, tinyConfig } from "../lib/model/random.ts";
import type { RwkvConfig } from "../lib/model/types.ts";
import { parseWith, runMain, UsageError } from "./_cli.ts";
import { BufferTracker, resolvePeak, type TimerKind } from "./_bench_profile.ts";
import { benchShape, results } from "./_bench_model.ts";

/** What one mode measures. */
interface Plan {
  mode: GpuCheckReport["mode"];
  subset: { files: string[]; filter: string | null; timeoutS: number };
  matmulShapes: number[][];
  wkv: { heads: number[]; Ts: number[] };
  shapes: { name: string; cfg: RwkvConfig; torchModel: string | RwkvConfig }[];
  Ts: number[];
  /** PyTorch runs per shape: forms × Ts */
  torch: { forms: TorchRequest["forms"]; Ts: number[] }[];
  torchDevice?: string;
  torchReps: number;
  budgetS: number;
}

const official = (name: keyof typeof OFFICIAL_SHAPES) => ({
  name,
  cfg: OFFICIAL_SHAPES[name],
  torchModel: name,
});

function makePlan(mode: Plan["mode"], budgetS?: number): Plan {
  if (mode === "dry-run") {
    const cfg = tinyConfig();
    return {
      mode,
      subset: {
        files: ["tests/matmul_tiled_test.ts"],
        filter: "/choice|threshold|offsets/",
        timeoutS: 240,
      },
      matmulShapes: [[20, 32, 48], [1, 32, 48]],
      wkv: { heads: [2], Ts: [16, 40] },
      shapes: [{ name: "tiny-random", cfg, torchModel: cfg }],
      Ts: [16, 40],
      torch: [{ forms: ["sequential", "chunked"], Ts: [16, 40] }],
      torchDevice: "cpu",
      torchReps: 1,
      budgetS: budgetS ?? 600,
    };
  }
  const quick = mode === "quick";
  const C = [768, 1024, 2048];
  return {
    mode,
    subset: { files: GPU_SUBSET, filter: null, timeoutS: quick ? 150 : 600 },
    matmulShapes: [
      ...C.map((c) => [4096, c, c]),
      [4096, 2048, 8192],
      [512, 2048, 2048],
      ...C.map((c) => [1, c, c]),
    ],
    wkv: { heads: [12, 16, 32], Ts: [16, 64, 256, 512, 1024, 4096] },
    shapes: [official("0.1B"), official("0.4B"), official("1.5B")],
    Ts: [64, 512, 4096],
    torch: quick
      ? [{ forms: ["sequential"], Ts: [64, 512] }, { forms: ["chunked"], Ts: [64, 512, 4096] }]
      : [{ forms: ["sequential", "chunked"], Ts: [64, 512, 4096] }],
    torchReps: quick ? 1 : 3,
    budgetS: budgetS ?? (quick ? 400 : 3000),
  };
}

/** Seconds since the start, and whether `need` more seconds still fit the budget. */
class Clock {
  readonly t0 = performance.now();
  constructor(readonly budgetS: number) {}
  get s(): number {
    return (performance.now() - this.t0) / 1000;
  }
  left(): number {
    return this.budgetS - this.s;
  }
}

/** The prefill / generation / step rows of one benchShape run, with their peak fractions. */
function phaseRows(label: string, shape: string, dtype: "f32" | "f16", cfg: RwkvConfig, peak: {
  gflops: number | null;
  gbs: number | null;
}): PhaseRow[] {
  const cost = shapeCost(cfg, dtype);
  const out: PhaseRow[] = [];
  for (const r of results.rows.filter((r) => r.shape === label && r.unit === "tok/s")) {
    const m = /^(prefill|state-tuning step) T=(\d+)$/.exec(r.test);
    const g = /^generate ×\d+\/submit$/.test(r.test);
    if (!m && !g) continue;
    const phase = g ? "generate" : m![1] === "prefill" ? "prefill" : "step";
    const T = g ? 1 : Number(m![2]);
    out.push({
      ...{ shape, dtype, phase, T, tokensPerSecond: r.value },
      ...phaseFractions(cost, phase, T, r.value, peak),
    });
  }
  return out;
}

async function benchModels(
  gpu: Gpu,
  plan: Plan,
  report: GpuCheckReport,
  clock: Clock,
  pythons: string[],
) {
  const timer: TimerKind = gpu.hasTimestamps ? "timestamp" : "replay";
  for (const s of plan.shapes) {
    let weights: ReturnType<typeof randomWeights> | undefined;
    for (const dtype of ["f32", "f16"] as const) {
      const what = `${s.name} ${dtype}`;
      const why = clock.left() < 30
        ? `time budget (${plan.budgetS} s) spent`
        : planSkipReason(s.cfg, { T: Math.max(...plan.Ts), B: 1, weightDtype: dtype }, gpu.limits);
      if (why) {
        report.skipped.push({ what, reason: why });
        console.log(`skip ${what}: ${why}`);
        continue;
      }
      weights ??= randomWeights(s.cfg, 1);
      const o = {
        quick: plan.mode !== "full",
        prefillTs: plan.Ts,
        trainTs: plan.Ts,
        timer,
        peak: report.peak,
      };
      try {
        await benchShape(what, weights, { ...o, upload: { weightDtype: dtype } });
        report.phases.push(...phaseRows(what, s.name, dtype, s.cfg, report.peak));
      } catch (e) {
        report.skipped.push({ what, reason: `failed: ${(e as Error).message}` });
        console.log(`skip ${what}: failed: ${(e as Error).message}`);
      }
    }
    weights = undefined;
    for (const t of plan.torch) {
      const what = `PyTorch ${s.name} ${t.forms.join("+")} T=${t.Ts.join(",")}`;
      if (clock.left() < 20) {
        report.skipped.push({ what, reason: `time budget (${plan.budgetS} s) spent` });
        continue;
      }
      const got = await runTorch(pythons, {
        shape: s.name,
        model: s.torchModel,
        ...{ Ts: t.Ts, forms: t.forms, dtypes: ["fp32", "bf16"], device: plan.torchDevice },
        reps: plan.torchReps,
        timeoutS: Math.max(10, clock.left() - 10),
      });
      if (typeof got === "string") report.torchStatus.push(`${what}: ${got}`);
      else report.torch.push(...got);
    }
  }
}

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
  const outDir = positionals[0];
  const clock = new Clock(0);
  BufferTracker.install();
  const gpu = await getGpu();
  const adapter = adapterFacts(gpu);
  console.log(describeGpu(gpu));
  const plan = makePlan(a["dry-run"] ? "dry-run" : a.quick ? "quick" : "full", a["budget-s"]);
  const report: GpuCheckReport = {
    ...{ mode: plan.mode, date: new Date().toISOString(), adapter, subset: null },
    peak: resolvePeak(
      gpu.description,
      { gflops: a["peak-gflops"], gbs: a["peak-gbs"] },
      null,
      adapter.software,
    ),
    ...{ matmuls: [], wkv: [], wkvSuggestedMinT: {}, phases: [], kernels: [], torch: [] },
    ...{ torchStatus: [], ratios: [], skipped: [], seconds: 0 },
  };
  if (adapter.software && plan.mode !== "dry-run") {
    console.error(
      `\n!!! gpu-check: SOFTWARE FALLBACK — ${adapter.softwareReason}. Its numbers would measure ` +
        `the CPU. On a lent GPU machine: export VK_DRIVER_FILES=<the NVIDIA ICD json> and bring ` +
        `libvulkan1 (docs/GPU_CHECK.md); locally, pass --dry-run. !!!\n`,
    );
    report.skipped.push({
      what: "everything",
      reason: `software adapter: ${adapter.softwareReason}`,
    });
    await writeReport(outDir, report, "");
    return 2;
  }
  let testLog = "";
  if (!a["skip-tests"]) {
    const r = await runSubset(plan.subset.files, plan.subset.filter, plan.subset.timeoutS);
    const { log, ...rest } = r;
    testLog = log;
    report.subset = rest;
    console.log(
      `GPU-vs-reference subset: ${
        r.ok ? "PASSED" : "FAILED"
      } (${r.passed} passed, ${r.failed} failed, ${r.ignored} ignored, ${r.seconds.toFixed(0)} s)`,
    );
    if (!r.ok) console.error(log.split("\n").slice(-60).join("\n"));
  }
  const bench = new Clock(plan.budgetS);
  report.matmuls = await benchMatmuls(gpu, plan.matmulShapes, report.peak);
  report.wkv = await benchWkv(gpu, plan.wkv.heads, plan.wkv.Ts);
  report.wkvSuggestedMinT = suggestMinT(report.wkv);
  const pythons = a.python ? [a.python] : ["python3", "/usr/bin/python3"];
  await benchModels(gpu, plan, report, bench, pythons);
  report.kernels = results.kernels;
  const steps = report.phases.filter((p) => p.phase === "step").map((p) => ({
    shape: p.shape,
    T: p.T,
    label: `WebGPU ${p.dtype} weights`,
    tokensPerSecond: p.tokensPerSecond,
  }));
  report.ratios = torchRatios(steps, report.torch);
  report.seconds = clock.s;
  const files = await writeReport(outDir, report, testLog);
  console.log(`\n${renderMarkdown(report)}`);
  console.log(`wrote ${files.join(", ")}`);
  return report.subset && !report.subset.ok ? 1 : 0;
}

if (import.meta.main) {
  await runMain(USAGE, async () => {
    const code = await main();
    if (code !== 0) Deno.exit(code);
  });
}
