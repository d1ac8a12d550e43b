/**
 * Resource ownership: runs that fail, and objects that replace others, leave the number of live
 * GPU buffers (`liveBuffers`, every `createBuffer` not yet destroyed) where it was.
 */
import { assertEquals, assertRejects } from "@std/assert";
import { liveBuffers } from "../lib/gpu/tracking.ts";
import { GpuModel } from "../lib/model/gpu_model.ts";
import { GpuLifted } from "../lib/model/gpu_lifted.ts";
import { randomWeights, tinyConfig } from "../lib/model/random.ts";
import { ByteTokenizer } from "../lib/tokenizer/bytes.ts";
import { buildDataset } from "../lib/train/data.ts";
import { NonFiniteError, tuneState } from "../lib/train/tune.ts";
import { initLiftedLayers } from "../lib/parts/support.ts";
import { LiftedConfigSchema } from "../lib/parts/config.ts";
import { gpu } from "./_helpers.ts";

const cfg = tinyConfig({ nLayer: 2, nEmbd: 64, headSize: 64, vocabSize: 256 });
const weights = randomWeights(cfg, 3);
const quiet = { progress: false, livePlot: false } as const;
const rows = ["abc=cba", "hello=olleh", "xyz=zyx", "stop=pots"]
  .map((s) => JSON.stringify({ prompt: s.split("=")[0] + "=", response: s.split("=")[1] + "\n" }))
  .join("\n");

Deno.test({
  name: "buffer leaks: a tuneState run that fails with NonFiniteError frees every buffer it made",
  ignore: !gpu,
  fn: async () => {
    const model = await GpuModel.create(gpu!, weights);
    const ds = buildDataset(rows, new ByteTokenizer());
    // a good run first, so the model's workspaces (kept for later runs) exist
    await tuneState(model, ds, { steps: 1, batch: 2, ...quiet });
    const before = liveBuffers(gpu!);
    const nan = new Float32Array(64 * 64).fill(NaN);
    await assertRejects(
      () => tuneState(model, ds, { steps: 3, batch: 2, initialStates: [nan, nan], ...quiet }),
      NonFiniteError,
    );
    assertEquals(liveBuffers(gpu!), before, "live buffers after the failed run");
    model.destroy();
  },
});

Deno.test({
  name: "buffer leaks: replacing the lifted set frees the lifted state it replaces",
  ignore: !gpu,
  fn: async () => {
    const model = await GpuModel.create(gpu!, weights);
    const lcfg = LiftedConfigSchema.parse({
      enabled: true,
      featureMap: "identity",
      featureRatio: 1,
      headMeans: false,
    });
    const a = await GpuLifted.create(gpu!, cfg, initLiftedLayers(weights, [], lcfg));
    const b = await GpuLifted.create(gpu!, cfg, initLiftedLayers(weights, [], lcfg));
    const tokens = [[1, 2, 3]];
    // workspaces, model buffers and each set's own buffers exist from here
    for (const set of [undefined, a, b]) {
      model.setLifted(set);
      const warm = model.createState(1);
      await model.forward(tokens, warm);
      warm.destroy();
    }
    const before = liveBuffers(gpu!);
    const state = model.createState(1);
    model.setLifted(a);
    await model.forward(tokens, state);
    const withA = liveBuffers(gpu!);
    model.setLifted(b);
    await model.forward(tokens, state);
    assertEquals(liveBuffers(gpu!), withA, "set B's lifted state replaces set A's");
    model.setLifted(undefined);
    await model.forward(tokens, state);
    state.destroy();
    assertEquals(liveBuffers(gpu!), before, "the state frees its lifted state");
    a.destroy();
    b.destroy();
    model.destroy();
  },
});
