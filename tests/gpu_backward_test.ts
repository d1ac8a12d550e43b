/**
 * The whole GPU backward (loss and dL/dS0 per layer) vs the CPU reference `refBatchLossAndGrad`
 * on a seeded random multi-head model (B = 2, right-padded, T crossing a 16-token checkpoint)
 * and on the tiny fixture model. Tolerances: loss relative 1e-5, dS0 rel err (rms(Δ)/rms(ref))
 * 1e-4.
 */
import { assert, assertStrictEquals } from "@std/assert";
import { readF32, uploadStorage } from "../lib/gpu/buffers.ts";
import { GpuModel } from "../lib/model/gpu_model.ts";
import { loadModel } from "../lib/model/load.ts";
import { randomWeights, tinyConfig } from "../lib/model/random.ts";
import type { RwkvState, RwkvWeights } from "../lib/model/types.ts";
import { zeroState } from "../lib/model/types.ts";
import { refBatchLossAndGrad } from "../lib/ref/backward.ts";
import { GpuBackward, type InitialState } from "../lib/model/gpu_backward.ts";
import { errRatio, fixture, gpu, hasFixtures, randomBatch as makeBatch, Rng } from "./_helpers.ts";

const GRAD_TOL = 1e-4;
const LOSS_TOL = 1e-5;

/** Random shared initial state: wkv random, shifts zero (as in state tuning). */
function randomS0(rng: Rng, weights: RwkvWeights, scale: number): RwkvState {
  const st = zeroState(weights.config);
  for (const s of st) for (let i = 0; i < s.wkv.length; i++) s.wkv[i] = rng.uniform(-scale, scale);
  return st;
}

type Batch = ReturnType<typeof makeBatch>;

/** Shift-state gradient check: att of sequence 0 vs a one-sequence reference (scaled to the batch denominator). */
async function shiftAttErr(
  weights: RwkvWeights,
  batch: Batch,
  s0: RwkvState,
  l2wrap: boolean,
  dShiftAtt: GPUBuffer,
  refCount: number,
): Promise<number> {
  const g = gpu!;
  const cfg = weights.config;
  // per-sequence shift-state gradients: att/ffn of sequence b vs a one-sequence reference
  const dAtt = await readF32(g, dShiftAtt, cfg.nLayer * batch.B * cfg.nEmbd);
  const ref0 = refBatchLossAndGrad(weights, [batch.seqs[0]], s0, { l2wrap });
  const C = cfg.nEmbd;
  const scale = ref0.count / refCount; // sequence 0's gradient under the batch denominator
  return Math.max(...ref0.dState.map((d, l) =>
    errRatio(
      dAtt.subarray(l * batch.B * C, l * batch.B * C + C),
      d.att.map((x) => x * scale),
    )
  ));
}

async function check(weights: RwkvWeights, lengths: number[], seed: number, l2wrap: boolean) {
  const g = gpu!;
  const rng = new Rng(seed);
  const cfg = weights.config;
  const batch = makeBatch(rng, cfg.vocabSize, lengths);
  const s0 = randomS0(rng, weights, 0.3);
  const model = await GpuModel.create(g, weights);
  const bwd = await GpuBackward.create(model);
  const flat = new Float32Array(cfg.nLayer * s0[0].wkv.length);
  s0.forEach((s, l) => flat.set(s.wkv, l * s.wkv.length));
  const init: InitialState = { kind: "shared", wkv: uploadStorage(g, "test.s0", flat) };
  const t0 = performance.now();
  const args = {
    B: batch.B,
    T: batch.T,
    tokens: uploadStorage(g, "test.tokens", batch.tokens),
    targets: uploadStorage(g, "test.targets", batch.targets),
    mask: uploadStorage(g, "test.mask", batch.mask),
    init,
    l2wrap,
  };
  const got = await bwd.lossAndGrad(args);
  const gpuMs = performance.now() - t0;
  const ref = refBatchLossAndGrad(weights, batch.seqs, s0, { l2wrap });
  const lossErr = Math.abs(got.loss - ref.loss) / Math.abs(ref.loss);
  assertStrictEquals(got.count, ref.count);
  const NN = s0[0].wkv.length;
  const errs = ref.dState.map((d, l) => errRatio(got.dS0Sum.subarray(l * NN, (l + 1) * NN), d.wkv));
  const shiftErr = await shiftAttErr(weights, batch, s0, l2wrap, got.bufs.dShiftAtt, ref.count);
  console.log(
    `  L${cfg.nLayer} C${cfg.nEmbd} H${cfg.nHead} T${batch.T} B${batch.B}: loss ${
      got.loss.toFixed(6)
    } ` +
      `(ref ${ref.loss.toFixed(6)}, rel ${lossErr.toExponential(2)}); dS0 rel err per layer ` +
      `${errs.map((e) => e.toExponential(2)).join(" ")}; dShiftAtt rel ${
        shiftErr.toExponential(2)
      }; ` +
      `GPU ${gpuMs.toFixed(0)} ms`,
  );
  assert(lossErr <= LOSS_TOL, `loss ${got.loss} vs ${ref.loss}`);
  for (const e of errs) assert(e <= GRAD_TOL, `dS0 rel err ${e}`);
  assert(shiftErr <= GRAD_TOL, `dShiftAtt rel err ${shiftErr}`);
  // the same initial state given per sequence (a GpuState) gives the same gradient
  const perSeq = await bwd.lossAndGrad({
    ...args,
    init: { kind: "state", state: model.uploadState(lengths.map(() => s0)) },
  });
  assert(errRatio(perSeq.dS0Sum, got.dS0Sum) <= 1e-6, "per-sequence vs shared initial state");
  bwd.destroy();
  model.destroy();
}

Deno.test({
  name: "GPU backward: random multi-head model, B = 2 right-padded, T = 19 vs reference",
  ignore: !gpu,
  async fn() {
    const weights = randomWeights(tinyConfig({ nLayer: 3, nEmbd: 128, headSize: 64 }), 7);
    await check(weights, [19, 11], 11, false);
    await check(weights, [1], 12, true);
  },
});

Deno.test({
  name: "GPU backward: tiny fixture model (L12 C64) dS0 vs reference",
  ignore: !gpu || !hasFixtures,
  async fn() {
    const { weights } = await loadModel(fixture("models/tiny-rwkv7-834K.safetensors"));
    await check(weights, [37, 20], 21, true);
  },
});
