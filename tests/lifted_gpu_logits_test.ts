/**
 * The lifted branch (docs/MATH.md §5) in the whole GPU model, at the logits (N = 64, the only head
 * size of the WKV kernel): Ŝ0 = 0 (memory) and g = 0 (writes) leave the logits bit for bit;
 * the identity limit equals plain state tuning with S0 + Ŝ0 (logits and dŜ0 vs dS0, 1e-5).
 * Branch level and the lifted.safetensors files: lifted_gpu_test.ts.
 *
 * @module
 */
import { assert, assertEquals } from "@std/assert";
import { readF32, uploadStorage } from "../lib/gpu/buffers.ts";
import { GpuLifted } from "../lib/model/gpu_lifted.ts";
import { errRatio, gpu, Rng } from "./_helpers.ts";
import { GpuModel } from "../lib/model/gpu_model.ts";
import { GpuBackward } from "../lib/model/gpu_backward.ts";
import { randomWeights, tinyConfig } from "../lib/model/random.ts";
import { zeroState } from "../lib/model/types.ts";
import { initLiftedLayers } from "../lib/parts/support.ts";
import type { LiftedLayers } from "../lib/ref/lifted_types.ts";
import { LiftedConfigSchema } from "../lib/parts/config.ts";
import { gauss, randomLifted } from "./_lifted_helpers.ts";

/** A two-layer, two-head model with N = 64 (the WKV kernel's head size). */
const modelCfg = tinyConfig({ nLayer: 2, nEmbd: 128, headSize: 64, vocabSize: 64 });
const modelWeights = randomWeights(modelCfg, 11);
const H64 = modelCfg.nHead, N64 = 64, NN = H64 * N64 * N64;

/** Logits (all tokens) of B = 1 sequence from a shared wkv S0 per layer, with `set` attached. */
async function logitsOf(model: GpuModel, tokens: number[], s0: Float32Array, set?: GpuLifted) {
  const st = zeroState(modelCfg);
  st.forEach((s, l) => s.wkv.set(s0.subarray(l * NN, (l + 1) * NN)));
  model.setLifted(set);
  const state = model.uploadState([st]);
  const out = await model.forward([tokens], state, { logits: "all" });
  model.setLifted(undefined);
  state.destroy();
  return out;
}

Deno.test({
  name: "lifted GPU model: Ŝ0 = 0 leaves the logits of the model without the branch",
  ignore: !gpu,
  fn: async () => {
    const rng = new Rng(21);
    const model = await GpuModel.create(gpu!, modelWeights);
    const lifted: LiftedLayers = [0, 1].map(() => ({
      ...randomLifted(rng, { T: 1, N: N64, M: N64, featureMap: "gaussian", headMeans: true }, H64),
      s0: new Float32Array(H64 * N64 * N64),
    }));
    const set = await GpuLifted.create(gpu!, modelCfg, lifted);
    const tokens = Array.from({ length: 13 }, () => rng.int(64));
    const s0 = rng.f32(2 * NN, -0.3, 0.3);
    const plain = await logitsOf(model, tokens, s0);
    const withBranch = await logitsOf(model, tokens, s0, set);
    assertEquals(Array.from(withBranch), Array.from(plain));
    set.destroy();
    model.destroy();
  },
});

