/**
 * Each forward kernel on the GPU vs the CPU reference (`lib/ref/`), on small seeded shapes that
 * are not multiples of the tiles: H > 1, T = 19 and T = 1, B = 2. Tolerance: errRatio ≤ 1e-5
 * (f32 on the GPU vs float64 in the reference).
 */
import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert";
import type { Gpu } from "../lib/gpu/device.ts";
import { createStorage, readF32, uploadStorage } from "../lib/gpu/buffers.ts";
import { Recorder } from "../lib/gpu/recorder.ts";
import { Kernels } from "../lib/kernels/kernels.ts";
import { Wkv7Kernel } from "../lib/kernels/wkv7.ts";
import { createLayerWorkspace, type LayerWorkspace, recordLayer } from "../lib/model/gpu_layer.ts";
import { GpuState } from "../lib/model/gpu_state.ts";
import { layerVec, uploadMatrix, uploadWeights } from "../lib/model/gpu_weights.ts";
import { randomWeights, tinyConfig } from "../lib/model/random.ts";
import { zeroState } from "../lib/model/types.ts";
import { channelMixForward } from "../lib/ref/channel_mix.ts";
import { linear, matmul } from "../lib/ref/linear.ts";
import { embedLayerNorm } from "../lib/ref/embed_layernorm.ts";
import { keyNorm } from "../lib/ref/key_norm.ts";
import { timeMixForward } from "../lib/ref/time_mix.ts";
import { wkvForward } from "../lib/ref/wkv.ts";
import { assertClose, gpu, Rng } from "./_helpers.ts";

const REL = 1e-5;
const ignore = !gpu;

async function read(g: Gpu, buf: GPUBuffer, n: number, off = 0): Promise<Float32Array> {
  return await readF32(g, buf, n, off);
}

Deno.test({ name: "matmul: linear and lowrank, odd shapes, modes, chunks", ignore }, async () => {
  const g = gpu!;
  const k = await Kernels.create(g, 64);
  const rng = new Rng(1);
  for (const [M, K, N] of [[5, 19, 7], [1, 64, 33], [19, 13, 10], [2, 3, 1], [4, 8, 4]]) {
    const x = rng.f32(M * K), W = rng.f32(N * K), Mx = rng.f32(K * N), res = rng.f32(M * N);
    const xb = uploadStorage(g, "x", x);
    const rb = uploadStorage(g, "res", res);
    const rec = new Recorder(g, "t");
    const y1 = createStorage(g, "y1", M * N * 4), y2 = createStorage(g, "y2", M * N * 4);
    const y3 = createStorage(g, "y3", M * N * 4);
    k.matmul.linear(rec, { rows: M, K, Nc: N, x: xb, w: uploadStorage(g, "W", W), y: y1 });
    k.matmul.lowrank(rec, {
      rows: M,
      K,
      Nc: N,
      x: xb,
      w: uploadStorage(g, "M", Mx),
      y: y2,
      act: "tanh",
    });
    // Chunked lowrank (split along K, accumulating) with residual and sigmoid
    const chunked = uploadMatrix(g, "Mc", Mx, K, N, Math.max(N * 4, Math.floor(K / 3) * N * 4));
    k.matmul.lowrankMatrix(rec, chunked, { rows: M, x: xb, y: y3, res: rb, act: "sigmoid" });
    await rec.flush();
    const ref1 = linear(x, W, M, K, N);
    const ref2 = matmul(x, Mx, M, K, N).map(Math.tanh);
    const ref3 = matmul(x, Mx, M, K, N).map((s, i) => 1 / (1 + Math.exp(-(s + res[i]))));
    assertClose(await read(g, y1, M * N), ref1, { rel: REL }, `linear ${M}x${K}x${N}`);
    assertClose(await read(g, y2, M * N), ref2, { rel: REL }, `lowrank ${M}x${K}x${N}`);
    assertClose(await read(g, y3, M * N), ref3, { rel: REL }, `chunked lowrank ${M}x${K}x${N}`);
  }
  // Chunked linear (split along output rows) writing into a strided, offset output with residual
  const [M, K, N] = [3, 17, 23];
  const x = rng.f32(M * K), W = rng.f32(N * K), res = rng.f32(M * N);
  const Wc = uploadMatrix(g, "Wc", W, N, K, 5 * K * 4);
  assert(Wc.chunks.length === 5);
  const y = createStorage(g, "y", (M * N + 2) * 4);
  const rec = new Recorder(g, "t");
  const [xb, rb] = [uploadStorage(g, "x", x), uploadStorage(g, "res", res)];
  k.matmul.linearMatrix(rec, Wc, { rows: M, x: xb, res: rb, y, yOff: 2 });
  await rec.flush();
  const ref = linear(x, W, M, K, N).map((s, i) => s + res[i]);
  assertClose(await read(g, y, M * N, 2), ref, { rel: REL }, "chunked linear");
  assertThrows(
    () => k.matmul.linear(rec, { rows: 4, K, Nc: N, x: xb, w: Wc.chunks[0].buffer, y }),
    RangeError,
  );
});

