/**
 * LoRA (docs/MATH.md §7) on the GPU, on a seeded random multi-head model (L2, C128, H2, N64, V97):
 *
 * - `shaders/lora.wgsl` merge and dA/dB against `lib/ref/lora.ts` on odd shapes (r = 5, 37 × 20,
 *   several row chunks), overwrite and accumulate: errRatio ≤ 1e-5 (f32 sums of ≤ 37 terms);
 * - B = 0 gives the untuned logits bit for bit (explicit weights and `useWeights`);
 * - the merged-checkpoint export, loaded as a model, equals the adapter at runtime: max |Δ| ≤ 1e-5
 *   on every token's logits, with merged textures refreshed (after a `write` too) and with
 *   textures dropped (chunks the texture copies cannot follow);
 * - GPU dA, dB through `LoraPart` against the reference (`refBatchLossAndGrad` weight gradients
 *   of the merged model → `loraGradsFromRef`): errRatio ≤ 1e-4 per tensor;
 * - Adam steps through `LoraPart` (driven by hand) lower the loss; the frozen W's bytes never
 *   change; `read`/`write` restore the part; f16 weights are refused.
 */
import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert";
import { readBytes, readF32, uploadStorage } from "../lib/gpu/buffers.ts";
import { Recorder } from "../lib/gpu/recorder.ts";
import { AdamKernel } from "../lib/kernels/adam.ts";
import { LoraKernel } from "../lib/kernels/lora.ts";
import { GpuLora } from "../lib/model/gpu_lora.ts";
import { GpuModel, type GpuModelOptions } from "../lib/model/gpu_model.ts";
import { uploadMatrix } from "../lib/model/gpu_weights.ts";
import { initLora, LORA_FIELDS, type LoraAdapter, LoraError } from "../lib/model/lora.ts";
import { loraGradsFromRef, mergeLoraWeights, parseLora } from "../lib/model/lora_file.ts";
import { serializeLora, serializeMergedModel } from "../lib/model/lora_file.ts";
import { weightsFromTensors } from "../lib/model/load.ts";
import { parseSafetensors } from "../lib/model/safetensors.ts";
import { randomWeights, tinyConfig } from "../lib/model/random.ts";
import type { RwkvWeights } from "../lib/model/types.ts";
import { refBatchLossAndGrad } from "../lib/ref/backward.ts";
import { loraGradsRef, loraMergeRef } from "../lib/ref/lora.ts";
import { createLoraPart } from "../lib/parts/lora.ts";
import { GpuBackward } from "../lib/model/gpu_backward.ts";
import { errRatio, gpu, maxAbsDiff, randomBatch, Rng, sharedS0Args } from "./_helpers.ts";

const config = () =>
  tinyConfig({
    nLayer: 2,
    nEmbd: 128,
    headSize: 64,
    vocabSize: 97,
    dimW: 8,
    dimA: 6,
    dimV: 8,
    dimG: 12,
  });

/** An adapter with a random (non-zero) B, so that both dA and dB are non-zero. */
function trainedAdapter(w: RwkvWeights, r: number, seed: number): LoraAdapter {
  const a = initLora(w.config, { r, alpha: 2 * r, seed });
  const rng = new Rng(seed + 1);
  for (const m of a.modules) m.B.set(rng.f32(m.B.length, -0.05, 0.05));
  return a;
}

