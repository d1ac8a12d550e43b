/**
 * WKV-7 kernels (forward `wkv7`, backward `wkv7_backward`) vs the float64 reference
 * (lib/ref/wkv.ts) on shapes that exercise the uniform windows: several sequences per window,
 * sequences split over several windows (T > 16384 / C), T = 1, T not a multiple of the
 * checkpoint stride, H > 1, N < 64, a shared S0, accumulation, and decays near their minimum
 * 0.545 (where inverting the state is least accurate).
 */
import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert";
import { createStorage, readF32, uploadStorage } from "../lib/gpu/buffers.ts";
import type { Gpu } from "../lib/gpu/device.ts";
import { Recorder } from "../lib/gpu/recorder.ts";
import { planWkvWindows, Wkv7Kernel } from "../lib/kernels/wkv7.ts";
import { Wkv7BackwardKernel } from "../lib/kernels/wkv7_backward.ts";
import { wkvBackward, wkvForward } from "../lib/ref/wkv.ts";
import type { WkvInputs } from "../lib/ref/wkv.ts";
import { assertClose, gpu, Rng } from "./_helpers.ts";

const FWD_TOL = { rel: 1e-5 };
const BWD_TOL = { rel: 1e-5 };

interface Shape {
  B: number;
  T: number;
  H: number;
  N: number;
  /** decay range (default (0.546, 0.999)) */
  dLo?: number;
  dHi?: number;
}

/** Random inputs (B·T, H·N): unit kk per head, a ∈ (0, 1), plus dy and per-sequence S0. */
function inputs(s: Shape, seed: number) {
  const rng = new Rng(seed);
  const n = s.B * s.T * s.H * s.N;
  const kk = rng.f32(n);
  for (let o = 0; o < n; o += s.N) {
    let q = 0;
    for (let j = 0; j < s.N; j++) q += kk[o + j] ** 2;
    for (let j = 0; j < s.N; j++) kk[o + j] /= Math.sqrt(q);
  }
  return {
    r: rng.f32(n),
    d: rng.f32(n, s.dLo ?? 0.546, s.dHi ?? 0.999),
    k: rng.f32(n),
    v: rng.f32(n),
    kk,
    a: rng.f32(n, 0.01, 0.99),
    dy: rng.f32(n),
    s0: rng.f32(s.B * s.H * s.N * s.N, -0.5, 0.5),
  };
}
type Inputs = ReturnType<typeof inputs>;

/** The reference inputs of sequence b. */
function refInputs(x: Inputs, b: number, rowLen: number): WkvInputs {
  const sl = (a: Float32Array) => a.subarray(b * rowLen, (b + 1) * rowLen);
  const kk = sl(x.kk), a = sl(x.a);
  return {
    r: sl(x.r),
    d: sl(x.d),
    k: sl(x.k),
    v: sl(x.v),
    alpha: kk.map((q) => -q),
    beta: kk.map((q, i) => q * a[i]),
  };
}

async function checkForward(g: Gpu, s: Shape) {
  const { B, T, H, N } = s;
  const x = inputs(s, 11 + B * 7 + T * 3 + H);
  const C = H * N, n = B * T * C, NN = H * N * N;
  const kern = await Wkv7Kernel.create(g, N);
  const up = (l: string, a: Float32Array) => uploadStorage(g, l, a);
  // layer 1 of a two-layer state buffer, so stateOff is exercised
  const initial = new Float32Array(2 * B * NN).fill(7);
  initial.set(x.s0, B * NN);
  const state = up("state", initial);
  const y = createStorage(g, "y", n * 4);
  const rec = new Recorder(g, "wkv_fwd_test");
  const bufs = { r: x.r, d: x.d, k: x.k, v: x.v, kk: x.kk, a: x.a };
  const gb = Object.fromEntries(Object.entries(bufs).map(([k, a]) => [k, up(k, a)]));
  kern.record(
    rec,
    { B, T, H, ...gb, state, stateOff: B * NN, y } as Parameters<Wkv7Kernel["record"]>[1],
  );
  await rec.flush();
  const yG = await readF32(g, y, n), sG = await readF32(g, state, 2 * B * NN);
  for (let b = 0; b < B; b++) {
    const ref = wkvForward(refInputs(x, b, T * C), x.s0.subarray(b * NN, (b + 1) * NN), T, H, N);
    const at = `wkv7 B${B} T${T} H${H} N${N} b${b}`;
    assertClose(yG.subarray(b * T * C, (b + 1) * T * C), ref.y, FWD_TOL, `${at} y`);
    const sB = sG.subarray((B + b) * NN, (B + b + 1) * NN);
    assertClose(sB, ref.state, FWD_TOL, `${at} state`);
  }
  assertClose(sG.subarray(0, B * NN), initial.subarray(0, B * NN), { maxAbs: 0 }, "layer 0 kept");
}

