import {
  assert,
  assertEquals,
  assertGreater,
  assertRejects,
  assertStringIncludes,
} from "@std/assert";
import { GpuModel } from "../lib/model/gpu_model.ts";
import { loadModel } from "../lib/model/load.ts";
import { randomWeights, tinyConfig } from "../lib/model/random.ts";
import { ByteTokenizer } from "../lib/tokenizer/bytes.ts";
import { buildDataset } from "../lib/train/data.ts";
import { NonFiniteError, tune, tuneState } from "../lib/train/tune.ts";
import { StatePart } from "../lib/train/state_part.ts";
import { CheckpointError, loadCheckpoint } from "../lib/train/checkpoint.ts";
import { fixture, gpu, hasFixtures, maxAbsDiff } from "./_helpers.ts";

const bytes = new ByteTokenizer();
const quiet = { progress: false, livePlot: false } as const;

function smallModel(): Promise<GpuModel> {
  const cfg = tinyConfig({ nLayer: 2, nEmbd: 64, headSize: 64, vocabSize: 256 });
  return GpuModel.create(gpu!, randomWeights(cfg, 3));
}

const rows = ["abc=cba", "hello=olleh", "xyz=zyx", "stop=pots", "rwkv=vkwr", "gpu=upg"]
  .map((s) => JSON.stringify({ prompt: s.split("=")[0] + "=", response: s.split("=")[1] + "\n" }))
  .join("\n");

Deno.test({
  name: "tuneState: 50 steps on the fixture model lower the training loss clearly",
  ignore: !gpu || !hasFixtures,
  fn: async () => {
    const { weights } = await loadModel(fixture("models/tiny-rwkv7-834K.safetensors"));
    const model = await GpuModel.create(gpu!, weights);
    // This small fixture barely reacts to its wkv state (a random state of scale 10 moves the
    // loss of this text by < 0.01 nats), so the achievable margin is small but must be clear.
    const ds = buildDataset(JSON.stringify({ text: "Qxyzzy says hi" }), bytes);
    const res = await tuneState(model, ds, {
      steps: 50,
      batch: 1,
      lrInit: 0.1,
      lrFinal: 1e-3,
      ...quiet,
    });
    const first = res.history[0].loss, last = res.history.at(-1)!.loss;
    console.log(
      `fixture model, 50 steps: training loss ${first.toFixed(4)} → ${last.toFixed(4)} ` +
        `(−${(first - last).toFixed(4)} nats, −${(100 * (1 - last / first)).toFixed(2)}%)`,
    );
    assertEquals(res.steps, 50);
    assert(first - last > 0.02, `loss ${first} → ${last}: expected a drop of more than 0.02 nats`);
    for (let i = 10; i < 50; i += 10) {
      assert(res.history[i].loss < first, `loss at step ${i + 1} is not below the first`);
    }
    model.destroy();
  },
});

Deno.test({
  name: "tuneState: an interrupted run resumed reaches the same state as an uninterrupted one",
  ignore: !gpu,
  fn: async () => {
    const model = await smallModel();
    const ds = buildDataset(rows, bytes, { seed: 1 });
    const opts = { steps: 6, batch: 2, seed: 4, lrInit: 0.5, ...quiet };
    const dirA = await Deno.makeTempDir(), dirB = await Deno.makeTempDir();
    const full = await tuneState(model, ds, { ...opts, outDir: dirA });
    const stop = new AbortController();
    const part = await tuneState(model, ds, {
      ...opts,
      outDir: dirB,
      signal: stop.signal,
      onStep: (r) => r.step === 3 && stop.abort(),
    });
    assertEquals(part.stopReason, "aborted");
    assertEquals(part.steps, 3);
    const ck = await loadCheckpoint(dirB);
    assertEquals(ck.step, 3);
    assertEquals(Object.keys(ck.tensors).sort(), [
      "state.s0",
      "state.s0.adam_m",
      "state.s0.adam_v",
    ]);
    const resumed = await tuneState(model, ds, { ...opts, outDir: dirB, resume: true });
    assertEquals(resumed.steps, 6);
    assertEquals(resumed.history.map((h) => h.step), [1, 2, 3, 4, 5, 6]);
    for (let l = 0; l < full.states.length; l++) {
      assertEquals(maxAbsDiff(resumed.states[l], full.states[l]), 0, `layer ${l}`);
    }
    assertGreater(maxAbsDiff(full.states[0], new Float32Array(4096)), 0);
    model.destroy();
  },
});