Deno.test({
  name: "lora.wgsl merge and dA/dB vs reference: odd shapes, row chunks, accumulate",
  ignore: !gpu,
  async fn() {
    const g = gpu!, rng = new Rng(5);
    const d = { out: 37, in: 20, r: 5 }, s = 0.7;
    const W = rng.f32(d.out * d.in), dW = rng.f32(d.out * d.in);
    const A = rng.f32(d.r * d.in), B = rng.f32(d.out * d.r);
    const chunk = 8 * d.in * 4; // 8 rows a chunk: 5 chunks, the last of 5 rows
    const Wm = uploadMatrix(g, "t.W", W, d.out, d.in, chunk);
    const dWm = uploadMatrix(g, "t.dW", dW, d.out, d.in, chunk);
    const out = uploadMatrix(g, "t.out", new Float32Array(W.length), d.out, d.in, chunk);
    assertEquals(Wm.chunks.length, 5);
    const f = { A: uploadStorage(g, "t.A", A), B: uploadStorage(g, "t.B", B), r: d.r, scale: s };
    const dA = uploadStorage(g, "t.dA", new Float32Array(A.length));
    const dB = uploadStorage(g, "t.dB", new Float32Array(B.length));
    const k = await LoraKernel.create(g);
    const rec = new Recorder(g, "t");
    k.merge(rec, Wm, f, out);
    k.grads(rec, { ...f, dW: dWm, dA, dB });
    rec.submit();
    const merged = new Float32Array(W.length);
    for (const c of out.chunks) {
      merged.set(await readF32(g, c.buffer, c.rows * d.in), c.rowStart * d.in);
    }
    const ref = loraGradsRef(dW, A, B, d, s);
    const eM = errRatio(merged, loraMergeRef(W, A, B, d, s));
    const eA = errRatio(await readF32(g, dA, A.length), ref.dA);
    const eB = errRatio(await readF32(g, dB, B.length), ref.dB);
    const acc = new Recorder(g, "t.acc");
    k.grads(acc, { ...f, dW: dWm, dA, dB, accumulate: true });
    acc.submit();
    const two = (x: Float64Array) => x.map((v) => 2 * v);
    const eA2 = errRatio(await readF32(g, dA, A.length), two(ref.dA));
    const eB2 = errRatio(await readF32(g, dB, B.length), two(ref.dB));
    console.log(
      `  merge ${eM.toExponential(2)}, dA ${eA.toExponential(2)}, dB ` +
        `${eB.toExponential(2)}, accumulated ${eA2.toExponential(2)} / ${eB2.toExponential(2)}`,
    );
    for (const e of [eM, eA, eB, eA2, eB2]) assert(e <= 1e-5, `rel err ${e}`);
  },
});

Deno.test({
  name: "B = 0 gives the untuned logits bit for bit; f16 weights are refused",
  ignore: !gpu,
  async fn() {
    const g = gpu!, w = randomWeights(config(), 2);
    const model = await GpuModel.create(g, w, { textures: true });
    const lora = await GpuLora.create(model, initLora(w.config, { r: 4 }));
    const toks = [[3, 14, 15, 92, 65, 35, 89, 79], [2, 71, 82, 81, 82, 84, 59, 4]];
    const run = async (weights?: typeof lora.weights) => {
      const st = model.createState(2);
      const out = await model.forward(toks, st, { logits: "all", ...(weights ? { weights } : {}) });
      st.destroy();
      return out;
    };
    try {
      assert(lora.modules.every((m) => m.merged.tex !== undefined), "merged textures kept");
      const base = await run(), viaArgs = await run(lora.weights);
      model.useWeights(lora.weights);
      const viaModel = await run();
      model.useWeights();
      const other = { ...lora.weights, config: { ...w.config, nLayer: 3 } };
      assertThrows(() => model.useWeights(other), RangeError, "do not fit this model");
      for (const x of [viaArgs, viaModel]) {
        assertEquals(new Uint32Array(x.buffer), new Uint32Array(base.buffer));
      }
      const f16 = await GpuModel.create(g, w, { weightDtype: "f16" });
      await assertRejects(
        () => GpuLora.create(f16, initLora(w.config, { r: 2 })),
        LoraError,
        'weightDtype: "f32"',
      );
      f16.destroy();
    } finally {
      lora.destroy();
      model.destroy();
    }
  },
});

