/**
 * The lifted branch (SPEC §6 v2) on the GPU against the CPU reference `lib/ref/lifted.ts`, and
 * the design pins on the GPU path.
 *
 * Branch level (random seeded kk, r, d, a, k, v, Ŝ0, g, R, support vectors; B = 2, H = 2): y,
 * Ŝ_T, dŜ0 and dg (batch sums), dkk, dr, dd, da, dk, dv vs `liftedForward` / `liftedBackward`,
 * errRatio = rms(a − b)/rms(b) ≤ 1e-4, for T = 1, T = 21 (two checkpoint chunks, not a multiple
 * of 16), head-mean and per-channel edits, the Gaussian and identity maps, the normalised
 * (default) and raw reads, memory and writes mode; DBP (kk, r and, in writes mode, k rows) vs
 * `dbpLayerStep`.
 *
 * Model level (N = 64, the only head size of the WKV kernel): Ŝ0 = 0 (memory) and g = 0
 * (writes) leave the logits bit for bit; the identity limit equals plain state tuning with
 * S0 + Ŝ0 (logits and dŜ0 vs dS0, 1e-5). Tuning with the lifted part (DBP, resume) is in
 * tests/lifted_part_test.ts. Files: round trip with modes and gate, and version 1 metadata.
 *
 * @module
 */
import { assert, assertEquals } from "@std/assert";
import { createStorage, readF32, uploadStorage } from "../lib/gpu/buffers.ts";
import { Recorder } from "../lib/gpu/recorder.ts";
import { GpuLifted, GpuLiftedState, loadLifted, saveLifted } from "../lib/model/gpu_lifted.ts";
import { readSafetensors, serializeSafetensors } from "../lib/model/safetensors.ts";
import type { LiftedState } from "../lib/ref/lifted_types.ts";
import { liftedForward } from "../lib/ref/lifted.ts";
import { liftedBackward } from "../lib/ref/lifted_backward.ts";
import type { RwkvConfig } from "../lib/model/types.ts";
import { errRatio, gpu, Rng } from "./_helpers.ts";
import { GpuModel } from "../lib/model/gpu_model.ts";
import { GpuBackward } from "../lib/model/gpu_backward.ts";
import { randomWeights, tinyConfig } from "../lib/model/random.ts";
import { zeroState } from "../lib/model/types.ts";
import { initLiftedLayers } from "../lib/parts/support.ts";
import type { LiftedLayers } from "../lib/ref/lifted_types.ts";
import { DbpConfigSchema, LiftedConfigSchema } from "../lib/parts/config.ts";
import { dbpLayerStep } from "../lib/parts/dbp.ts";

const TOL = 1e-4;
const gauss = { featureMap: "gaussian" as const, headMeans: true };

interface Case {
  T: number;
  N: number;
  M: number;
  featureMap: "gaussian" | "identity";
  headMeans: boolean;
  read?: "normalised" | "raw";
  writes?: boolean;
}

/** Random branch inputs for B sequences: unit kk per head, d in (0.55, 1), a in (0, 1). */
function inputs(rng: Rng, B: number, T: number, H: number, N: number) {
  const n = B * T * H * N;
  const kk = new Float32Array(n), r = rng.f32(n), d = rng.f32(n, 0.55, 0.999);
  const a = rng.f32(n, 0.01, 0.99), k = rng.f32(n, -2, 2), v = rng.f32(n);
  for (let o = 0; o < n; o += N) {
    let s = 0;
    for (let j = 0; j < N; j++) s += (kk[o + j] = rng.normal()) ** 2;
    for (let j = 0; j < N; j++) kk[o + j] /= Math.sqrt(s);
  }
  return { kk, r, d, a, k, v };
}

