/**
 * The chunked WKV form threaded through the whole model: `GpuModel.create(…, { wkvForm })` gives
 * the same logits (max |Δ| 1e-4) and the same state-tuning loss (relative 1e-5) and dL/dS0
 * (rms-relative 1e-4) with the chunked and the sequential form, on a seeded random model with T
 * crossing a 16-token chunk and B = 2, right-padded.
 */
import { assert, assertStrictEquals } from "@std/assert";
import { GpuModel } from "../lib/model/gpu_model.ts";
import { randomWeights, tinyConfig } from "../lib/model/random.ts";
import { GpuBackward } from "../lib/model/gpu_backward.ts";
import { assertClose, errRatio, gpu, randomBatch, Rng, sharedS0Args } from "./_helpers.ts";

Deno.test({
  name: "model with the chunked WKV form = sequential form (logits, loss, dS0)",
  ignore: !gpu,
  fn: async () => {
    const g = gpu!;
    const cfg = tinyConfig({ nLayer: 2, nEmbd: 64, headSize: 32, vocabSize: 200 });
    const weights = randomWeights(cfg, 5);
    const rng = new Rng(6);
    const batch = randomBatch(rng, cfg.vocabSize, [21, 13]);
    const S = cfg.nLayer * cfg.nHead * cfg.headSize * cfg.headSize;
    const s0 = Float32Array.from({ length: S }, () => rng.uniform(-0.3, 0.3));
    const out: { logits: Float32Array; loss: number; dS0: Float32Array }[] = [];
    for (const wkvForm of ["sequential", "chunked"] as const) {
      const model = await GpuModel.create(g, weights, { wkvForm });
      assertStrictEquals(model.wkvChunked !== undefined, wkvForm === "chunked");
      const logits = await model.forward(
        batch.seqs.map((s) => s.tokens.slice(0, 13)),
        model.createState(2),
        {
          logits: "all",
        },
      );
      const bwd = await GpuBackward.create(model);
      const res = await bwd.lossAndGrad(sharedS0Args(g, batch, s0));
      out.push({ logits, loss: res.loss, dS0: res.dS0Sum.slice() });
      bwd.destroy();
      model.destroy();
    }
    const [seq, chk] = out;
    assertClose(chk.logits, seq.logits, { maxAbs: 1e-4 }, "logits chunked vs sequential");
    assert(Math.abs(chk.loss - seq.loss) / seq.loss < 1e-5, `loss ${chk.loss} vs ${seq.loss}`);
    const e = errRatio(chk.dS0, seq.dS0);
    assert(e < 1e-4, `dS0 rel err ${e}`);
  },
});