interface BackwardRun {
  x: Inputs;
  /** what accumulate adds to */
  prior: Float32Array;
  s0: Float32Array;
  got: Record<string, Float32Array>;
  gotS0: Float32Array;
}

/** Record the backward (offset S0/dS0 buffers, optional accumulate) and read every output. */
async function runBackward(g: Gpu, s: Shape, shared: boolean, accumulate: boolean) {
  const { B, T, H, N } = s;
  const x = inputs(s, 101 + B * 7 + T * 3 + H + N);
  const C = H * N, n = B * T * C, NN = H * N * N;
  const kern = await Wkv7BackwardKernel.create(g, [N]);
  const up = (l: string, a: Float32Array) => uploadStorage(g, l, a);
  const prior = new Rng(5).f32(n); // what accumulate adds to
  const out = (l: string, init?: Float32Array) => init ? up(l, init) : createStorage(g, l, n * 4);
  const o = {
    dr: out("dr", accumulate ? prior : undefined),
    dk: out("dk", accumulate ? prior : undefined),
    dv: out("dv", accumulate ? prior : undefined),
    dd: out("dd"),
    dkk: out("dkk"),
    da: out("da"),
  };
  const ds0 = createStorage(g, "ds0", (4 + B * NN) * 4);
  const s0 = shared ? x.s0.subarray(0, NN) : x.s0;
  const s0Buf = up("s0", Float32Array.from([0, 0, 0, 0, ...s0]));
  const rec = new Recorder(g, "wkv_bwd_test");
  kern.record(rec, {
    B,
    T,
    H,
    N,
    r: up("r", x.r),
    d: up("d", x.d),
    k: up("k", x.k),
    v: up("v", x.v),
    kk: up("kk", x.kk),
    a: up("a", x.a),
    dy: up("dy", x.dy),
    s0: s0Buf,
    s0Off: 4,
    sharedS0: shared,
    ...o,
    accumulate,
    ds0,
    ds0Off: 4,
    scratch: kern.createScratch(B, T, H, N),
  });
  await rec.flush();
  const got: Record<string, Float32Array> = {};
  for (const [key, buf] of Object.entries(o)) got[key] = await readF32(g, buf, n);
  const gotS0 = (await readF32(g, ds0, 4 + B * NN)).subarray(4);
  return { x, prior, s0, got, gotS0 } satisfies BackwardRun;
}

