/**
 * The PyTorch side of `deno task gpu-check`: runs `scripts/bench_torch.py` (the same
 * state-tuning step in PyTorch: eager sequential and the pure-PyTorch chunked WKV form, fp32 and
 * bf16, CUDA when present) and pairs its rows with this run's WebGPU steps.
 *
 * @module
 */
import type { RwkvConfig } from "../model/types.ts";

/** One timed PyTorch step (a row of bench_torch.py's JSON). */
export interface TorchRow {
  shape: string;
  T: number;
  device: string;
  dtype: string;
  form: string;
  tokensPerSecond: number;
  seconds: number;
}

/** What to run: a named official shape, or a custom config (seed 1, as `randomWeights`). */
export interface TorchRequest {
  /** the label rows get */
  shape: string;
  /** an official shape name for bench_torch.py, or a config */
  model: string | RwkvConfig;
  Ts: number[];
  forms: ("sequential" | "chunked")[];
  dtypes: ("fp32" | "bf16")[];
  /** "cpu", "cuda", or undefined for CUDA when available */
  device?: string;
  reps: number;
  /** kill the interpreter after this many seconds */
  timeoutS: number;
}

const SCRIPT = new URL("../../scripts/bench_torch.py", import.meta.url).pathname;

/**
 * Run bench_torch.py under the first interpreter of `pythons` that has PyTorch; its rows
 * (relabelled with `req.shape`), or a string saying why there are none.
 */
export async function runTorch(pythons: string[], req: TorchRequest): Promise<TorchRow[] | string> {
  const model = typeof req.model === "string"
    ? ["--shapes", req.model]
    : ["--config", JSON.stringify(req.model)];
  const args = [
    SCRIPT,
    ...model,
    ...["--T", req.Ts.join(","), "--form", req.forms.join(","), "--dtype", req.dtypes.join(",")],
    ...["--reps", String(req.reps)],
    ...(req.device ? ["--device", req.device] : []),
  ];
  let reason = "no Python interpreter found";
  for (const py of pythons) {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), req.timeoutS * 1000);
    let p: Deno.CommandOutput;
    try {
      p = await new Deno.Command(py, { args, signal: ac.signal, stderr: "inherit" }).output();
    } catch (e) {
      reason = `${py}: ${(e as Error).message}`;
      continue;
    } finally {
      clearTimeout(timer);
    }
    if (ac.signal.aborted) return `bench_torch.py under ${py} ran past ${req.timeoutS} s: killed`;
    if (!p.success) return `bench_torch.py failed under ${py} (exit ${p.code})`;
    const last = new TextDecoder().decode(p.stdout).trim().split("\n").pop() ?? "";
    const doc = JSON.parse(last) as { torch: boolean; rows?: TorchRow[]; reason?: string };
    if (doc.torch) return (doc.rows ?? []).map((r) => ({ ...r, shape: req.shape }));
    reason = doc.reason ?? "bench_torch.py found no PyTorch";
  }
  return reason;
}

/** A WebGPU step beside a PyTorch step of the same shape and T. */
export interface TorchRatio {
  shape: string;
  T: number;
  webgpu: string;
  webgpuTokensPerSecond: number;
  torch: string;
  torchTokensPerSecond: number;
  /** WebGPU tok/s over PyTorch tok/s (above 1: WebGPU is faster) */
  ratio: number;
}

/** The honest label of a PyTorch row, e.g. "PyTorch cuda bf16, eager sequential WKV". */
export function torchLabel(r: TorchRow): string {
  const form = r.form === "chunked" ? "pure-PyTorch chunked WKV" : "eager sequential WKV";
  return `PyTorch ${r.device} ${r.dtype}, ${form}`;
}

/**
 * Every pair of a WebGPU step (`label` → tok/s, keyed by shape and T) and a PyTorch row of the
 * same shape and T.
 */
export function torchRatios(
  webgpu: { shape: string; T: number; label: string; tokensPerSecond: number }[],
  torch: TorchRow[],
): TorchRatio[] {
  const out: TorchRatio[] = [];
  for (const w of webgpu) {
    for (const t of torch.filter((t) => t.shape === w.shape && t.T === w.T)) {
      out.push({
        shape: w.shape,
        T: w.T,
        webgpu: w.label,
        webgpuTokensPerSecond: w.tokensPerSecond,
        torch: torchLabel(t),
        torchTokensPerSecond: t.tokensPerSecond,
        ratio: w.tokensPerSecond / t.tokensPerSecond,
      });
    }
  }
  return out;
}
