/**
 * Per-step time of plain state tuning on the embedded default model for a facts-shaped batch
 * (B = 32, 12–20 tokens): the WebGPU path (`tuneState`) against the CPU float64 reference
 * (refBatchLossAndGrad: forward + backward to S0). Usage:
 *   deno run -A scripts/bench_engine.ts [--repeats 3] [--steps 5]
 */
import { loadModel } from "../lib/model/load.ts";
import { getGpu } from "../lib/gpu/device.ts";
import { GpuModel } from "../lib/model/gpu_model.ts";
import { tuneState } from "../lib/train/tune.ts";
import type { Example } from "../lib/train/data.ts";
import { refBatchLossAndGrad } from "../lib/ref/backward.ts";
import { Rng } from "../lib/util/rng.ts";
import { makeBatch } from "../lib/train/data.ts";

const args = Deno.args;
const arg = (k: string, d: number) => {
  const i = args.indexOf(k);
  return i >= 0 ? Number(args[i + 1]) : d;
};
const only = args.includes("--gpu-only") ? "gpu" : args.includes("--cpu-only") ? "cpu" : "both";
const repeats = arg("--repeats", 3), steps = arg("--steps", 5), B = arg("--batch", 32);
const rng = new Rng(1);
const AL = "abcdefghijklmnopqrstuvwxyz";
const str = () => Array.from({ length: 4 + rng.int(5) }, () => AL[rng.int(26)]).join("");
const enc = new TextEncoder();
const examples: Example[] = Array.from({ length: 64 }, (_, i) => {
  const k = str(), v = str();
  const ids = [...enc.encode(`${k}=${v}\n`)];
  const loss = new Uint8Array(ids.length);
  for (let t = k.length + 1; t < ids.length; t++) loss[t] = 1;
  return { ids, loss, line: i };
});
const { weights } = await loadModel("models/default.safetensors");
const gpu = only === "cpu" ? undefined : await getGpu();
const model = gpu ? await GpuModel.create(gpu, weights) : undefined;
if (model) {
  await tuneState(model, examples, { steps: 2, batch: B, progress: false, livePlot: false });
}
for (let r = 0; r < repeats; r++) {
  let t = performance.now();
  if (model) {
    await tuneState(model, examples, { steps, batch: B, progress: false, livePlot: false });
  }
  const gpuMs = (performance.now() - t) / steps;
  t = performance.now();
  for (let s = 0; s < (only === "gpu" ? 0 : steps); s++) {
    const exs = examples.slice((s * B) % 32, (s * B) % 32 + B);
    const b = makeBatch(exs);
    refBatchLossAndGrad(
      weights,
      b.tokens.map((tk, i) => ({
        tokens: tk.slice(0, exs[i].ids.length - 1),
        targets: b.targets[i].slice(0, exs[i].ids.length - 1),
        mask: b.mask[i].slice(0, exs[i].ids.length - 1),
      })),
    );
  }
  const cpuMs = (performance.now() - t) / steps;
  console.log(
    `repeat ${r}: webgpu ${gpuMs.toFixed(1)} ms/step, cpu-ref ${cpuMs.toFixed(1)} ms/step`,
  );
}

// relative CPU cost of the extension variants' reference steps (lifted M = N and 4N; weight
// gradients as LoRA needs them), same batch
if (args.includes("--variants")) {
  const { initLiftedLayers } = await import("../lib/parts/support.ts");
  const { LiftedConfigSchema } = await import("../lib/parts/config.ts");
  const b = makeBatch(examples.slice(0, B));
  const seqs = b.tokens.map((tk, i) => {
    const n = examples[i].ids.length - 1;
    return {
      tokens: tk.slice(0, n),
      targets: b.targets[i].slice(0, n),
      mask: b.mask[i].slice(0, n),
    };
  });
  const time = (label: string, opts: Record<string, unknown>) => {
    refBatchLossAndGrad(weights, seqs, undefined, opts);
    const t = performance.now();
    for (let s = 0; s < steps; s++) refBatchLossAndGrad(weights, seqs, undefined, opts);
    console.log(`${label}: ${((performance.now() - t) / steps).toFixed(1)} ms/step`);
  };
  time("state", {});
  for (const ratio of [1, 4]) {
    const cfg = LiftedConfigSchema.parse({ enabled: true, featureRatio: ratio });
    const lifted = initLiftedLayers(weights, examples.map((e) => e.ids), cfg);
    time(`lifted M=${ratio}N`, { lifted });
  }
  time("weight grads (LoRA)", { weightGrads: true });
}
