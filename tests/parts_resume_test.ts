/**
 * An interrupted run of the LoRA part, and of the lifted part in writes mode (Ŝ0 and the gate),
 * resumes to exactly the result of an uninterrupted one: every tensor and its Adam moments are
 * in the checkpoint. (The state part and the memory-mode lifted part: tests/lifted_part_test.ts.)
 */
import { assert, assertEquals, assertGreater } from "@std/assert";
import { GpuModel } from "../lib/model/gpu_model.ts";
import { randomWeights, tinyConfig } from "../lib/model/random.ts";
import { LiftedPart } from "../lib/parts/lifted_part.ts";
import { LiftedConfigSchema } from "../lib/parts/config.ts";
import { initLiftedLayers } from "../lib/parts/support.ts";
import { createLoraPart } from "../lib/parts/lora.ts";
import type { Example } from "../lib/train/data.ts";
import type { TrainablePart } from "../lib/train/parts.ts";
import { tune } from "../lib/train/tune.ts";
import { loadCheckpoint } from "../lib/train/checkpoint.ts";
import { gpu, maxAbsDiff, Rng } from "./_helpers.ts";

const weights = randomWeights(tinyConfig({ nLayer: 2, nEmbd: 64, headSize: 64, vocabSize: 64 }), 9);
const quiet = { progress: false, livePlot: false } as const;
const rng = new Rng(31);
const seqs = Array.from({ length: 6 }, () => Array.from({ length: 20 }, () => rng.int(64)));
const ex: Example[] = seqs.map((ids, line) => ({
  ids,
  loss: Uint8Array.from(ids, (_, i) => (i > 0 ? 1 : 0)),
  line,
}));

async function interruptedEqualsFull(
  make: (model: GpuModel) => Promise<TrainablePart>,
  names: string[],
): Promise<void> {
  const model = await GpuModel.create(gpu!, weights);
  const opts = { steps: 6, batch: 2, lrInit: 0.05, seed: 4, ...quiet };
  const run = async (dir: string, o: Record<string, unknown>) => {
    const p = await make(model);
    const res = await tune(model, ex, { ...opts, ...o, parts: [p], outDir: dir });
    const out = { res, t: await p.read() };
    p.destroy();
    return out;
  };
  const dirA = await Deno.makeTempDir(), dirB = await Deno.makeTempDir();
  const full = await run(dirA, {});
  const stop = new AbortController();
  const half = await run(dirB, {
    signal: stop.signal,
    onStep: (r: { step: number }) => r.step === 3 && stop.abort(),
  });
  assertEquals(half.res.stopReason, "aborted");
  const ck = await loadCheckpoint(dirB);
  assertEquals(ck.step, 3);
  for (const k of names) assert(ck.tensors[k], `checkpoint holds ${k}`);
  const resumed = await run(dirB, { resume: true });
  assertEquals(resumed.res.history.map((h) => h.step), [1, 2, 3, 4, 5, 6]);
  for (const [k, v] of Object.entries(full.t)) {
    assertEquals(maxAbsDiff(resumed.t[k], v), 0, `${k} after resume`);
  }
  model.destroy();
}

Deno.test({
  name: "LoRA part: an interrupted run resumes to the uninterrupted result",
  ignore: !gpu,
  fn: async () => {
    let trained: Record<string, Float32Array> | undefined;
    await interruptedEqualsFull(async (model) => {
      const p = await createLoraPart(model, { r: 2, targets: ["att.key", "ffn.value"] });
      trained ??= await p.read();
      return p;
    }, ["lora.blocks.0.att.key.lora_B", "lora.blocks.0.att.key.lora_B.adam_m"]);
    assert(trained, "the part was built");
  },
});

Deno.test({
  name: "lifted part (writes mode): Ŝ0 and the gate resume to the uninterrupted result",
  ignore: !gpu,
  fn: async () => {
    const cfg = LiftedConfigSchema.parse({ enabled: true, featureRatio: 1, writes: true });
    const layers = initLiftedLayers(weights, seqs, cfg);
    let last: LiftedPart | undefined;
    await interruptedEqualsFull(async (model) => {
      last = await LiftedPart.create(model, { layers });
      return last;
    }, ["lifted.gate", "lifted.gate.adam_v", "lifted.s0.adam_m"]);
    assert(last);
    const model = await GpuModel.create(gpu!, weights);
    const p = await LiftedPart.create(model, { layers });
    assertEquals(p.tensors.map((t) => t.name), ["s0", "gate"]);
    const res = await tune(model, ex, { steps: 4, batch: 2, lrInit: 0.05, parts: [p], ...quiet });
    assertEquals(res.steps, 4);
    const t = await p.read();
    assertGreater(maxAbsDiff(t.gate, new Float32Array(t.gate.length)), 0, "the gate was trained");
    p.destroy();
    model.destroy();
  },
});
