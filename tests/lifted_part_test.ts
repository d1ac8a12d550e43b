/**
 * The lifted part (lib/parts/lifted_part.ts) trained by `tune` with S0: DBP lowers the
 * decorrelation loss on a correlated case; an interrupted run resumes to exactly the result of an
 * uninterrupted one (Ŝ0, its Adam moments and R all checkpointed); a lifted state carried by a
 * GpuState is reset to Ŝ0 by `reset`.
 */
import { assert, assertEquals, assertGreater } from "@std/assert";
import { GpuModel } from "../lib/model/gpu_model.ts";
import { randomWeights, tinyConfig } from "../lib/model/random.ts";
import { LiftedPart } from "../lib/parts/lifted_part.ts";
import { LiftedConfigSchema } from "../lib/parts/config.ts";
import { initLiftedLayers } from "../lib/parts/support.ts";
import type { Example } from "../lib/train/data.ts";
import { StatePart } from "../lib/train/state_part.ts";
import { tune } from "../lib/train/tune.ts";
import { loadCheckpoint } from "../lib/train/checkpoint.ts";
import { GpuLifted } from "../lib/model/gpu_lifted.ts";
import { gpu, maxAbsDiff, Rng } from "./_helpers.ts";

const weights = randomWeights(tinyConfig({ nLayer: 2, nEmbd: 64, headSize: 64, vocabSize: 64 }), 7);
const quiet = { progress: false, livePlot: false } as const;

