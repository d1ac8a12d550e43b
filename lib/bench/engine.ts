/**
 * Per-step time of plain state tuning for a facts-shaped batch (B = 32 by default, 12–20 tokens):
 * the WebGPU path (`tuneState`) against the CPU float64 reference (`refBatchLossAndGrad`:
 * forward + backward to S0), and optionally the reference cost of the extension variants.
 * `scripts/bench_engine.ts` is its CLI.
 *
 * @module
 */
import { getGpu } from "../gpu/device.ts";
import { GpuModel } from "../model/gpu_model.ts";
import type { RwkvWeights } from "../model/types.ts";
import { refBatchLossAndGrad } from "../ref/backward.ts";
import { type Example, makeBatch } from "../train/data.ts";
import { tuneState } from "../train/tune.ts";
import { Rng } from "../util/rng.ts";

/** What {@link benchEngine} times. */
export interface EngineBenchOptions {
  repeats: number;
  steps: number;
  batch: number;
  /** both engines, or only one */
  only: "both" | "gpu" | "cpu";
  /** also the reference cost of the lifted (M = N, 4N) and weight-gradient steps */
  variants: boolean;
}

/** 64 seeded `key=value` examples, the loss on the value and its newline. */
export function factsExamples(): Example[] {
  const rng = new Rng(1);
  const AL = "abcdefghijklmnopqrstuvwxyz";
  const str = () => Array.from({ length: 4 + rng.int(5) }, () => AL[rng.int(26)]).join("");
  const enc = new TextEncoder();
  return Array.from({ length: 64 }, (_, i) => {
    const k = str(), v = str();
    const ids = [...enc.encode(`${k}=${v}\n`)];
    const loss = new Uint8Array(ids.length);
    for (let t = k.length + 1; t < ids.length; t++) loss[t] = 1;
    return { ids, loss, line: i };
  });
}

/** The reference's per-sequence inputs for `exs` (each cut to its own length). */
function refSeqs(exs: Example[]) {
  const b = makeBatch(exs);
  return b.tokens.map((tk, i) => {
    const n = exs[i].ids.length - 1;
    return {
      tokens: tk.slice(0, n),
      targets: b.targets[i].slice(0, n),
      mask: b.mask[i].slice(0, n),
    };
  });
}

/** Print WebGPU and CPU-reference ms/step for each repeat (and the variants when asked). */
export async function benchEngine(weights: RwkvWeights, o: EngineBenchOptions): Promise<void> {
  const { repeats, steps, batch: B, only } = o;
  const examples = factsExamples();
  const quiet = { progress: false, livePlot: false };
  const gpu = only === "cpu" ? undefined : await getGpu();
  const model = gpu ? await GpuModel.create(gpu, weights) : undefined;
  if (model) await tuneState(model, examples, { steps: 2, batch: B, ...quiet });
  for (let r = 0; r < repeats; r++) {
    let t = performance.now();
    if (model) await tuneState(model, examples, { steps, batch: B, ...quiet });
    const gpuMs = (performance.now() - t) / steps;
    t = performance.now();
    for (let s = 0; s < (only === "gpu" ? 0 : steps); s++) {
      refBatchLossAndGrad(weights, refSeqs(examples.slice((s * B) % 32, (s * B) % 32 + B)));
    }
    const cpuMs = (performance.now() - t) / steps;
    console.log(
      `repeat ${r}: webgpu ${gpuMs.toFixed(1)} ms/step, cpu-ref ${cpuMs.toFixed(1)} ms/step`,
    );
  }
  if (o.variants) await benchVariants(weights, examples, steps, B);
}

/**
 * Relative CPU cost of the extension variants' reference steps (lifted M = N and 4N; weight
 * gradients as LoRA needs them), same batch.
 */
async function benchVariants(weights: RwkvWeights, examples: Example[], steps: number, B: number) {
  const { initLiftedLayers } = await import("../parts/support.ts");
  const { LiftedConfigSchema } = await import("../parts/config.ts");
  const seqs = refSeqs(examples.slice(0, B));
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
