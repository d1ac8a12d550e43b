/**
 * Per-step time of plain state tuning on the embedded default model for a facts-shaped batch
 * (B = 32, 12–20 tokens): the WebGPU path (`tuneState`) against the CPU float64 reference
 * (refBatchLossAndGrad: forward + backward to S0). The timing lives in lib/bench/engine.ts.
 * Usage:
 *   deno run -A scripts/bench_engine.ts [--repeats 3] [--steps 5] [--batch 32]
 *     [--gpu-only | --cpu-only] [--variants]
 */
import { loadModel } from "../lib/model/load.ts";
import { benchEngine } from "../lib/bench/engine.ts";

const args = Deno.args;
const arg = (k: string, d: number) => {
  const i = args.indexOf(k);
  return i >= 0 ? Number(args[i + 1]) : d;
};
const only = args.includes("--gpu-only") ? "gpu" : args.includes("--cpu-only") ? "cpu" : "both";
const { weights } = await loadModel("models/default.safetensors");
await benchEngine(weights, {
  repeats: arg("--repeats", 3),
  steps: arg("--steps", 5),
  batch: arg("--batch", 32),
  only,
  variants: args.includes("--variants"),
});
