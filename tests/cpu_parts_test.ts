/**
 * The CPU engine's lifted and LoRA parts against their GPU twins (`LiftedPart`, `LoraPart` in
 * `tune`): the same steps from the same start give the same losses (f32 vs f64: 2e-4 relative),
 * the same decorrelation losses and the same R after DBP, gate and LoRA factors.
 */
import { assert, assertAlmostEquals } from "@std/assert";
import { DEFAULT_MODEL_PATH, factExamples, gpu, maxAbsDiff } from "./_helpers.ts";
import { loadModel } from "../lib/model/load.ts";
import { GpuModel } from "../lib/model/gpu_model.ts";
import { tune } from "../lib/train/tune.ts";
import { StatePart } from "../lib/train/state_part.ts";
import { LiftedPart } from "../lib/parts/lifted_part.ts";
import { createLoraPart } from "../lib/parts/lora.ts";
import { initLora } from "../lib/model/lora.ts";
import { cpuStatePart, cpuTune } from "../lib/experiments/cpu_tune.ts";
import { cpuLiftedPart, cpuLoraPart } from "../lib/experiments/cpu_parts.ts";
import { cellLifted } from "../lib/experiments/variants.ts";

const MODEL = DEFAULT_MODEL_PATH;

const opts = { steps: 3, batch: 4, gradAccum: 1, lrInit: 0.02, lrFinal: 0.002, seed: 3 };
const quiet = { progress: false, livePlot: false } as const;

Deno.test({
  name: "cpuLiftedPart: writes mode + DBP matches LiftedPart on the GPU (loss, DBP loss, R, gate)",
  ignore: !gpu,
  async fn() {
    const { weights } = await loadModel(MODEL);
    const model = await GpuModel.create(gpu!, weights);
    const data = factExamples(16, 2);
    const layers = cellLifted(weights, data, 1, 64, true);
    const dbp = { lr: 0.05, kappa: 0.5 };
    const cpu = cpuLiftedPart(weights, layers, { lrScale: 0.3, dbp });
    const c = cpuTune(weights, [cpuStatePart(weights), cpu], data, opts);
    const sp = await StatePart.create(model);
    const lp = await LiftedPart.create(model, { layers, lrScale: 0.3, dbp });
    try {
      const g = await tune(model, data, { ...opts, ...quiet, parts: [sp, lp] });
      for (let s = 0; s < opts.steps; s++) {
        const [a, b] = [c.history[s], g.history[s]];
        assertAlmostEquals(a.loss, b.loss, 2e-4 * b.loss);
        assertAlmostEquals(a.decorrelationLoss!, b.decorrelationLoss!, 1e-3 * b.decorrelationLoss!);
      }
      const gl = await lp.layers(), cl = cpu.layers();
      for (const l of [0, 1]) {
        const dR = maxAbsDiff(Float32Array.from(cl[l]!.R), Float32Array.from(gl[l]!.R));
        const dg = maxAbsDiff(Float32Array.from(cl[l]!.gate!), Float32Array.from(gl[l]!.gate!));
        console.log(
          `layer ${l}: max |ΔR| ${dR.toExponential(2)}, max |Δgate| ${dg.toExponential(2)}`,
        );
        assert(dR < 1e-4, `R of layer ${l}: ${dR}`);
        assert(maxAbsDiff(Float32Array.from(layers[l]!.R), Float32Array.from(cl[l]!.R)) > 1e-4);
        assert(dg < 1e-5, `gate of layer ${l}: ${dg}`);
      }
    } finally {
      sp.destroy();
      lp.destroy();
      model.destroy();
    }
  },
});

Deno.test({
  name: "cpuLoraPart: the same steps as LoraPart on the GPU (losses, B)",
  ignore: !gpu,
  async fn() {
    const { weights } = await loadModel(MODEL);
    const model = await GpuModel.create(gpu!, weights);
    const data = factExamples(16, 4);
    const init = initLora(weights.config, { r: 2, seed: 5 });
    const cpu = cpuLoraPart(weights, init, { lrScale: 1 });
    const o = { ...opts, lrInit: 2e-3, lrFinal: 2e-4 };
    const c = cpuTune(weights, [cpu], data, o);
    const part = await createLoraPart(model, init, { lrScale: 1 });
    try {
      const g = await tune(model, data, { ...o, ...quiet, parts: [part] });
      for (let s = 0; s < o.steps; s++) {
        assertAlmostEquals(c.history[s].loss, g.history[s].loss, 2e-4 * g.history[s].loss);
      }
      const [ca, ga] = [cpu.adapter(), await part.adapter()];
      let worst = 0, moved = 0;
      ca.modules.forEach((m, i) => {
        worst = Math.max(worst, maxAbsDiff(m.B, ga.modules[i].B));
        moved = Math.max(moved, ...m.B.map(Math.abs));
      });
      console.log(`max |ΔB| ${worst.toExponential(2)} (B moved up to ${moved.toExponential(2)})`);
      assert(moved > 1e-3, "B moved");
      assert(worst < 1e-5, `B: ${worst}`);
    } finally {
      part.destroy();
      model.destroy();
    }
  },
});