function randomLifted(rng: Rng, c: Case, H: number): LiftedState {
  const { N, M } = c;
  const R = new Float32Array(H * M * M);
  for (let h = 0; h < H; h++) {
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < M; j++) R[(h * M + i) * M + j] = (i === j ? 1 : 0) + 0.1 * rng.uniform();
    }
  }
  const support = new Float32Array(H * M * N);
  for (let o = 0; o < support.length; o += N) {
    let s = 0;
    for (let j = 0; j < N; j++) s += (support[o + j] = rng.normal()) ** 2;
    for (let j = 0; j < N; j++) support[o + j] /= Math.sqrt(s);
  }
  return {
    M,
    featureMap: c.featureMap,
    headMeans: c.headMeans,
    read: c.read ?? "normalised",
    writes: c.writes ?? false,
    ...(c.writes ? { gate: rng.f32(H, 0.2, 1) } : {}),
    s0: rng.f32(H * N * M, -0.5, 0.5),
    R: c.featureMap === "identity" ? R.map((_, k) => (k % (M + 1) === 0 ? 1 : 0)) : R,
    support: c.featureMap === "gaussian" ? support : undefined,
    gamma: c.featureMap === "gaussian"
      ? Float32Array.from({ length: H }, () => 0.3 + rng.next())
      : undefined,
  };
}

/** Slice sequence b of a (B, T, H, N) array. */
const seq = (x: Float32Array, b: number, T: number, C: number) =>
  x.subarray(b * T * C, (b + 1) * T * C);