Deno.test({
  name: "lifted GPU model: identity limit = plain state tuning with S0 + Ŝ0 (logits, dŜ0 = dS0)",
  ignore: !gpu,
  fn: async () => {
    const rng = new Rng(22);
    const model = await GpuModel.create(gpu!, modelWeights);
    const cfg = LiftedConfigSchema.parse({
      enabled: true,
      featureMap: "identity",
      featureRatio: 1,
      headMeans: false,
    });
    const lifted = initLiftedLayers(modelWeights, [], cfg);
    const X = rng.f32(2 * NN, -0.3, 0.3), Y = rng.f32(2 * NN, -0.3, 0.3);
    lifted.forEach((s, l) => (s!.s0 = X.slice(l * NN, (l + 1) * NN)));
    const set = await GpuLifted.create(gpu!, modelCfg, lifted);
    const tokens = Array.from({ length: 17 }, () => rng.int(64));
    const sum = X.map((x, i) => x + Y[i]);
    const plain = await logitsOf(model, tokens, sum);
    const split = await logitsOf(model, tokens, Y, set);
    const lErr = errRatio(split, plain);
    // gradients: B = 2 right-padded sequences, shared S0
    const B = 2, T = 17;
    const tok = new Uint32Array(B * T),
      tgt = new Uint32Array(B * T),
      mask = new Float32Array(B * T);
    for (let i = 0; i < B * T; i++) {
      tok[i] = rng.int(64);
      tgt[i] = rng.int(64);
      mask[i] = i >= T && i % T >= 12 ? 0 : 1;
    }
    const up = (n: string, a: Float32Array | Uint32Array) => uploadStorage(gpu!, `test.${n}`, a);
    const args = { B, T, tokens: up("tok", tok), targets: up("tgt", tgt), mask: up("mask", mask) };
    const bwd = await GpuBackward.create(model);
    const ref = await bwd.lossAndGrad({ ...args, init: { kind: "shared", wkv: up("sum", sum) } });
    const got = await bwd.lossAndGrad({
      ...args,
      init: { kind: "shared", wkv: up("Y", Y) },
      lifted: { set },
    });
    const errs = {
      logits: lErr,
      loss: Math.abs(got.loss - ref.loss) / Math.abs(ref.loss),
      dS0: errRatio(got.dS0Sum, ref.dS0Sum),
      dLifted: errRatio(got.dLifted!, ref.dS0Sum),
    };
    console.log(
      "identity limit: " +
        Object.entries(errs).map(([k, e]) => `${k} ${e.toExponential(1)}`).join(", "),
    );
    for (const [k, e] of Object.entries(errs)) assert(e <= 1e-5, `identity limit: ${k} err ${e}`);
    bwd.destroy();
    set.destroy();
    model.destroy();
  },
});

Deno.test({
  name: "lifted GPU model: writes mode with g = 0 leaves the logits bit for bit (Ŝ0 ≠ 0)",
  ignore: !gpu,
  fn: async () => {
    const rng = new Rng(26);
    const model = await GpuModel.create(gpu!, modelWeights);
    const lifted: LiftedLayers = [0, 1].map(() => ({
      ...randomLifted(rng, { T: 1, N: N64, M: N64, ...gauss, writes: true }, H64),
      gate: new Float32Array(H64),
    }));
    const set = await GpuLifted.create(gpu!, modelCfg, lifted);
    const tokens = Array.from({ length: 13 }, () => rng.int(64));
    const s0 = rng.f32(2 * NN, -0.3, 0.3);
    const plain = await logitsOf(model, tokens, s0);
    const withBranch = await logitsOf(model, tokens, s0, set);
    assertEquals(Array.from(withBranch), Array.from(plain));
    // and with g ≠ 0 the branch does change them
    set.write(lifted.map((s) => ({ ...s!, gate: Float32Array.of(0.5, -0.5) })));
    const gated = await logitsOf(model, tokens, s0, set);
    assert(errRatio(gated, plain) > 1e-4, "g ≠ 0 changes the logits");
    const back = await set.read();
    assertEquals(back.map((s) => Array.from(s!.gate!)), [[0.5, -0.5], [0.5, -0.5]]);
    assertEquals(set.gateSize, 2 * H64);
    // a memory-mode set holds g = 1 and reads back no gate
    const mem = await GpuLifted.create(
      gpu!,
      modelCfg,
      lifted.map((s) => ({ ...s!, writes: false })),
    );
    assertEquals(Array.from(await readF32(gpu!, mem.gate, mem.gateSize)), [1, 1, 1, 1]);
    assert((await mem.read()).every((s) => s!.gate === undefined || !s!.writes));
    mem.destroy();
    set.destroy();
    model.destroy();
  },
});
