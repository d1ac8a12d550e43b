/**
 * `deno task bench` and scripts/bench_torch.py as subprocesses.
 *
 * - `bench.ts --quick --shapes tiny --json` (timestamp timer when the adapter has it, then the
 *   replay timer) writes the rows and keys issue 6's contract names: prefill, generation and
 *   state-tuning tokens/s, memory of the forward and of the step by part, per-kernel rows with
 *   their timer, GFLOP/s for the matmuls and GB/s for the rest.
 * - bench_torch.py under `python3 -S` (no site-packages, so no PyTorch) answers
 *   `{"torch": false, "reason"}` with exit status 0.
 * - Where an interpreter has PyTorch: bench_torch.py's loss and dL/dS0 match lib/ref's
 *   (float64) on the tiny fixture and on a seeded random model (which also checks its port of
 *   randomWeights' generator), its fixture logits match the expected-logits file, and a timing
 *   run returns its rows. Tolerances: loss relative 1e-5, dS0 max |Δ| ≤ 1e-4·max|dS0| (fp32 vs
 *   float64 over a dozen layers), logits max |Δ| ≤ 1e-5 (docs/ARCHITECTURE.md "Tests and tolerances").
 */
import { assert, assertEquals } from "@std/assert";
import { loadModel } from "../lib/model/load.ts";
import { randomWeights, tinyConfig } from "../lib/model/random.ts";
import type { RwkvWeights } from "../lib/model/types.ts";
import { refLossAndGrad } from "../lib/ref/backward.ts";
import { fixture, gpu, hasFixtures, maxAbsDiff } from "./_helpers.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const TORCH_SCRIPT = `${ROOT}scripts/bench_torch.py`;
const dec = new TextDecoder();