/** Every token's logits of the adapter at runtime vs the merged export loaded as a model. */
async function checkMergedExport(opts: GpuModelOptions, expectTextures: boolean) {
  const g = gpu!, w = randomWeights(config(), 3);
  const model = await GpuModel.create(g, w, opts);
  const first = trainedAdapter(w, 3, 11), second = trainedAdapter(w, 3, 12);
  const part = await createLoraPart(model, first);
  const toks = [[5, 17, 33, 2, 96, 40, 41, 8, 0, 12, 77]];
  const logits = async (m: GpuModel, weights?: typeof part.lora.weights) => {
    const st = m.createState(1);
    const out = await m.forward(toks, st, { logits: "all", ...(weights ? { weights } : {}) });
    st.destroy();
    return out;
  };
  const exported = async (a: LoraAdapter) => {
    const bytes = serializeMergedModel(
      w,
      await parseLora(serializeLora(a), "a", { config: w.config }),
    );
    const m = await GpuModel.create(g, weightsFromTensors(parseSafetensors(bytes)), opts);
    const out = await logits(m);
    m.destroy();
    return out;
  };
  try {
    assertEquals(part.lora.modules.every((m) => m.merged.tex !== undefined), expectTextures);
    const d1 = maxAbsDiff(await logits(model, part.lora.weights), await exported(first));
    // write() uploads new factors and re-merges (buffers and textures)
    part.write(Object.fromEntries(
      second.modules.flatMap((m) => [
        [`blocks.${m.layer}.${m.target}.lora_A`, m.A],
        [`blocks.${m.layer}.${m.target}.lora_B`, m.B],
      ]),
    ));
    const d2 = maxAbsDiff(await logits(model, part.lora.weights), await exported(second));
    const moved = maxAbsDiff(await logits(model, part.lora.weights), await logits(model));
    console.log(
      `  max |Δ| ${d1.toExponential(2)}, after write ${d2.toExponential(2)} ` +
        `(adapter moves the logits by ${moved.toFixed(3)})`,
    );
    assert(d1 <= 1e-5 && d2 <= 1e-5, `merged export vs runtime: ${d1}, ${d2}`);
    assert(moved > 1e-2, "the adapter must change the logits for the test to mean anything");
  } finally {
    part.destroy();
    model.destroy();
  }
}

Deno.test({
  name: "merged export equals the adapter at runtime (merged textures refreshed)",
  ignore: !gpu,
  fn: () => checkMergedExport({ textures: true }, true),
});

Deno.test({
  name: "merged export equals the adapter at runtime (row chunks: textures dropped; no textures)",
  ignore: !gpu,
  async fn() {
    await checkMergedExport({ textures: true, maxChunkBytes: 16 * 1024 }, false);
    await checkMergedExport({ textures: false }, false);
  },
});

Deno.test({
  name: "GPU dA, dB through LoraPart vs the reference (every target, every layer)",
  ignore: !gpu,
  async fn() {
    const g = gpu!, w = randomWeights(config(), 5), rng = new Rng(8);
    const adapter = trainedAdapter(w, 5, 21);
    const batch = randomBatch(rng, w.config.vocabSize, [13, 8]);
    const { nLayer: L, nHead: H, headSize: N } = w.config;
    const s0 = rng.f32(L * H * N * N, -0.3, 0.3);
    const model = await GpuModel.create(g, w);
    const part = await createLoraPart(model, adapter);
    const bwd = await GpuBackward.create(model, part.backwardOptions);
    try {
      const rec = new Recorder(g, "t");
      const args = sharedS0Args(g, batch, s0);
      const bufs = bwd.record(rec, { ...args, ...part.backwardArgs() });
      part.recordGrads(rec, bufs, false);
      rec.submit();
      const loss = (await readF32(g, bufs.stats, 1))[0];
      const got = await part.readGrads();
      const state = Array.from({ length: L }, (_, l) => ({
        att: new Float32Array(w.config.nEmbd),
        wkv: s0.subarray(l * H * N * N, (l + 1) * H * N * N),
        ffn: new Float32Array(w.config.nEmbd),
      }));
      const ref = refBatchLossAndGrad(mergeLoraWeights(w, adapter), batch.seqs, state, {
        weightGrads: true,
      });
      const want = loraGradsFromRef(adapter, ref.dWeights!);
      assert(Math.abs(loss - ref.loss) <= 1e-5 * ref.loss, `loss ${loss} vs ${ref.loss}`);
      const errs = Object.entries(want).map(([name, r]) => [name, errRatio(got[name], r)] as const);
      const worst = Math.max(...errs.map(([, e]) => e));
      console.log(
        `  ${errs.length} tensors, worst rel err ${worst.toExponential(2)}: ` +
          errs.map(([n, e]) => `${n.replace("blocks.", "")} ${e.toExponential(1)}`).join(", "),
      );
      for (const [name, e] of errs) assert(e <= 1e-4, `${name}: rel err ${e}`);
    } finally {
      bwd.destroy();
      part.destroy();
      model.destroy();
    }
  },
});