function data(seed: number): { seqs: number[][]; ex: Example[] } {
  const rng = new Rng(seed);
  const seqs = Array.from({ length: 4 }, () => Array.from({ length: 20 }, () => rng.int(64)));
  const ex = seqs.map((ids, line) => ({
    ids,
    loss: Uint8Array.from(ids, (_, i) => (i > 0 ? 1 : 0)),
    line,
  }));
  return { seqs, ex };
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

Deno.test({
  name: "lifted part: tune with S0 + Ŝ0 + DBP records a falling decorrelation loss",
  ignore: !gpu,
  fn: async () => {
    const model = await GpuModel.create(gpu!, weights);
    const { seqs, ex } = data(23);
    // Gaussian features of unit keys: all positive, so strongly correlated under R = I
    const cfg = LiftedConfigSchema.parse({ enabled: true, featureRatio: 1, support: "random" });
    const layers = initLiftedLayers(weights, seqs, cfg);
    const s0 = await StatePart.create(model);
    const lp = await LiftedPart.create(model, { layers, dbp: { lr: 0.02 } });
    const steps = 6, t0 = performance.now();
    const res = await tune(model, ex, {
      parts: [s0, lp],
      steps,
      batch: 2,
      lrInit: 0.01,
      lrFinal: 0.01,
      ...quiet,
    });
    const ms = (performance.now() - t0) / steps;
    const dec = res.history.map((r) => r.decorrelationLoss!);
    console.log(
      `tune S0 + Ŝ0 + DBP (${ms.toFixed(0)} ms/step): decorrelation ` +
        `${dec.map((x) => x.toExponential(2)).join(" ")}; loss ${
          res.history[0].loss.toFixed(4)
        } → ` +
        `${res.history.at(-1)!.loss.toFixed(4)}`,
    );
    assertEquals(res.steps, steps);
    for (const r of res.history) {
      assert(Number.isFinite(r.decorrelationLoss) && Number.isFinite(r.correlationLoss));
    }
    assert(dec.at(-1)! < dec[0], `decorrelation loss ${dec[0]} → ${dec.at(-1)}: expected a fall`);
    const out = await lp.layers();
    assert(Array.from(out[0]!.s0).some((x) => x !== 0), "Ŝ0 was trained");
    assert(maxDiff(out[0]!.R, layers[0]!.R) > 0, "R moved by DBP");
    s0.destroy();
    lp.destroy();
    model.destroy();
  },
});

Deno.test({
  name: "lifted part: an interrupted run (S0 + Ŝ0 + DBP) resumes to the uninterrupted result",
  ignore: !gpu,
  fn: async () => {
    const model = await GpuModel.create(gpu!, weights);
    const { seqs, ex } = data(5);
    const cfg = LiftedConfigSchema.parse({ enabled: true, featureRatio: 1, layers: [1] });
    const layers = initLiftedLayers(weights, seqs, cfg);
    const opts = { steps: 6, batch: 2, lrInit: 0.05, seed: 3, ...quiet };
    const run = async (dir: string, o: Record<string, unknown>) => {
      const s0 = await StatePart.create(model);
      const lp = await LiftedPart.create(model, { layers, dbp: { lr: 0.01 }, lrScale: 2 });
      const res = await tune(model, ex, { ...opts, ...o, parts: [s0, lp], outDir: dir });
      const out = { res, s0: (await s0.read()).s0, lifted: await lp.read() };
      s0.destroy();
      lp.destroy();
      return out;
    };
    const dirA = await Deno.makeTempDir(), dirB = await Deno.makeTempDir();
    const full = await run(dirA, {});
    const stop = new AbortController();
    const part = await run(dirB, {
      signal: stop.signal,
      onStep: (r: { step: number }) => r.step === 3 && stop.abort(),
    });
    assertEquals(part.res.stopReason, "aborted");
    const ck = await loadCheckpoint(dirB);
    assertEquals(ck.step, 3);
    const names = ["lifted.s0", "lifted.s0.adam_m", "lifted.s0.adam_v", "lifted.R.1"];
    for (const k of [...names, "lifted.support.1", "lifted.gamma.1", "state.s0.adam_m"]) {
      assert(ck.tensors[k], `checkpoint holds ${k}`);
    }
    assertGreater(
      maxAbsDiff(
        ck.tensors["lifted.s0.adam_v"],
        new Float32Array(ck.tensors["lifted.s0.adam_v"].length),
      ),
      0,
    );
    const resumed = await run(dirB, { resume: true });
    assertEquals(resumed.res.history.map((h) => h.step), [1, 2, 3, 4, 5, 6]);
    assertEquals(maxAbsDiff(resumed.s0, full.s0), 0, "S0");
    assertEquals(maxAbsDiff(resumed.lifted.s0, full.lifted.s0), 0, "Ŝ0");
    assertEquals(maxAbsDiff(resumed.lifted["R.1"], full.lifted["R.1"]), 0, "R");
    assertGreater(maxAbsDiff(full.lifted["R.1"], Float32Array.from(layers[1]!.R)), 0, "R moved");
    model.destroy();
  },
});

Deno.test({
  name: "GpuState carries the lifted state: reset puts it back to Ŝ0, a new set replaces it",
  ignore: !gpu,
  fn: async () => {
    const model = await GpuModel.create(gpu!, weights);
    const { seqs } = data(9);
    const cfg = LiftedConfigSchema.parse({ enabled: true, featureRatio: 1, layers: [0] });
    const layers = initLiftedLayers(weights, seqs, cfg);
    layers[0]!.s0 = Float32Array.from(layers[0]!.s0, (_, i) => Math.sin(i) * 0.1);
    const set = await GpuLifted.create(gpu!, model.config, layers);
    model.setLifted(set);
    const st = model.createState(1);
    await model.forward([seqs[0]], st, { logits: "last" });
    const moved = (await st.lifted!.read())[0]!;
    assertGreater(maxDiff(moved, layers[0]!.s0), 0, "the forward advanced the lifted state");
    st.reset();
    assertEquals(maxDiff((await st.lifted!.read())[0]!, layers[0]!.s0), 0, "reset → Ŝ0");
    const set2 = await GpuLifted.create(gpu!, model.config, layers);
    const first = st.lifted!;
    assert(st.liftedFor(set2) !== first && st.liftedFor(set2) === st.lifted);
    st.destroy();
    assertEquals(st.lifted, undefined);
    model.setLifted(undefined);
    set.destroy();
    set2.destroy();
    model.destroy();
  },
});
