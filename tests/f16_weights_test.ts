/**
 * f16 weight storage (`GpuModel.create(…, { weightDtype: "f16" })`): IEEE halves packed two per
 * u32, unpacked by the matmul shaders with f32 accumulation.
 *
 * The reference is the float64 model run on the same weights rounded to f16 on the CPU (the
 * embedding and per-channel vectors stay f32, as on the GPU), so the tolerances are the f32 ones
 * of the other GPU tests: logits max |Δ| 1e-4, dS0 rms-relative 1e-4. Each test also checks that
 * f16 really differs from f32 by the rounding, so a silent f32 fallback would fail.
 */
import {
  assert,
  assertEquals,
  assertMatch,
  assertNotMatch,
  assertRejectsMatch,
  assertStrictEquals,
  assertThrowsMatch,
} from "@std/assert";
import { createStorage, readF32, uploadStorage } from "../lib/gpu/buffers.ts";
import { Recorder } from "../lib/gpu/recorder.ts";
import { f16WeightSource, MatmulKernel, tileTemplate } from "../lib/kernels/matmul.ts";
import { defaultTuning } from "../lib/kernels/tune.ts";
import { shaderSource } from "../lib/gpu/pipeline.ts";
import { toF16Words, uploadMatrix } from "../lib/model/gpu_weights.ts";
import { GpuModel } from "../lib/model/gpu_model.ts";
import { randomWeights, tinyConfig } from "../lib/model/random.ts";
import type { RwkvWeights } from "../lib/model/types.ts";
import { zeroState } from "../lib/model/types.ts";
import { refBatchLossAndGrad } from "../lib/ref/backward.ts";
import { linear, matmul } from "../lib/ref/linear.ts";
import { refForward } from "../lib/ref/model.ts";
import { GpuBackward } from "../lib/model/gpu_backward.ts";
import {
  assertClose,
  errRatio,
  gpu,
  maxAbsDiff,
  randomBatch,
  Rng,
  sharedS0Args,
} from "./_helpers.ts";

const ignore = !gpu;
const MATRICES = [
  "Wr",
  "Wk",
  "Wv",
  "Wo",
  "w1",
  "w2",
  "a1",
  "a2",
  "v1",
  "v2",
  "g1",
  "g2",
  "ffn_key",
  "ffn_value",
] as const;

const roundF16 = (a: Float32Array) => Float32Array.from(new Float16Array(a));

/** The weights as the f16 model sees them: every matmul matrix rounded to f16. */
function roundedWeights(w: RwkvWeights): RwkvWeights {
  return {
    ...w,
    head: roundF16(w.head),
    blocks: w.blocks.map((b) => {
      const out = { ...b };
      for (const k of MATRICES) if (b[k]) out[k] = roundF16(b[k]!);
      return out;
    }),
  };
}

Deno.test("f16 packing rounds to nearest even, low half first", () => {
  const words = toF16Words(Float32Array.of(1, -2, 1 + 2 ** -11, 65504, 1e-8));
  assertEquals(words.length, 3); // odd count padded
  assertStrictEquals(words[0], ((0xc000 << 16) | 0x3c00) >>> 0); // 1 | -2 << 16
  assertStrictEquals(words[1] & 0xffff, 0x3c00, "1 + 2^-11 is a tie: rounds to even (1)");
  assertStrictEquals(words[1] >>> 16, 0x7bff, "65504, the largest half");
  assertEquals(words[2] & 0xffff, 0, "1e-8 underflows to +0");
});