/** Sequence b of a backward run vs wkvBackward. */
function compareBackward(
  s: Shape,
  b: number,
  r: BackwardRun,
  shared: boolean,
  accumulate: boolean,
) {
  const { B, T, H, N } = s;
  const { x, prior, s0, got, gotS0 } = r;
  const C = H * N, NN = H * N * N;
  const inp = refInputs(x, b, T * C);
  const s0b = shared ? s0 : s0.subarray(b * NN, (b + 1) * NN);
  const ref = wkvBackward(inp, s0b, x.dy.subarray(b * T * C, (b + 1) * T * C), T, H, N);
  const a = x.a.subarray(b * T * C, (b + 1) * T * C);
  const kk = x.kk.subarray(b * T * C, (b + 1) * T * C);
  const p = prior.subarray(b * T * C, (b + 1) * T * C);
  const plus = (r: Float64Array) => accumulate ? r.map((q, i) => q + p[i]) : r;
  const want: Record<string, ArrayLike<number>> = {
    dr: plus(ref.dr),
    dk: plus(ref.dk),
    dv: plus(ref.dv),
    dd: ref.dd,
    dkk: ref.dalpha.map((q, i) => -q + ref.dbeta[i] * a[i]),
    da: ref.dbeta.map((q, i) => q * kk[i]),
  };
  const at = `wkv7_backward B${B} T${T} H${H} N${N} b${b}${shared ? " shared" : ""}`;
  for (const key of Object.keys(want)) {
    assertClose(
      got[key].subarray(b * T * C, (b + 1) * T * C),
      want[key],
      BWD_TOL,
      `${at} ${key}`,
    );
  }
  assertClose(gotS0.subarray(b * NN, (b + 1) * NN), ref.dS0, BWD_TOL, `${at} dS0`);
}

async function checkBackward(g: Gpu, s: Shape, shared: boolean, accumulate: boolean) {
  const r = await runBackward(g, s, shared, accumulate);
  for (let b = 0; b < s.B; b++) compareBackward(s, b, r, shared, accumulate);
}

Deno.test("planWkvWindows: whole sequences per window, or K-aligned token ranges", () => {
  const w1 = planWkvWindows(16, 16, 64);
  assertEquals(w1.map((w) => [w.b0, w.nb, w.t0, w.t1]), [[0, 16, 0, 16]]);
  const w2 = planWkvWindows(2, 300, 64, 4); // 256 rows fit
  assertEquals(w2.map((w) => [w.b0, w.t0, w.t1]), [[0, 0, 256], [0, 256, 300], [
    1,
    0,
    256,
  ], [1, 256, 300]]);
  assertEquals(planWkvWindows(20, 5, 192).map((w) => w.rows), [85, 15]); // 17 + 3 sequences
  assert(planWkvWindows(1, 100, 768, 4).every((w) => w.t0 % 4 === 0 && w.rows <= 21));
  assertThrows(() => planWkvWindows(1, 8, 8192, 4), RangeError);
});

const FWD_SHAPES: Shape[] = [
  { B: 16, T: 16, H: 1, N: 64 },
  { B: 2, T: 19, H: 2, N: 64 },
  { B: 3, T: 1, H: 2, N: 64 },
  { B: 1, T: 300, H: 1, N: 64 }, // two windows
  { B: 2, T: 150, H: 2, N: 64 }, // two windows per sequence
  { B: 2, T: 37, H: 3, N: 16 },
];

Deno.test(
  { name: "wkv7 forward vs wkvForward (windows, T = 1, H > 1, N = 16)", ignore: !gpu },
  async () => {
    for (const s of FWD_SHAPES) await checkForward(gpu!, s);
    await assertRejects(() => Wkv7Kernel.create(gpu!, 128), RangeError);
    await assertRejects(() => Wkv7Kernel.create(gpu!, 30), RangeError);
  },
);

const BWD_CASES: [Shape, boolean, boolean][] = [
  [{ B: 16, T: 16, H: 1, N: 64 }, true, false],
  [{ B: 1, T: 1, H: 2, N: 8 }, false, false],
  [{ B: 2, T: 19, H: 2, N: 8 }, true, true],
  [{ B: 2, T: 37, H: 3, N: 16 }, false, false],
  [{ B: 1, T: 300, H: 1, N: 64 }, false, true], // two windows: coarse checkpoint and G carry
  [{ B: 2, T: 150, H: 2, N: 64 }, true, false],
  [{ B: 2, T: 37, H: 2, N: 16, dLo: 0.546, dHi: 0.56 }, false, false], // fastest decay
];

Deno.test({
  name: "wkv7_backward vs wkvBackward (windows, accumulate, shared S0, d ≈ 0.55)",
  ignore: !gpu,
}, async () => {
  for (const [s, shared, acc] of BWD_CASES) await checkBackward(gpu!, s, shared, acc);
});