Deno.test({ name: "embed_layernorm with a chunked embedding", ignore }, async () => {
  const g = gpu!;
  const k = await Kernels.create(g, 64);
  const rng = new Rng(2);
  const [V, C] = [10, 64];
  const emb = rng.f32(V * C);
  const vecs = rng.f32(2 * C, 0.5, 1.5);
  const tokens = [9, 0, 3, 3, 7, 2, 5];
  const out = createStorage(g, "out", tokens.length * C * 4);
  const rec = new Recorder(g, "t");
  const chunked = uploadMatrix(g, "emb", emb, V, C, 3 * C * 4);
  assert(chunked.chunks.length === 4);
  k.embed.record(rec, {
    rows: tokens.length,
    tokens: uploadStorage(g, "tok", Uint32Array.from(tokens)),
    emb: chunked,
    vecs: uploadStorage(g, "vecs", vecs),
    wOff: 0,
    bOff: C,
    out,
  });
  await rec.flush();
  const ref = embedLayerNorm(emb, tokens, vecs.subarray(0, C), vecs.subarray(C), V, C).x;
  assertClose(await read(g, out, tokens.length * C), ref, { rel: REL }, "embed");
});

Deno.test({ name: "key_norm vs keyNorm (H 3, N 16, rows 7, one tiny head)", ignore }, async () => {
  const g = gpu!;
  const k = await Kernels.create(g, 64);
  const rng = new Rng(5);
  const [rows, H, N] = [7, 3, 16];
  const C = H * N;
  const k0 = rng.f32(rows * C), a = rng.f32(rows * C, 0, 1);
  for (let j = 0; j < N; j++) k0[2 * C + N + j] = 1e-14; // below the 1e-12 floor
  const vecs = rng.f32(3 * C, 0.5, 1.5); // k_k at C, k_a at 2C
  const kk = createStorage(g, "kk", rows * C * 4), kOut = createStorage(g, "k", rows * C * 4);
  const rec = new Recorder(g, "t");
  k.keyNorm.record(rec, {
    rows,
    H,
    N,
    vecs: uploadStorage(g, "vecs", vecs),
    kkOff: C,
    kaOff: 2 * C,
    k0: uploadStorage(g, "k0", k0),
    a: uploadStorage(g, "a", a),
    kk,
    k: kOut,
  });
  await rec.flush();
  const ref = keyNorm(k0, a, vecs.subarray(C, 2 * C), vecs.subarray(2 * C), rows, H, N);
  assertClose(await read(g, kk, rows * C), ref.kk, { rel: REL }, "kk");
  assertClose(await read(g, kOut, rows * C), ref.k, { rel: REL }, "k");
});