Deno.test("f16 shader variants replace every weight read", () => {
  for (const name of ["matmul", "matmul_vec4"] as const) {
    const code = f16WeightSource(name === "matmul" ? shaderSource(name) : tileTemplate(name));
    assertNotMatch(code, /\bw\[(?!i)/, `${name}: a raw w[...] read is left`);
    assertMatch(code, /unpack2x16float/);
  }
});

Deno.test(
  { name: "f16 matmul (tiled and generic) vs reference on rounded W", ignore },
  async () => {
    const g = gpu!;
    const rng = new Rng(11);
    const mm = await MatmulKernel.create(g, {
      tuning: defaultTuning({ isFallback: true, description: "" }),
    });
    await mm.prepare("f16");
    // aligned shapes take the tiled kernel, odd ones the generic one
    for (const [M, K, N] of [[1, 16, 36], [5, 20, 44], [19, 36, 12], [3, 13, 7], [9, 7, 21]]) {
      const x = rng.f32(M * K), W = rng.f32(N * K), Mx = rng.f32(K * N);
      const xb = uploadStorage(g, "x", x);
      const wm = uploadMatrix(g, "W", W, N, K, undefined, "f16");
      const mm16 = uploadMatrix(g, "M", Mx, K, N, undefined, "f16");
      assertStrictEquals(wm.chunks[0].buffer.size, Math.max(16, Math.ceil(N * K * 2 / 16) * 16));
      const y1 = createStorage(g, "y1", M * N * 4), y2 = createStorage(g, "y2", M * N * 4);
      const rec = new Recorder(g, "t");
      mm.linearMatrix(rec, wm, { rows: M, x: xb, y: y1 });
      mm.lowrankMatrix(rec, mm16, { rows: M, x: xb, y: y2 });
      await rec.flush();
      const tag = `${M}x${K}x${N}`;
      const got1 = await readF32(g, y1, M * N), got2 = await readF32(g, y2, M * N);
      assertClose(got1, linear(x, roundF16(W), M, K, N), { rel: 1e-5 }, `linear f16 ${tag}`);
      assertClose(got2, matmul(x, roundF16(Mx), M, K, N), { rel: 1e-5 }, `lowrank f16 ${tag}`);
      assert(maxAbsDiff(got1, linear(x, W, M, K, N)) > 1e-6, `${tag}: f16 equals f32?`);
      for (const b of [xb, y1, y2, ...wm.chunks.map((c) => c.buffer)]) b.destroy();
    }
  },
);

Deno.test({ name: "f16 products need prepare(): the error says so", ignore }, async () => {
  const g = gpu!;
  const mm = await MatmulKernel.create(g, { tune: "off" });
  const wm = uploadMatrix(g, "W", new Float32Array(16), 4, 4, undefined, "f16");
  const xb = uploadStorage(g, "x", new Float32Array(4)), y = createStorage(g, "y", 16);
  assertThrowsMatch(
    () => mm.linearMatrix(new Recorder(g, "t"), wm, { rows: 1, x: xb, y }),
    /prepare\("f16"\)/,
  );
});

Deno.test({ name: "f16 model: logits, memory, and dS0 vs rounded reference", ignore }, async () => {
  const g = gpu!;
  const cfg = tinyConfig({ nLayer: 2, nEmbd: 128, headSize: 64, vocabSize: 300 });
  const weights = randomWeights(cfg, 9);
  const w16 = roundedWeights(weights);
  const m32 = await GpuModel.create(g, weights);
  const m16 = await GpuModel.create(g, weights, {
    weightDtype: "f16",
    maxChunkBytes: 100 * 128 * 2,
  });
  assertEquals(m16.weights.head.dtype, "f16");
  assertEquals(m16.weights.head.chunks.length, 3, "head split into f16 chunks of 100 rows");
  assertEquals(m16.weights.emb.dtype, "f32", "the embedding stays f32");
  const C = cfg.nEmbd, V = cfg.vocabSize;
  const bytesOf = (m: { chunks: { buffer: GPUBuffer }[] }) =>
    m.chunks.reduce((n, c) => n + c.buffer.size, 0);
  assertStrictEquals(bytesOf(m16.weights.layers[0].Wr), C * C * 2, "Wr: 2 bytes a value");
  const headBytes = bytesOf(m16.weights.head);
  assert(headBytes >= V * C * 2 && headBytes < V * C * 2 + 48, `head f16 bytes ${headBytes}`);
  assert(m16.weights.bytes < m32.weights.bytes, "f16 weights take less memory");
  const tokens = [3, 299, 17, 42, 0, 150, 7];
  const got = await m16.forward([tokens], m16.createState(1), { logits: "all" });
  const ref = refForward(w16, tokens);
  assertClose(got, ref.logits, { maxAbs: 1e-4 }, "f16 logits vs rounded-weight reference");
  const f32 = await m32.forward([tokens], m32.createState(1), { logits: "all" });
  const d = maxAbsDiff(got, f32);
  assert(d > 1e-6 && d < 0.05, `f16 vs f32 logits differ by the rounding only (${d})`);

  // state tuning over f16 weights: the loss and dL/dS0 match the rounded reference
  const rng = new Rng(4);
  const batch = randomBatch(rng, cfg.vocabSize, [9, 6]);
  const s0 = zeroState(cfg);
  for (const s of s0) for (let i = 0; i < s.wkv.length; i++) s.wkv[i] = rng.uniform(-0.3, 0.3);
  const flat = new Float32Array(cfg.nLayer * s0[0].wkv.length);
  s0.forEach((s, l) => flat.set(s.wkv, l * s.wkv.length));
  const bwd = await GpuBackward.create(m16);
  const res = await bwd.lossAndGrad(sharedS0Args(g, batch, flat));
  const r = refBatchLossAndGrad(w16, batch.seqs, s0);
  assert(Math.abs(res.loss - r.loss) / r.loss < 1e-5, `loss ${res.loss} vs ${r.loss}`);
  const NN = s0[0].wkv.length;
  r.dState.forEach((ds, l) => {
    const e = errRatio(res.dS0Sum.subarray(l * NN, (l + 1) * NN), ds.wkv);
    assert(e <= 1e-4, `layer ${l} dS0 rel err ${e}`);
  });
  await assertRejectsMatch(
    () => GpuBackward.create(m16, { weightGrads: true }),
    /need f32 weights/,
  );
  bwd.destroy();
  m16.destroy();
  m32.destroy();
});