Deno.test({
  name: "Adam through LoraPart lowers the loss; the frozen W never changes; read/write",
  ignore: !gpu,
  async fn() {
    const g = gpu!, w = randomWeights(config(), 7), rng = new Rng(9);
    const model = await GpuModel.create(g, w, { textures: true });
    const part = await createLoraPart(model, { r: 4, seed: 1 }, { lrScale: 1 });
    const bwd = await GpuBackward.create(model, part.backwardOptions);
    const adam = await AdamKernel.create(g);
    const batch = randomBatch(rng, w.config.vocabSize, [16, 12]);
    const { nLayer: L, nHead: H, headSize: N } = w.config;
    const args = sharedS0Args(g, batch, new Float32Array(L * H * N * N));
    const moments = part.tensors.map((t) =>
      [0, 1].map(() => uploadStorage(g, "m", new Float32Array(t.n)))
    );
    const frozen = async () => {
      const out: Uint8Array[] = [];
      for (const m of part.lora.modules) {
        for (const c of m.base.chunks) out.push(new Uint8Array(await readBytes(g, c.buffer)));
      }
      return out;
    };
    const plain = await GpuBackward.create(model);
    try {
      const before = await frozen(), start = await part.read();
      const untuned = (await plain.lossAndGrad(args)).loss;
      const losses: number[] = [];
      for (let step = 0; step < 8; step++) {
        const rec = new Recorder(g, `t.step${step}`);
        const bufs = bwd.record(rec, { ...args, ...part.backwardArgs() });
        part.recordGrads(rec, bufs, false);
        part.tensors.forEach((t, i) => {
          const p = { buffer: t.param, n: t.n }, gr = { buffer: t.grad, n: t.n };
          adam.step(rec, p, gr, moments[i][0], moments[i][1], {
            lr: 3e-3 * part.lrScale,
            step: step + 1,
          });
        });
        part.afterUpdate(rec);
        rec.submit();
        losses.push((await readF32(g, bufs.stats, 1))[0]);
      }
      console.log(
        `  untuned ${untuned.toFixed(5)}, losses ${losses.map((x) => x.toFixed(4)).join(" ")}`,
      );
      assertEquals(losses[0], untuned, "step 0 (B = 0) is the untuned model");
      assert(losses[7] < losses[0] - 0.05, `loss ${losses[0]} → ${losses[7]}`);
      const after = await frozen();
      after.forEach((b, i) => assertEquals(b, before[i], `W chunk ${i} changed`));
      // write() restores the start: the loss is the untuned one again
      part.write(start);
      assertEquals((await bwd.lossAndGrad({ ...args, ...part.backwardArgs() })).loss, untuned);
      assertEquals(Object.keys(start).length, 2 * 6 * L);
      assertEquals(Object.keys(start)[0], "blocks.0.att.receptance.lora_A");
      assert(LORA_FIELDS["att.key"] === "Wk");
    } finally {
      for (const m of moments.flat()) m.destroy();
      plain.destroy();
      bwd.destroy();
      part.destroy();
      model.destroy();
    }
  },
});