Deno.test({ name: "wkv7: B 2, H 2, T 19 and T 1, non-zero state", ignore }, async () => {
  const g = gpu!;
  const k = await Kernels.create(g, 64);
  const rng = new Rng(3);
  for (const T of [19, 1]) {
    const [B, H, N] = [2, 2, 64], C = H * N, n = B * T * C;
    const r = rng.f32(n), kk0 = rng.f32(n), kv = rng.f32(n), v = rng.f32(n);
    const d = rng.f32(n, 0.55, 1), a = rng.f32(n, 0, 1);
    const kk = new Float32Array(n);
    for (let i = 0; i < n; i += 64) { // normalise per head like the model does
      let s = 0;
      for (let j = 0; j < 64; j++) s += kk0[i + j] ** 2;
      for (let j = 0; j < 64; j++) kk[i + j] = kk0[i + j] / Math.sqrt(s);
    }
    const layers = 2, S = H * N * N;
    const s0 = rng.f32(layers * B * S, -0.5, 0.5);
    const state = uploadStorage(g, "state", s0);
    const y = createStorage(g, "y", n * 4);
    const up = (name: string, d: Float32Array) => uploadStorage(g, name, d);
    const rec = new Recorder(g, "t");
    k.wkv.record(rec, {
      B,
      T,
      H,
      r: up("r", r),
      d: up("d", d),
      k: up("k", kv),
      v: up("v", v),
      kk: up("kk", kk),
      a: up("a", a),
      state,
      stateOff: B * S, // layer 1
      y,
    });
    await rec.flush();
    const yGpu = await read(g, y, n), sGpu = await read(g, state, layers * B * S);
    for (let b = 0; b < B; b++) {
      const sl = (x: Float32Array) => x.subarray(b * T * C, (b + 1) * T * C);
      const alpha = sl(kk).map((x) => -x), beta = sl(kk).map((x, i) => x * sl(a)[i]);
      const inp = { r: sl(r), d: sl(d), k: sl(kv), v: sl(v), alpha, beta };
      const ref = wkvForward(inp, s0.subarray((B + b) * S, (B + b + 1) * S), T, H, N);
      assertClose(sl(yGpu), ref.y, { rel: REL }, `wkv y T=${T} b=${b}`);
      assertClose(sGpu.subarray((B + b) * S, (B + b + 1) * S), ref.state, { rel: REL }, "state");
    }
    assertClose(sGpu.subarray(0, B * S), s0.subarray(0, B * S), { maxAbs: 0 }, "layer 0 untouched");
  }
  await assertRejects(() => Wkv7Kernel.create(g, 128), RangeError);
});

/** Random per-sequence states for B sequences. */
function randomStates(cfg: ReturnType<typeof tinyConfig>, B: number, rng: Rng) {
  return Array.from({ length: B }, () =>
    zeroState(cfg).map((s) => ({
      att: rng.f32(s.att.length),
      wkv: rng.f32(s.wkv.length, -0.3, 0.3),
      ffn: rng.f32(s.ffn.length),
    })));
}

const CACHE_FIELDS = [
  "u",
  "r",
  "k0",
  "k",
  "v0",
  "v",
  "wHidden",
  "z",
  "d",
  "aHidden",
  "a",
  "gHidden",
  "g",
  "kk",
  "y",
  "o",
] as const;

/** Record layer l on the GPU over random input and states; read every intermediate back. */
async function runLayer(g: Gpu, l: number, B: number, T: number) {
  const cfg = tinyConfig({ nEmbd: 192, headSize: 64, nLayer: 2, vocabSize: 50 });
  const { nEmbd: C, headSize: N, dimFfn: F } = cfg;
  const weights = randomWeights(cfg, 7 + l);
  const gw = uploadWeights(g, weights);
  const kernels = await Kernels.create(g, N);
  const rng = new Rng(11 * T + l);
  const M = B * T;
  const x = rng.f32(M * C), vFirst = rng.f32(M * C);
  const states = randomStates(cfg, B, rng);
  const state = new GpuState(g, cfg, B);
  state.upload(states);
  const ws: LayerWorkspace = createLayerWorkspace(g, cfg, M + 3);
  const io = {
    B,
    T,
    xIn: uploadStorage(g, "xIn", x),
    xOut: createStorage(g, "xOut", M * C * 4),
    vFirst: uploadStorage(g, "vFirst", vFirst),
    state,
  };
  const rec = new Recorder(g, "layer");
  recordLayer({ kernels, weights: gw }, rec, l, io, ws);
  await rec.flush();
  const got: Record<string, Float32Array> = {};
  const width: Record<string, number> = { wHidden: cfg.dimW, aHidden: cfg.dimA, gHidden: cfg.dimG };
  for (const f of [...CACHE_FIELDS, "vGate", "vHidden", "xMid", "ffnPre", "ffnAct"]) {
    const w = f === "vHidden"
      ? cfg.dimV
      : f.startsWith("ffnP") || f === "ffnAct"
      ? F
      : width[f] ?? C;
    got[f] = await read(g, (ws as unknown as Record<string, GPUBuffer>)[f], M * w);
  }
  got.vFirst = await read(g, io.vFirst, M * C);
  got.xOut = await read(g, io.xOut, M * C);
  const newStates = await state.read();
  return { cfg, weights, x, vFirst, states, got, newStates };
}