async function checkBranch(c: Case, seed: number) {
  const g = gpu!, rng = new Rng(seed);
  const B = 2, H = 2, { T, N } = c, C = H * N, rows = B * T;
  const cfg = { nLayer: 1, nHead: H, headSize: N, nEmbd: C } as RwkvConfig;
  const s = randomLifted(rng, c, H);
  const x = inputs(rng, B, T, H, N);
  const dy = rng.f32(rows * C);
  const set = await GpuLifted.create(g, cfg, [s]);
  const state = new GpuLiftedState(set, B);
  const up = (n: string, a: Float32Array | Uint32Array) => uploadStorage(g, `test.${n}`, a);
  const v = {
    ...{ B, T, kk: up("kk", x.kk), r: up("r", x.r), d: up("d", x.d), a: up("a", x.a) },
    ...{ k: up("k", x.k), v: up("v", x.v) },
  };
  const y = createStorage(g, "test.y", rows * C * 4);
  const names = ["dkk", "dr", "dd", "da", "dk", "dv"] as const;
  const grads = names.map((n) => createStorage(g, `test.${n}`, rows * C * 4));
  const dLifted = createStorage(g, "test.dLifted", set.size * 4);
  const dLiftedGate = createStorage(g, "test.dLiftedGate", set.gateSize * 4);
  const rec = new Recorder(g, "test.lifted");
  set.recordForward(rec, 0, { ...v, y, state });
  set.recordBackward(rec, 0, {
    ...v,
    dy: up("dy", dy),
    dkk: grads[0],
    dr: grads[1],
    dd: grads[2],
    da: grads[3],
    dk: grads[4],
    dv: grads[5],
    dLifted,
    dLiftedGate,
  });
  const t0 = performance.now();
  rec.submit();
  const gotY = await readF32(g, y, rows * C);
  const ms = performance.now() - t0;
  const gotS = await state.read(1);
  const gotG = await Promise.all(grads.map((b) => readF32(g, b, rows * C)));
  const gotD = await readF32(g, dLifted, set.size);
  const gotDg = await readF32(g, dLiftedGate, set.gateSize);
  const refG = Object.fromEntries(names.map((k) => [k, [] as number[]]));
  const refY: number[] = [], dS0 = new Float64Array(set.size), dg = new Float64Array(H);
  let refS: Float64Array | undefined;
  for (let b = 0; b < B; b++) {
    const inp = {
      kk: seq(x.kk, b, T, C),
      r: seq(x.r, b, T, C),
      d: seq(x.d, b, T, C),
      a: seq(x.a, b, T, C),
      k: seq(x.k, b, T, C),
      v: seq(x.v, b, T, C),
    };
    const f = liftedForward(inp, s, T, H, N);
    refY.push(...f.y);
    refS = f.state;
    const bw = liftedBackward(f.cache, seq(dy, b, T, C), T, H, N);
    for (const k of names) refG[k].push(...bw[k]);
    bw.dS0.forEach((vv, i) => (dS0[i] += vv));
    bw.dGate.forEach((vv, i) => (dg[i] += vv));
  }
  const errs: Record<string, number> = {
    y: errRatio(gotY, refY),
    state: errRatio(gotS[0]!, refS!),
    dS0: errRatio(gotD, dS0),
  };
  if (c.writes) errs.dg = errRatio(gotDg, dg);
  else assertEquals(Array.from(gotDg), new Array(H).fill(0), "memory mode: dL/dg = 0");
  names.forEach((k, i) => {
    if (c.writes || (k !== "dk" && k !== "dv")) errs[k] = errRatio(gotG[i], refG[k]);
    else assert(gotG[i].every((z) => z === 0), `memory mode: ${k} untouched`);
  });
  const label = `${c.featureMap} ${c.headMeans ? "head means" : "per channel"} ` +
    `${c.read ?? "normalised"} read${c.writes ? " writes" : ""} T=${T} N=${N} M=${c.M}`;
  console.log(
    `${label}: ` + Object.entries(errs).map(([k, e]) => `${k} ${e.toExponential(1)}`).join(", ") +
      ` (${ms.toFixed(0)} ms fwd+bwd)`,
  );
  for (const [k, e] of Object.entries(errs)) assert(e <= TOL, `${label}: ${k} errRatio ${e}`);
  // DBP over every kk and r vector of the batch vs dbpLayerStep
  const stride = c.writes ? 3 : 2;
  const idx = Uint32Array.from({ length: stride * rows }, (_, k) => k);
  const dbpCfg = DbpConfigSchema.parse({ lr: 0.05, kappa: 0.3 });
  const rec2 = new Recorder(g, "test.dbp");
  set.recordCovariance(rec2, 0, { idx: up("idx", idx), n: idx.length, stride, accumulate: false });
  set.recordDbp(rec2, { count: idx.length, lr: dbpCfg.lr, kappa: dbpCfg.kappa, enabled: true });
  rec2.submit();
  const losses = await set.readDbpLosses();
  const gotR = (await set.read())[0]!.R;
  const vectors = [0, 1].map((b) => ({
    ...{ kk: seq(x.kk, b, T, C), r: seq(x.r, b, T, C), k: seq(x.k, b, T, C) },
  }));
  const ref = dbpLayerStep(s, H, N, vectors, dbpCfg);
  const dbpErr = {
    R: errRatio(gotR, ref.R),
    decorrelation: Math.abs(losses.decorrelationLoss - ref.meanLoss) / ref.meanLoss,
    correlation: Math.abs(losses.correlationLoss - ref.meanCorrLoss) / ref.meanCorrLoss,
  };
  console.log(
    `${label} DBP: ` +
      Object.entries(dbpErr).map(([k, e]) => `${k} ${e.toExponential(1)}`).join(", "),
  );
  for (const [k, e] of Object.entries(dbpErr)) assert(e <= TOL, `${label}: DBP ${k} err ${e}`);
  for (
    const b of [
      y,
      dLifted,
      dLiftedGate,
      ...grads,
      ...Object.values(v).filter((z) => z instanceof GPUBuffer),
    ]
  ) {
    (b as GPUBuffer).destroy();
  }
  state.destroy();
  set.destroy();
}

Deno.test({
  name: "lifted GPU branch vs reference: Gaussian, head means, T = 21 and T = 1, raw read",
  ignore: !gpu,
  fn: async () => {
    const gh = { featureMap: "gaussian" as const, headMeans: true };
    await checkBranch({ T: 21, N: 8, M: 12, ...gh }, 1);
    await checkBranch({ T: 1, N: 8, M: 12, ...gh }, 2);
    await checkBranch({ T: 21, N: 8, M: 12, ...gh, read: "raw" }, 6);
  },
});

Deno.test({
  name: "lifted GPU branch vs reference: writes mode (Ŝ0, g, k, v), Gaussian and identity",
  ignore: !gpu,
  fn: async () => {
    await checkBranch(
      { T: 21, N: 8, M: 12, featureMap: "gaussian", headMeans: true, writes: true },
      7,
    );
    await checkBranch(
      { T: 18, N: 8, M: 8, featureMap: "identity", headMeans: false, writes: true },
      8,
    );
    await checkBranch({
      T: 5,
      N: 8,
      M: 16,
      featureMap: "gaussian",
      headMeans: true,
      writes: true,
      read: "raw",
    }, 9);
  },
});

