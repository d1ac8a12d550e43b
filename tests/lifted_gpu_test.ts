/**
 * The lifted branch (docs/MATH.md §5) on the GPU against the CPU reference `lib/ref/lifted.ts`, and
 * the design pins on the GPU path.
 *
 * Branch level (random seeded kk, r, d, a, k, v, Ŝ0, g, R, support vectors; B = 2, H = 2): y,
 * Ŝ_T, dŜ0 and dg (batch sums), dkk, dr, dd, da, dk, dv vs `liftedForward` / `liftedBackward`,
 * errRatio = rms(a − b)/rms(b) ≤ 1e-4, for T = 1, T = 21 (two checkpoint chunks, not a multiple
 * of 16), head-mean and per-channel edits, the Gaussian and identity maps, the normalised
 * (default) and raw reads, memory and writes mode; DBP (kk, r and, in writes mode, k rows) vs
 * `dbpLayerStep`.
 *
 * Model level (Ŝ0 = 0 and g = 0 leave the logits, the identity limit): lifted_gpu_logits_test.ts.
 * Tuning with the lifted part (DBP, resume) is in tests/lifted_part_test.ts. Files: round trip
 * with modes and gate, and version 1 metadata.
 *
 * @module
 */
import { assert, assertEquals } from "@std/assert";
import { createStorage, readF32, uploadStorage } from "../lib/gpu/buffers.ts";
import { Recorder } from "../lib/gpu/recorder.ts";
import { GpuLifted, GpuLiftedState, loadLifted, saveLifted } from "../lib/model/gpu_lifted.ts";
import { readSafetensors, serializeSafetensors } from "../lib/model/safetensors.ts";
import { liftedForward } from "../lib/ref/lifted.ts";
import { liftedBackward } from "../lib/ref/lifted_backward.ts";
import type { RwkvConfig } from "../lib/model/types.ts";
import { errRatio, gpu, Rng } from "./_helpers.ts";
import { type Case, gauss, randomLifted } from "./_lifted_helpers.ts";
import { DbpConfigSchema } from "../lib/parts/config.ts";
import { dbpLayerStep } from "../lib/parts/dbp.ts";

const TOL = 1e-4;

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

/** Slice sequence b of a (B, T, H, N) array. */
const seq = (x: Float32Array, b: number, T: number, C: number) =>
  x.subarray(b * T * C, (b + 1) * T * C);

const NAMES = ["dkk", "dr", "dd", "da", "dk", "dv"] as const;

/** One branch case: its shape, the random lifted part, inputs and dy (drawn in that order). */
function branchCase(c: Case, seed: number) {
  const rng = new Rng(seed);
  const B = 2, H = 2, { T, N } = c, C = H * N, rows = B * T;
  const s = randomLifted(rng, c, H);
  const x = inputs(rng, B, T, H, N);
  const dy = rng.f32(rows * C);
  return { c, B, H, T, N, C, rows, s, x, dy };
}
type BranchCase = ReturnType<typeof branchCase>;

/** Record the branch forward and backward on the GPU and read y, Ŝ_T and every gradient. */
async function runBranch(set: GpuLifted, state: GpuLiftedState, bc: BranchCase) {
  const g = gpu!, { B, T, C, rows, x, dy } = bc;
  const up = (n: string, a: Float32Array | Uint32Array) => uploadStorage(g, `test.${n}`, a);
  const v = {
    ...{ B, T, kk: up("kk", x.kk), r: up("r", x.r), d: up("d", x.d), a: up("a", x.a) },
    ...{ k: up("k", x.k), v: up("v", x.v) },
  };
  const y = createStorage(g, "test.y", rows * C * 4);
  const grads = NAMES.map((n) => createStorage(g, `test.${n}`, rows * C * 4));
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
  const buffers = [
    y,
    dLifted,
    dLiftedGate,
    ...grads,
    ...Object.values(v).filter((z) => z instanceof GPUBuffer),
  ] as GPUBuffer[];
  return { gotY, gotS, gotG, gotD, gotDg, ms, buffers };
}

/** The CPU reference over the batch: y, final state, gradients and the batch sums dŜ0, dg. */
function refBranch({ B, H, T, N, C, s, x, dy }: BranchCase, size: number) {
  const refG = Object.fromEntries(NAMES.map((k) => [k, [] as number[]]));
  const refY: number[] = [], dS0 = new Float64Array(size), dg = new Float64Array(H);
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
    for (const k of NAMES) refG[k].push(...bw[k]);
    bw.dS0.forEach((vv, i) => (dS0[i] += vv));
    bw.dGate.forEach((vv, i) => (dg[i] += vv));
  }
  return { refG, refY, refS, dS0, dg };
}

/** GPU branch outputs vs the reference (errRatio ≤ TOL); memory mode leaves dg, dk, dv at zero. */
function compareBranch(
  bc: BranchCase,
  got: Awaited<ReturnType<typeof runBranch>>,
  ref: ReturnType<typeof refBranch>,
  label: string,
) {
  const { c, H } = bc;
  const errs: Record<string, number> = {
    y: errRatio(got.gotY, ref.refY),
    state: errRatio(got.gotS[0]!, ref.refS!),
    dS0: errRatio(got.gotD, ref.dS0),
  };
  if (c.writes) errs.dg = errRatio(got.gotDg, ref.dg);
  else assertEquals(Array.from(got.gotDg), new Array(H).fill(0), "memory mode: dL/dg = 0");
  NAMES.forEach((k, i) => {
    if (c.writes || (k !== "dk" && k !== "dv")) errs[k] = errRatio(got.gotG[i], ref.refG[k]);
    else assert(got.gotG[i].every((z) => z === 0), `memory mode: ${k} untouched`);
  });
  console.log(
    `${label}: ` + Object.entries(errs).map(([k, e]) => `${k} ${e.toExponential(1)}`).join(", ") +
      ` (${got.ms.toFixed(0)} ms fwd+bwd)`,
  );
  for (const [k, e] of Object.entries(errs)) assert(e <= TOL, `${label}: ${k} errRatio ${e}`);
}

/** DBP over every kk and r (and, in writes mode, k) vector of the batch vs dbpLayerStep. */
async function checkDbp(set: GpuLifted, bc: BranchCase, label: string) {
  const g = gpu!, { c, H, T, N, C, rows, s, x } = bc;
  const up = (n: string, a: Float32Array | Uint32Array) => uploadStorage(g, `test.${n}`, a);
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
}

async function checkBranch(c: Case, seed: number) {
  const g = gpu!, bc = branchCase(c, seed);
  const { B, H, T, N, C } = bc;
  const cfg = { nLayer: 1, nHead: H, headSize: N, nEmbd: C } as RwkvConfig;
  const set = await GpuLifted.create(g, cfg, [bc.s]);
  const state = new GpuLiftedState(set, B);
  const got = await runBranch(set, state, bc);
  const ref = refBranch(bc, set.size);
  const label = `${c.featureMap} ${c.headMeans ? "head means" : "per channel"} ` +
    `${c.read ?? "normalised"} read${c.writes ? " writes" : ""} T=${T} N=${N} M=${c.M}`;
  compareBranch(bc, got, ref, label);
  await checkDbp(set, bc, label);
  for (const b of got.buffers) b.destroy();
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