/** Sequence b of a layer run vs timeMixForward + channelMixForward. */
function compareLayer(
  r: Awaited<ReturnType<typeof runLayer>>,
  l: number,
  B: number,
  T: number,
  b: number,
) {
  const { cfg, weights, x, vFirst, states, got, newStates } = r;
  const { nEmbd: C, nHead: H, headSize: N, dimFfn: F } = cfg;
  const dims = { T, H, N, dimW: cfg.dimW, dimA: cfg.dimA, dimV: cfg.dimV, dimG: cfg.dimG };
  const rows = (a: Float32Array, w = C) => a.subarray(b * T * w, (b + 1) * T * w);
  const w = weights.blocks[l];
  const vf = l === 0 ? undefined : Float64Array.from(rows(vFirst));
  const st = states[b][l];
  const att = timeMixForward(w, rows(x), st.att, st.wkv, vf, dims);
  const at = `layer ${l} B ${B} T ${T} b ${b}`;
  for (const f of CACHE_FIELDS) {
    const wd = f === "wHidden"
      ? cfg.dimW
      : f === "aHidden"
      ? cfg.dimA
      : f === "gHidden"
      ? cfg.dimG
      : C;
    assertClose(rows(got[f], wd), att.cache[f], { rel: REL }, `${at}: ${f}`);
  }
  if (l > 0) {
    assertClose(rows(got.vGate), att.cache.vGate!, { rel: REL }, `${at}: vGate`);
    assertClose(rows(got.vHidden, cfg.dimV), att.cache.vHidden!, { rel: REL }, `${at}: vHidden`);
  } else {
    assertClose(rows(got.vFirst), att.vFirst, { rel: REL }, `${at}: vFirst`);
  }
  const xMid = att.out.map((o, i) => o + rows(x)[i]);
  assertClose(rows(got.xMid), xMid, { rel: REL }, `${at}: xMid`);
  const ffn = channelMixForward(w, xMid, st.ffn, T, C, F);
  assertClose(rows(got.ffnPre, F), ffn.cache.pre, { rel: REL }, `${at}: ffn pre`);
  assertClose(rows(got.ffnAct, F), ffn.cache.act, { rel: REL }, `${at}: ffn act`);
  assertClose(rows(got.xOut), xMid.map((m, i) => m + ffn.out[i]), { rel: REL }, `${at}: xOut`);
  const ns = newStates[b][l];
  assertClose(ns.att, att.shift, { rel: REL }, `${at}: att shift`);
  assertClose(ns.wkv, att.state, { rel: REL }, `${at}: wkv state`);
  assertClose(ns.ffn, ffn.shift, { rel: REL }, `${at}: ffn shift`);
  const other = newStates[b][1 - l];
  assertClose(other.wkv, states[b][1 - l].wkv, { maxAbs: 0 }, `${at}: other layer untouched`);
}

async function checkLayer(g: Gpu, l: number, B: number, T: number): Promise<void> {
  const r = await runLayer(g, l, B, T);
  for (let b = 0; b < B; b++) compareLayer(r, l, B, T, b);
  assertEquals(layerVec("ln1_w", r.cfg.nEmbd), 0);
}

for (const [B, T] of [[2, 19], [1, 1], [2, 1]]) {
  for (const l of [0, 1]) {
    Deno.test(
      { name: `layer ${l} intermediates vs reference (H 3, B ${B}, T ${T})`, ignore },
      () => checkLayer(gpu!, l, B, T),
    );
  }
}