async function run(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  const o = await new Deno.Command(cmd, {
    args,
    cwd: ROOT,
    env: { NO_COLOR: "1", XDG_RUNTIME_DIR: "/tmp" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = dec.decode(o.stdout);
  if (o.code !== 0) console.error(out, dec.decode(o.stderr));
  return { code: o.code, out };
}

/** The first of `python3`, `/usr/bin/python3` that imports torch, or null. */
async function torchPython(): Promise<string | null> {
  for (const py of ["python3", "/usr/bin/python3"]) {
    try {
      const o = await new Deno.Command(py, { args: ["-c", "import torch"] }).output();
      if (o.success) return py;
    } catch { /* not installed */ }
  }
  return null;
}
const PY = await torchPython();
if (!PY) console.warn("SKIP bench_torch.py checks: no python3 with PyTorch on this machine");

interface BenchDoc {
  timer: string;
  peak: { gflops: number | null; gbs: number | null; source: string };
  rows: { shape: string; test: string; value: number; unit: string }[];
  kernels: {
    shape: string;
    phase: string;
    T: number;
    kernel: string;
    ms: number;
    gflops: number | null;
    gbs: number;
    timer: string;
  }[];
  memory: {
    shape: string;
    phase: string;
    T: number;
    bytes: number;
    parts: Record<string, number>;
  }[];
  skipped: unknown[];
  torchRatios: unknown[];
}

async function bench(timer: string): Promise<BenchDoc> {
  const json = `${ROOT}tmp/bench_test_${Deno.pid}_${timer}.json`;
  await Deno.mkdir(`${ROOT}tmp`, { recursive: true });
  const args = ["run", "-A", "scripts/bench.ts", "--quick", "--shapes", "tiny", "--json", json];
  const { code } = await run(Deno.execPath(), [...args, "--timer", timer]);
  assertEquals(code, 0, "bench.ts failed (its output is above)");
  const doc = JSON.parse(await Deno.readTextFile(json)) as BenchDoc;
  await Deno.remove(json);
  return doc;
}

function checkContract(doc: BenchDoc, timer: string): void {
  const row = (test: string) => doc.rows.find((r) => r.shape === "tiny" && r.test === test);
  for (const test of ["prefill T=64", "generate ×16/submit", "state-tuning step T=64"]) {
    const r = row(test);
    assert(r && r.unit === "tok/s" && r.value > 0, `row "${test}" missing or not positive`);
  }
  for (const phase of ["forward", "state-tuning step"]) {
    assert(row(`GPU memory, ${phase} T=64`)?.unit === "MiB", `memory row of ${phase} missing`);
  }
  const fwd = doc.memory.find((m) => m.phase === "forward" && m.T === 64)!;
  const step = doc.memory.find((m) => m.phase === "state-tuning step" && m.T === 64)!;
  for (const part of ["weights", "workspace", "state", "backward", "optimiser"]) {
    assert(step.parts[part] > 0, `state-tuning memory part "${part}" is ${step.parts[part]}`);
  }
  for (const m of [fwd, step]) {
    assert(Object.values(m.parts).every((x) => x >= 0), `negative part: ${JSON.stringify(m)}`);
    assertEquals(m.bytes, Object.values(m.parts).reduce((s, x) => s + x, 0));
  }
  assert(step.bytes > fwd.bytes, "the step should hold more than the forward");
  assertEquals(fwd.parts.weights, step.parts.weights);
  assertEquals(doc.timer, timer);
  assert(typeof doc.peak.source === "string" && Array.isArray(doc.skipped));
  assert(Array.isArray(doc.torchRatios));
  for (const phase of ["forward", "state-tuning step"]) {
    const ks = doc.kernels.filter((k) => k.phase === phase && k.shape === "tiny");
    assert(ks.length > 3, `${phase}: only ${ks.length} kernel rows`);
    assert(ks.every((k) => k.timer === timer && k.ms > 0 && k.gbs > 0), `${phase}: bad row`);
    const mm = ks.filter((k) => k.kernel.startsWith("matmul"));
    assert(mm.length > 0 && mm.every((k) => k.gflops! > 0), `${phase}: matmul rows lack GFLOP/s`);
    assert(ks.some((k) => k.kernel.startsWith("wkv7") && k.gflops === null), `${phase}: no wkv7`);
  }
  const bwd = doc.kernels.filter((k) => k.phase === "state-tuning step").map((k) => k.kernel);
  assert(bwd.some((k) => k.startsWith("wkv7_backward")), "the step's kernels lack the backward");
}

Deno.test({
  name: "bench --quick --shapes tiny: contract rows, memory and per-kernel times (both timers)",
  ignore: !hasFixtures || !gpu,
  async fn() {
    if (gpu!.hasTimestamps) checkContract(await bench("timestamp"), "timestamp");
    checkContract(await bench("replay"), "replay");
  },
});

Deno.test("bench_torch.py without PyTorch says so (python3 -S)", async () => {
  const py = PY ?? "python3";
  const { code, out } = await run(py, ["-S", TORCH_SCRIPT, "--shapes", "tiny", "--T", "4"]);
  assertEquals(code, 0);
  const doc = JSON.parse(out.trim().split("\n").pop()!);
  assertEquals(doc.torch, false);
  assert(typeof doc.reason === "string" && /PyTorch/.test(doc.reason), doc.reason);
});

/** bench_torch.py --check against lib/ref for the sequence bench uses. */
async function checkTorch(weights: RwkvWeights, args: string[], T: number) {
  const { code, out } = await run(PY!, [TORCH_SCRIPT, "--check", "--T", String(T), ...args]);
  assertEquals(code, 0);
  const doc = JSON.parse(out.trim().split("\n").pop()!);
  assertEquals(doc.torch, true);
  const c = doc.check[0];
  const V = weights.config.vocabSize;
  const ids = Array.from({ length: T + 1 }, (_, i) => (i * 7919 + 13) % V);
  const ref = refLossAndGrad(weights, ids.slice(0, T), ids.slice(1));
  assert(Math.abs(c.loss - ref.loss) <= 1e-5 * ref.loss, `loss ${c.loss} vs ref ${ref.loss}`);
  const dS0 = ref.dState.flatMap((s) => Array.from(s.wkv));
  const scale = dS0.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  assert(scale > 0, "reference dS0 is zero: the check would be empty");
  const err = maxAbsDiff(c.dS0, dS0);
  assert(err <= 1e-4 * scale, `dS0 max |Δ| ${err} vs max |dS0| ${scale}`);
  return c;
}

Deno.test({
  name: "bench_torch.py: loss and dS0 match lib/ref (fixture and seeded random), timing rows",
  ignore: !PY || !hasFixtures,
  async fn() {
    const path = fixture("models/tiny-rwkv7-834K.safetensors");
    const tiny = await checkTorch((await loadModel(path)).weights, [
      "--shapes",
      "tiny",
      "--fixture",
      path,
    ], 12);
    assert(tiny.logitsMaxAbsDiff <= 1e-5, `fixture logits off by ${tiny.logitsMaxAbsDiff}`);
    const cfg = tinyConfig({ nLayer: 3, nEmbd: 64, headSize: 32, vocabSize: 97 });
    await checkTorch(randomWeights(cfg, 1), ["--config", JSON.stringify(cfg)], 10);
    const args = [TORCH_SCRIPT, "--shapes", "tiny", "--fixture", path, "--T", "8", "--reps", "1"];
    const { code, out } = await run(PY!, args);
    assertEquals(code, 0);
    const doc = JSON.parse(out.trim().split("\n").pop()!);
    assertEquals(doc.rows.map((r: { dtype: string }) => r.dtype), ["fp32", "bf16"]);
    for (const r of doc.rows) assert(r.shape === "tiny" && r.T === 8 && r.tokensPerSecond > 0);
  },
});
