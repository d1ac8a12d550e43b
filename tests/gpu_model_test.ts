/**
 * The whole GPU forward vs the fixture's expected logits and the CPU reference: sequence and RNN
 * mode, B > 1, non-zero initial states, multi-head random models, forced weight chunking, and a
 * random model of the official 0.1B shape whose head and embedding exceed one storage binding.
 * Tolerance: logits max |Δ| ≤ 1e-4, states errRatio ≤ 1e-5.
 */
import { assert, assertEquals, assertRejects, assertStrictEquals } from "@std/assert";
import { GpuModel } from "../lib/model/gpu_model.ts";
import { loadModel } from "../lib/model/load.ts";
import { OFFICIAL_SHAPES, randomWeights, tinyConfig } from "../lib/model/random.ts";
import { type RwkvState, zeroState } from "../lib/model/types.ts";
import { refForward } from "../lib/ref/model.ts";
import { assertClose, fixture, gpu, hasFixtures, Rng } from "./_helpers.ts";

const ignore = !gpu;
const ignoreFx = !gpu || !hasFixtures;
const TINY = "models/tiny-rwkv7-834K";
const LOGITS = { maxAbs: 1e-4 };

function expected(): { tokens: number[]; logits: number[] } {
  return JSON.parse(Deno.readTextFileSync(fixture(`${TINY}.expected-logits.json`)));
}

function argmax(a: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[best]) best = i;
  return best;
}

Deno.test({ name: "tiny fixture (safetensors): expected logits", ignore: ignoreFx }, async () => {
  const { weights } = await loadModel(fixture(`${TINY}.safetensors`));
  const model = await GpuModel.create(gpu!, weights);
  const exp = expected();
  const st = model.createState(1);
  const logits = await model.forward([exp.tokens], st);
  assertClose(logits, exp.logits, LOGITS, "logits vs expected-logits.json");
  // RNN mode (token by token) agrees with sequence mode, and so do the states
  const s = model.session();
  let rnn!: Float32Array;
  for (const t of exp.tokens) rnn = await s.feed([t]);
  assertClose(rnn, logits, { maxAbs: 1e-5 }, "RNN vs sequence logits");
  const [seqState] = await model.readState(st);
  const rnnState = await s.state();
  seqState.forEach((ls, l) => {
    assertClose(rnnState[l].wkv, ls.wkv, { maxAbs: 1e-5 }, `layer ${l} wkv`);
    assertClose(rnnState[l].att, ls.att, { maxAbs: 1e-5 }, `layer ${l} att shift`);
  });
  // All-token logits vs the reference
  const text = [...new TextEncoder().encode("The quick brown fox")];
  const all = await model.forward([text], model.createState(1), { logits: "all" });
  const ref = refForward(weights, text);
  assertClose(all, ref.logits, LOGITS, "all-token logits");
  s.destroy();
  model.destroy();
});

Deno.test(
  { name: "tiny fixture (bf16 .pth): matches its own reference", ignore: ignoreFx },
  async () => {
    const { weights } = await loadModel(fixture(`${TINY}.bf16.pth`));
    const model = await GpuModel.create(gpu!, weights);
    const exp = expected();
    const logits = await model.forward([exp.tokens], model.createState(1));
    const ref = refForward(weights, exp.tokens, undefined, { lastOnly: true });
    assertClose(logits, ref.logits, LOGITS, "bf16 logits vs reference");
    assertStrictEquals(argmax(logits), argmax(exp.logits), "bf16 argmax");
    model.destroy();
  },
);

function randomState(cfg: ReturnType<typeof tinyConfig>, rng: Rng): RwkvState {
  return zeroState(cfg).map((s) => ({
    att: rng.f32(s.att.length),
    wkv: rng.f32(s.wkv.length, -0.5, 0.5),
    ffn: rng.f32(s.ffn.length),
  }));
}

Deno.test({ name: "random L2 C128 H2 V300: B 2 from non-zero states", ignore }, async () => {
  const cfg = tinyConfig({ nLayer: 2, nEmbd: 128, headSize: 64, vocabSize: 300 });
  const weights = randomWeights(cfg, 42);
  const rng = new Rng(5);
  const init = [randomState(cfg, rng), randomState(cfg, rng)];
  const tokens = [[1, 299, 17, 42, 0], [7, 7, 150, 3, 298]];
  for (const maxChunkBytes of [undefined, 40 * 128 * 4]) {
    const model = await GpuModel.create(gpu!, weights, { maxChunkBytes });
    if (maxChunkBytes) assertEquals(model.weights.head.chunks.length, 8);
    const st = model.uploadState(init);
    const logits = await model.forward(tokens, st, { logits: "all" });
    const states = await model.readState(st);
    tokens.forEach((seq, b) => {
      const ref = refForward(weights, seq, init[b]);
      const V = cfg.vocabSize, T = seq.length;
      assertClose(logits.subarray(b * T * V, (b + 1) * T * V), ref.logits, LOGITS, `seq ${b}`);
      ref.state.forEach((ls, l) => {
        assertClose(states[b][l].wkv, ls.wkv, { rel: 1e-5 }, `seq ${b} layer ${l} wkv`);
        assertClose(states[b][l].ffn, ls.ffn, { rel: 1e-5 }, `seq ${b} layer ${l} ffn`);
      });
    });
    // Continue one more token in RNN mode from the advanced state
    const next = await model.forward([[5], [6]], st);
    const ref0 = refForward(weights, [...tokens[0], 5], init[0], { lastOnly: true });
    assertClose(next.subarray(0, cfg.vocabSize), ref0.logits, LOGITS, "continued seq 0");
    st.destroy();
    model.destroy();
  }
});

Deno.test({ name: "random 0.1B shape: split head/embedding, 3 tokens", ignore }, async () => {
  const cfg = OFFICIAL_SHAPES["0.1B"];
  const weights = randomWeights(cfg, 3);
  const model = await GpuModel.create(gpu!, weights);
  const headBytes = cfg.vocabSize * cfg.nEmbd * 4;
  const expectChunks = Math.ceil(headBytes / gpu!.limits.maxStorageBufferBindingSize);
  assert(headBytes > gpu!.limits.maxStorageBufferBindingSize || expectChunks === 1);
  assertStrictEquals(model.weights.head.chunks.length, expectChunks);
  assertStrictEquals(model.weights.emb.chunks.length, expectChunks);
  const tokens = [0, 65535, 40000];
  const logits = await model.forward([tokens], model.createState(1));
  const ref = refForward(weights, tokens, undefined, { lastOnly: true });
  assertClose(logits, ref.logits, LOGITS, "0.1B logits");
  model.destroy();
});

Deno.test({ name: "forward rejects bad tokens and shapes", ignore }, async () => {
  const cfg = tinyConfig({ nLayer: 1, nEmbd: 64, headSize: 64, vocabSize: 10 });
  const model = await GpuModel.create(gpu!, randomWeights(cfg, 1));
  const st = model.createState(1);
  await assertRejects(() => model.forward([[10]], st), RangeError);
  await assertRejects(() => model.forward([[1, 2], [3]], model.createState(2)), RangeError);
  await assertRejects(() => model.forward([[1], [2]], st), RangeError);
  model.destroy();
});
