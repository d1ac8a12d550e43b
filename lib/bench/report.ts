/**
 * The report of `deno task gpu-check`: one JSON document and its markdown rendering, written
 * under the folder given on the command line.
 *
 * @module
 */
import type { AdapterFacts } from "./adapter.ts";
import type { MatmulTime } from "./matmul.ts";
import type { SubsetResult } from "./subset.ts";
import type { TorchRatio, TorchRow } from "./torch.ts";
import type { WkvTime } from "./wkv.ts";

/** A model-level measurement with its fractions of the peak (see `cost.ts`). */
export interface PhaseRow {
  shape: string;
  dtype: "f32" | "f16";
  phase: "prefill" | "generate" | "step";
  T: number;
  tokensPerSecond: number;
  gflops: number;
  gbs: number;
  flopFraction: number | null;
  bandwidthFraction: number | null;
}

/** Everything one gpu-check run measured. */
export interface GpuCheckReport {
  mode: "full" | "quick" | "dry-run";
  date: string;
  adapter: AdapterFacts;
  peak: { gflops: number | null; gbs: number | null; source: string };
  subset: Omit<SubsetResult, "log"> | null;
  matmuls: MatmulTime[];
  wkv: WkvTime[];
  wkvSuggestedMinT: Record<number, number | null>;
  phases: PhaseRow[];
  /** per-kernel times from lib/bench/model.ts (with their peak fractions) */
  kernels: unknown[];
  torch: TorchRow[];
  torchStatus: string[];
  ratios: TorchRatio[];
  skipped: { what: string; reason: string }[];
  seconds: number;
}

const pct = (x: number | null) => x === null ? "?" : `${(100 * x).toFixed(2)}%`;
const fx = (x: number, d = 1) => x.toFixed(d);

function table(head: string[], rows: (string | number)[][]): string {
  const line = (c: (string | number)[]) => `| ${c.join(" | ")} |`;
  return [line(head), line(head.map(() => "---")), ...rows.map(line)].join("\n");
}

/** The title, adapter, peak and test-subset lines. */
function headerLines(r: GpuCheckReport): string[] {
  const a = r.adapter;
  return [
    `# gpu-check (${r.mode}), ${r.date}`,
    "",
    `adapter: **${a.description}**${a.software ? ` — SOFTWARE: ${a.softwareReason}` : ""}; ` +
    `features: ${a.features.join(", ") || "none"}; ` +
    `limits: ${Object.entries(a.limits).map(([k, v]) => `${k} ${v}`).join(", ")}`,
    "",
    `peak: ${r.peak.gflops ?? "?"} GFLOP/s, ${r.peak.gbs ?? "?"} GB/s (${r.peak.source})`,
    "",
    r.subset
      ? `GPU-vs-reference subset: ${r.subset.ok ? "PASSED" : "FAILED"} — ${r.subset.passed} ` +
        `passed, ${r.subset.failed} failed, ${r.subset.ignored} ignored in ${
          fx(r.subset.seconds)
        } s`
      : "GPU-vs-reference subset: not run",
    "",
  ];
}

/** The model phases and the WebGPU / PyTorch ratios. */
function phaseLines(r: GpuCheckReport): string[] {
  return [
    "## Model phases (fractions of peak: matmul FLOPs; weights read once per pass)",
    "",
    table(
      ["shape", "dtype", "phase", "T", "tok/s", "GFLOP/s", "of peak FLOP/s", "GB/s", "of peak BW"],
      r.phases.map((p) => [
        ...[p.shape, p.dtype, p.phase, p.T, fx(p.tokensPerSecond), fx(p.gflops)],
        ...[pct(p.flopFraction), fx(p.gbs), pct(p.bandwidthFraction)],
      ]),
    ),
    "",
    "## State-tuning step: WebGPU vs PyTorch (same step, same weights)",
    "",
    table(
      ["shape", "T", "WebGPU", "tok/s", "PyTorch", "tok/s", "WebGPU / PyTorch"],
      r.ratios.map((x) => [
        ...[x.shape, x.T, x.webgpu, fx(x.webgpuTokensPerSecond), x.torch],
        ...[fx(x.torchTokensPerSecond), fx(x.ratio, 3)],
      ]),
    ),
    ...(r.torchStatus.length ? ["", ...r.torchStatus.map((s) => `- PyTorch: ${s}`)] : []),
    "",
  ];
}

/** The matmul kernel variants. */
function matmulLines(r: GpuCheckReport): string[] {
  return [
    "## Matmul kernels",
    "",
    table(
      [
        "variant",
        "kernels that ran",
        "product",
        "M×K×N",
        "µs",
        "GFLOP/s",
        "of peak FLOP/s",
        "GB/s",
        "of peak BW",
      ],
      r.matmuls.map((m) => [
        ...[
          m.variant,
          m.kernels.join(", ") || "(wall timer)",
          m.entry === "linear" ? "x·Wᵀ" : "x·M",
          `${m.M}×${m.K}×${m.N}`,
        ],
        ...[fx(m.seconds * 1e6), fx(m.gflops), pct(m.flopFraction), fx(m.gbs)],
        pct(m.bandwidthFraction),
      ]),
    ),
    "",
  ];
}

/** The WKV forms, the skipped stages and the total time. */
function wkvAndTailLines(r: GpuCheckReport): string[] {
  return [
    "## WKV forward: sequential vs chunked (B = 1, N = 64)",
    "",
    table(
      ["H", "T", "sequential ms", "chunked ms", "chunked / sequential"],
      r.wkv.map((w) => [
        ...[w.H, w.T, fx(w.sequentialMs, 3), w.chunkedMs === null ? "n/a" : fx(w.chunkedMs, 3)],
        w.chunkedMs === null ? "" : fx(w.chunkedMs / w.sequentialMs, 2),
      ]),
    ),
    "",
    `suggested chunked minT per H: ${JSON.stringify(r.wkvSuggestedMinT)}`,
    ...(r.skipped.length
      ? ["", "## Skipped", "", ...r.skipped.map((s) => `- ${s.what}: ${s.reason}`)]
      : []),
    "",
    `total ${fx(r.seconds)} s; per-kernel times are in gpu_check.json (\`kernels\`).`,
    "",
  ];
}

/** The markdown rendering of a report. */
export function renderMarkdown(r: GpuCheckReport): string {
  return [...headerLines(r), ...phaseLines(r), ...matmulLines(r), ...wkvAndTailLines(r)].join("\n");
}

/** Write `gpu_check.json`, `gpu_check.md` and `gpu_check_tests.log` under `dir`. */
export async function writeReport(
  dir: string,
  r: GpuCheckReport,
  testLog: string,
): Promise<string[]> {
  await Deno.mkdir(dir, { recursive: true });
  const files = [`${dir}/gpu_check.json`, `${dir}/gpu_check.md`, `${dir}/gpu_check_tests.log`];
  await Deno.writeTextFile(files[0], JSON.stringify(r, null, 2) + "\n");
  await Deno.writeTextFile(files[1], renderMarkdown(r));
  await Deno.writeTextFile(files[2], testLog);
  return files;
}