Deno.test({
  name: "tuneState: a non-finite loss stops the run; the folder's checkpoint stays valid",
  ignore: !gpu,
  fn: async () => {
    const model = await smallModel();
    const ds = buildDataset(rows, bytes);
    const dir = await Deno.makeTempDir();
    await tuneState(model, ds, { steps: 2, batch: 2, outDir: dir, ...quiet });
    const good = await loadCheckpoint(dir);
    assertEquals(good.step, 2);
    const poisoned = good.tensors["state.s0"].slice();
    poisoned[7] = NaN;
    const states = [poisoned.slice(0, 4096), poisoned.slice(4096)];
    const e = await assertRejects(
      () =>
        tuneState(model, ds, { steps: 4, batch: 2, outDir: dir, initialStates: states, ...quiet }),
      NonFiniteError,
      "the state was not updated",
    );
    assert(e.message.includes(`No checkpoint was written by this run (${dir})`), e.message);
    const after = await loadCheckpoint(dir);
    assertEquals(after.step, 2);
    assertEquals(after.tensors["state.s0"], good.tensors["state.s0"]);
    // a run that saved at step 2, then went NaN: the message names step 2's (finite) checkpoint
    const dir2 = await Deno.makeTempDir();
    const part = await StatePart.create(model);
    const nan = new Float32Array(2 * 4096).fill(NaN);
    const e2 = await assertRejects(() =>
      tune(model, ds, {
        parts: [part],
        steps: 6,
        batch: 2,
        saveEvery: 2,
        outDir: dir2,
        ...quiet,
        onStep: (r) => r.step === 3 && part.write({ s0: nan }),
      }), NonFiniteError);
    part.destroy();
    assertStringIncludes(e2.message, `step 3: the loss is NaN`);
    assertStringIncludes(
      e2.message,
      `The last good checkpoint (step 2) is ${dir2}/checkpoint.json`,
    );
    assertEquals((await loadCheckpoint(dir2)).step, 2);
    model.destroy();
  },
});

Deno.test({
  name: "tuneState: resume refuses a missing checkpoint (naming the path) and changed --steps",
  ignore: !gpu,
  fn: async () => {
    const model = await smallModel();
    const ds = buildDataset(rows, bytes);
    const empty = await Deno.makeTempDir();
    const e = await assertRejects(
      () =>
        tuneState(model, ds, {
          steps: 2,
          batch: 2,
          outDir: `${empty}/typo`,
          resume: true,
          ...quiet,
        }),
      CheckpointError,
    );
    assertStringIncludes(e.message, `${empty}/typo/checkpoint.json does not exist`);
    assertEquals([...Deno.readDirSync(empty)].length, 0, "nothing was created");
    const dir = await Deno.makeTempDir();
    await tuneState(model, ds, { steps: 2, batch: 2, outDir: dir, ...quiet });
    const before = await Deno.readTextFile(`${dir}/checkpoint.json`);
    const e2 = await assertRejects(
      () => tuneState(model, ds, { steps: 4, batch: 2, outDir: dir, resume: true, ...quiet }),
      CheckpointError,
    );
    assertStringIncludes(e2.message, "totalSteps = 2, this resume has 4 (--steps/--epochs)");
    assertStringIncludes(e2.message, "learning-rate schedule");
    assertEquals(await Deno.readTextFile(`${dir}/checkpoint.json`), before, "not overwritten");
    model.destroy();
  },
});