Deno.test({
  name: "lifted GPU branch vs reference: identity and per-channel edits",
  ignore: !gpu,
  fn: async () => {
    await checkBranch({ T: 19, N: 8, M: 12, featureMap: "gaussian", headMeans: true }, 3);
    await checkBranch({ T: 18, N: 8, M: 8, featureMap: "identity", headMeans: false }, 4);
    await checkBranch({ T: 5, N: 8, M: 8, featureMap: "gaussian", headMeans: false }, 5);
  },
});

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

Deno.test("lifted.safetensors: saveLifted / loadLifted round trip (modes, gate)", async () => {
  const rng = new Rng(24);
  const a = randomLifted(rng, { T: 1, N: 8, M: 12, featureMap: "gaussian", headMeans: true }, 2);
  const b = randomLifted(rng, { T: 1, N: 8, M: 8, featureMap: "identity", headMeans: false }, 2);
  const w = randomLifted(rng, { T: 1, N: 8, M: 8, ...gauss, writes: true, read: "raw" }, 2);
  const path = await Deno.makeTempFile({ suffix: ".safetensors" });
  await saveLifted(path, [a, undefined, b, w], 2);
  const got = await loadLifted(path);
  const file = await readSafetensors(path);
  await Deno.remove(path);
  assertEquals(got.length, 4);
  assertEquals(got[1], undefined);
  for (const k of ["s0", "R", "support", "gamma"] as const) {
    assertEquals(Array.from(got[0]![k]!), Array.from(a[k]!));
  }
  assertEquals([got[0]!.M, got[0]!.featureMap, got[0]!.headMeans], [12, "gaussian", true]);
  assertEquals([got[0]!.read, got[0]!.writes, got[0]!.gate], ["normalised", false, undefined]);
  assertEquals([got[2]!.featureMap, got[2]!.headMeans], ["identity", false]);
  assertEquals(Array.from(got[2]!.s0), Array.from(b.s0));
  assertEquals([got[3]!.read, got[3]!.writes], ["raw", true]);
  assertEquals(Array.from(got[3]!.gate!), Array.from(w.gate!));
  assertEquals(file.tensors.get("blocks.3.att.lifted_gate")!.shape, [2]);
  assert(!file.tensors.has("blocks.0.att.lifted_gate"), "memory mode stores no gate");
});

Deno.test("lifted.safetensors: version 1 metadata loads (raw read unless normalisedRead)", async () => {
  const rng = new Rng(25);
  const s = randomLifted(rng, { T: 1, N: 8, M: 8, featureMap: "gaussian", headMeans: true }, 2);
  const t = {
    "blocks.0.att.lifted_state": { shape: [2, 8, 8], data: Float32Array.from(s.s0) },
    "blocks.0.att.lifted_R": { shape: [2, 8, 8], data: Float32Array.from(s.R) },
    "blocks.0.att.lifted_support": { shape: [2, 8, 8], data: Float32Array.from(s.support!) },
    "blocks.0.att.lifted_gamma": { shape: [2], data: Float32Array.from(s.gamma!) },
  };
  const v1 = (extra: Record<string, unknown>) =>
    JSON.stringify({
      nLayer: 1,
      layers: { 0: { M: 8, featureMap: "gaussian", headMeans: true, ...extra } },
    });
  const path = await Deno.makeTempFile({ suffix: ".safetensors" });
  for (
    const [extra, want] of [
      [{ normalisedRead: false }, "raw"],
      [{}, "raw"],
      [{ normalisedRead: true }, "normalised"],
    ] as const
  ) {
    await Deno.writeFile(path, serializeSafetensors(t, "f32", { lifted: v1(extra) }));
    const got = (await loadLifted(path))[0]!;
    assertEquals([got.read, got.writes, got.gate], [want, false, undefined], JSON.stringify(extra));
  }
  await Deno.remove(path);
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
