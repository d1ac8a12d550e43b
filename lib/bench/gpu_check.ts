/**
 * `deno task gpu-check` as a library (docs/GPU_CHECK.md): the plan of each mode, the stages
 * (adapter check, GPU-vs-reference test subset, matmul and WKV timings, model benches in f32 and
 * f16, PyTorch on the same step) and the report they fill; {@link runGpuCheck} runs them all.
 *
 * @module
 */
import { describeGpu, type Gpu } from "../gpu/device.ts";
import { planSkipReason } from "../model/memory_plan.ts";
import { OFFICIAL_SHAPES, randomWeights, tinyConfig } from "../model/random.ts";
import type { RwkvConfig } from "../model/types.ts";
import { adapterFacts } from "./adapter.ts";
import { phaseFractions, shapeCost } from "./cost.ts";
import { benchMatmuls } from "./matmul.ts";
import { benchShape, results } from "./model.ts";
import { resolvePeak, type TimerKind } from "./profile.ts";
import { type GpuCheckReport, type PhaseRow, renderMarkdown, writeReport } from "./report.ts";
import { GPU_SUBSET, runSubset } from "./subset.ts";
import { runTorch, torchRatios, type TorchRequest } from "./torch.ts";
import { benchWkv, suggestMinT } from "./wkv.ts";

/** What one mode measures. */
export interface Plan {
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

/** The stages and shapes of a mode (`budgetS`: seconds for the benches, default by mode). */
export function makePlan(mode: Plan["mode"], budgetS?: number): Plan {
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
export class Clock {
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

/** Every shape of the plan in f32 and f16, then PyTorch on it, within the clock's budget. */
export async function benchModels(
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

/** What {@link runGpuCheck} does (the CLI's flags, parsed). */
export interface GpuCheckOptions {
  outDir: string;
  mode: Plan["mode"];
  budgetS?: number;
  python?: string;
  peakGflops?: number;
  peakGbs?: number;
  skipTests: boolean;
}

/** A report with the adapter, the peak and nothing measured yet. */
function emptyReport(gpu: Gpu, plan: Plan, o: GpuCheckOptions): GpuCheckReport {
  const adapter = adapterFacts(gpu);
  return {
    ...{ mode: plan.mode, date: new Date().toISOString(), adapter, subset: null },
    peak: resolvePeak(
      gpu.description,
      { gflops: o.peakGflops, gbs: o.peakGbs },
      null,
      adapter.software,
    ),
    ...{ matmuls: [], wkv: [], wkvSuggestedMinT: {}, phases: [], kernels: [], torch: [] },
    ...{ torchStatus: [], ratios: [], skipped: [], seconds: 0 },
  };
}

/** The GPU-vs-reference subset into `report.subset`; returns its log. */
async function subsetStage(plan: Plan, report: GpuCheckReport): Promise<string> {
  const r = await runSubset(plan.subset.files, plan.subset.filter, plan.subset.timeoutS);
  const { log, ...rest } = r;
  report.subset = rest;
  console.log(
    `GPU-vs-reference subset: ${
      r.ok ? "PASSED" : "FAILED"
    } (${r.passed} passed, ${r.failed} failed, ${r.ignored} ignored, ${r.seconds.toFixed(0)} s)`,
  );
  if (!r.ok) console.error(log.split("\n").slice(-60).join("\n"));
  return log;
}

/**
 * Run every stage on `gpu`, write the report under `o.outDir` and print it.
 *
 * @returns the exit status: 2 on a software adapter (not dry-run), 1 when the test subset
 *   failed, else 0
 */
export async function runGpuCheck(gpu: Gpu, o: GpuCheckOptions): Promise<number> {
  const clock = new Clock(0);
  console.log(describeGpu(gpu));
  const plan = makePlan(o.mode, o.budgetS);
  const report = emptyReport(gpu, plan, o);
  const { adapter } = report;
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
    await writeReport(o.outDir, report, "");
    return 2;
  }
  const testLog = o.skipTests ? "" : await subsetStage(plan, report);
  const bench = new Clock(plan.budgetS);
  report.matmuls = await benchMatmuls(gpu, plan.matmulShapes, report.peak);
  report.wkv = await benchWkv(gpu, plan.wkv.heads, plan.wkv.Ts);
  report.wkvSuggestedMinT = suggestMinT(report.wkv);
  const pythons = o.python ? [o.python] : ["python3", "/usr/bin/python3"];
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
  const files = await writeReport(o.outDir, report, testLog);
  console.log(`\n${renderMarkdown(report)}`);
  console.log(`wrote ${files.join(", ")}`);
  return report.subset && !report.subset.ok ? 1 : 0;
}
