/**
 * The chunked WKV-7 (lib/ref/wkv7_chunked*.ts, shaders/wkv7_chunked*.wgsl) against the sequential
 * form: (a) chunked reference == sequential reference in float64 (forward y and final state;
 * backward every gradient and dS0), (b) finite differences of the chunked reference backward,
 * (c) GPU chunked vs GPU sequential and vs the reference, forward and backward, for T not a
 * multiple of 16, B = 2, H = 2, N = 64 and N = 8, with realistic decays d = exp(−e^{−½}σ(z)).
 */
import { assert, assertEquals, assertThrows, assertThrowsMatch } from "@std/assert";
import { createStorage, readF32, uploadStorage } from "../lib/gpu/buffers.ts";
import type { Gpu } from "../lib/gpu/device.ts";
import { Recorder } from "../lib/gpu/recorder.ts";
import { Wkv7Kernel } from "../lib/kernels/wkv7.ts";
import { Wkv7BackwardKernel } from "../lib/kernels/wkv7_backward.ts";
import {
  chooseWkvForm,
  recordWkvBackward,
  recordWkvForward,
  resolveWkvForm,
} from "../lib/kernels/wkv_form.ts";
import { Wkv7ChunkedKernel } from "../lib/kernels/wkv7_chunked.ts";
import { Wkv7ChunkedBackwardKernel } from "../lib/kernels/wkv7_chunked_backward.ts";
import { wkvBackward, wkvForward } from "../lib/ref/wkv.ts";
import type { WkvGrads, WkvInputs } from "../lib/ref/wkv.ts";
import { wkvChunkedForward } from "../lib/ref/wkv7_chunked.ts";
import { wkvChunkedBackward } from "../lib/ref/wkv7_chunked_backward.ts";
import { dot, GradChecker, maxAbs } from "./_fd.ts";
import { gpu, maxAbsDiff, Rng } from "./_helpers.ts";

/** Random float64 WKV inputs of one sequence: unit kk per head, a ∈ (0, 1), real-model decays. */
function refCase(rng: Rng, T: number, H: number, N: number, zLo = -6) {
  const n = T * H * N;
  const u = (lo = -1, hi = 1) => Float64Array.from({ length: n }, () => rng.uniform(lo, hi));
  const kk = u();
  for (let o = 0; o < n; o += N) {
    const q = Math.sqrt(dot(kk.subarray(o, o + N), kk.subarray(o, o + N)));
    for (let j = 0; j < N; j++) kk[o + j] /= q;
  }
  const a = u(0.01, 0.99);
  const inp: WkvInputs = {
    r: u(),
    d: u(zLo, 6).map((z) => Math.exp(-Math.exp(-0.5) / (1 + Math.exp(-z)))),
    k: u(),
    v: u(),
    alpha: kk.map((x) => -x),
    beta: kk.map((x, i) => x * a[i]),
  };
  const NN = H * N * N;
  const s0 = Float64Array.from({ length: NN }, () => rng.uniform(-0.5, 0.5));
  return { inp, a, s0, dy: u(), dSF: Float64Array.from({ length: NN }, () => rng.uniform(-1, 1)) };
}

/** max |a − b| / max(1, max |b|). */
function relMax(a: ArrayLike<number>, b: ArrayLike<number>): number {
  return maxAbsDiff(a, b) / Math.max(1, maxAbs(b));
}

const GRAD_KEYS = ["dr", "dd", "dk", "dv", "dalpha", "dbeta", "dS0"] as const;

Deno.test("wkvChunked reference == sequential reference (float64; T = 1, 16, 37, 50; dS_final)", () => {
  const rng = new Rng(7);
  for (const [T, H, N] of [[1, 1, 4], [16, 2, 8], [37, 2, 8], [50, 1, 16]]) {
    const c = refCase(rng, T, H, N);
    const fs = wkvForward(c.inp, c.s0, T, H, N), fc = wkvChunkedForward(c.inp, c.s0, T, H, N);
    const at = `T${T} H${H} N${N}`;
    assert(relMax(fc.y, fs.y) < 1e-12, `${at} y: ${relMax(fc.y, fs.y)}`);
    assert(relMax(fc.state, fs.state) < 1e-12, `${at} state`);
    for (const dSF of [undefined, c.dSF]) {
      const gs = wkvBackward(c.inp, c.s0, c.dy, T, H, N, dSF);
      const gc = wkvChunkedBackward(c.inp, c.s0, c.dy, T, H, N, dSF);
      for (const key of GRAD_KEYS) {
        const e = relMax(gc[key], gs[key]);
        assert(e < 1e-11, `${at} ${key}${dSF ? " (dS_final)" : ""}: rel max ${e}`);
      }
    }
  }
});

Deno.test("wkvChunkedBackward vs finite differences (T = 21 over two chunks)", () => {
  const T = 21, H = 1, N = 4;
  const fd = new GradChecker(3, 1e-6);
  const c = refCase(fd.rng as Rng, T, H, N);
  const wY = fd.rand(T * H * N), wS = fd.rand(H * N * N);
  const loss = () => {
    const f = wkvChunkedForward(c.inp, c.s0, T, H, N);
    return dot(f.y, wY) + dot(f.state, wS);
  };
  const g: WkvGrads = wkvChunkedBackward(c.inp, c.s0, wY, T, H, N, wS);
  const arrays: [string, ArrayLike<number>, Float64Array][] = [
    ["dr", g.dr, c.inp.r as Float64Array],
    ["dd", g.dd, c.inp.d as Float64Array],
    ["dk", g.dk, c.inp.k as Float64Array],
    ["dv", g.dv, c.inp.v as Float64Array],
    ["dalpha", g.dalpha, c.inp.alpha as Float64Array],
    ["dbeta", g.dbeta, c.inp.beta as Float64Array],
    ["dS0", g.dS0, c.s0],
  ];
  for (const [what, grad, arr] of arrays) {
    fd.check(what, grad, loss, arr, fd.pickBig(grad, 12));
    fd.checkDir(what, grad, loss, arr);
  }
  fd.report("wkvChunkedBackward");
});

/** GPU inputs (B, T, H, N) in f32 plus the per-sequence float64 reference inputs. */
function gpuCase(B: number, T: number, H: number, N: number, seed: number, zLo = -6) {
  const rng = new Rng(seed);
  const per = Array.from({ length: B }, () => refCase(rng, T, H, N, zLo));
  const cat = (f: (c: typeof per[0]) => ArrayLike<number>) => {
    const parts = per.map(f);
    const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
    let o = 0;
    for (const p of parts) out.set(p, o), o += p.length;
    return out;
  };
  const f32 = {
    r: cat((c) => c.inp.r),
    d: cat((c) => c.inp.d),
    k: cat((c) => c.inp.k),
    v: cat((c) => c.inp.v),
    kk: cat((c) => c.inp.alpha).map((x) => -x),
    a: cat((c) => c.a),
    dy: cat((c) => c.dy),
    s0: cat((c) => c.s0),
  };
  // the reference sees exactly the f32 values the GPU gets
  const refs = per.map((_, b) => {
    const sl = (x: Float32Array) =>
      Float64Array.from(x.subarray(b * T * H * N, (b + 1) * T * H * N));
    const kk = sl(f32.kk), a = sl(f32.a);
    const inp: WkvInputs = {
      r: sl(f32.r),
      d: sl(f32.d),
      k: sl(f32.k),
      v: sl(f32.v),
      alpha: kk.map((x) => -x),
      beta: kk.map((x, i) => x * a[i]),
    };
    const NN = H * N * N;
    return { inp, s0: Float64Array.from(f32.s0.subarray(b * NN, (b + 1) * NN)), dy: sl(f32.dy) };
  });
  return { f32, refs };
}

/** max |got − want| relative to max(1, max |want|), asserted ≤ tol. */
function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string) {
  const e = relMax(got, want);
  assert(e <= tol, `${what}: max |Δ| / scale = ${e.toExponential(3)} > ${tol}`);
  return e;
}

const GPU_TOL = 1e-4;

/** A GPU case: shape, shared S0 (backward), lower end of the decay pre-activation z. */
interface GpuShape {
  B: number;
  T: number;
  H: number;
  N: number;
  shared: boolean;
  zLo?: number;
}

async function forwardBoth(g: Gpu, c: GpuShape) {
  const { B, T, H, N } = c;
  const { f32, refs } = gpuCase(B, T, H, N, 100 + T + N, c.zLo);
  const up = (l: string, a: Float32Array) => uploadStorage(g, l, a);
  const ins = { r: up("r", f32.r), d: up("d", f32.d), k: up("k", f32.k), v: up("v", f32.v) };
  const args = { B, T, H, ...ins, kk: up("kk", f32.kk), a: up("a", f32.a) };
  const n = B * T * H * N, NN = H * N * N;
  const out: Record<string, { y: Float32Array; s: Float32Array }> = {};
  for (
    const [form, kern] of [
      ["sequential", await Wkv7Kernel.create(g, N)],
      ["chunked", await Wkv7ChunkedKernel.create(g, N)],
    ] as const
  ) {
    const state = up("state", Float32Array.from([9, 9, 9, 9, ...f32.s0]));
    const y = createStorage(g, "y", n * 4);
    const rec = new Recorder(g, `wkv_${form}`);
    kern.record(rec, { ...args, state, stateOff: 4, y });
    await rec.flush();
    out[form] = { y: await readF32(g, y, n), s: (await readF32(g, state, 4 + B * NN)).subarray(4) };
  }
  const errs: number[] = [];
  for (let b = 0; b < B; b++) {
    const ref = wkvForward(refs[b].inp, refs[b].s0, T, H, N);
    const sl = (x: Float32Array, w: number) => x.subarray(b * w, (b + 1) * w);
    const at = `forward B${B} T${T} H${H} N${N} b${b}`;
    for (const form of ["sequential", "chunked"]) {
      errs.push(expectClose(sl(out[form].y, T * H * N), ref.y, GPU_TOL, `${at} ${form} y`));
      errs.push(expectClose(sl(out[form].s, NN), ref.state, GPU_TOL, `${at} ${form} state`));
    }
  }
  expectClose(out.chunked.y, out.sequential.y, GPU_TOL, "forward chunked vs sequential GPU y");
  expectClose(out.chunked.s, out.sequential.s, GPU_TOL, "forward chunked vs sequential GPU state");
  return Math.max(...errs);
}

type Case = ReturnType<typeof gpuCase>;
type FormOutputs = Record<string, Record<string, Float32Array>>;

/** Run the sequential and the chunked backward (accumulating onto prior) and read their outputs. */
async function runBackwardForms(g: Gpu, c: GpuShape, f32: Case["f32"], prior: Float32Array) {
  const { B, T, H, N, shared } = c;
  const up = (l: string, a: Float32Array) => uploadStorage(g, l, a);
  const n = B * T * H * N, NN = H * N * N;
  const s0 = shared ? f32.s0.subarray(0, NN) : f32.s0;
  const ins = {
    ...{ r: up("r", f32.r), d: up("d", f32.d), k: up("k", f32.k), v: up("v", f32.v) },
    ...{ kk: up("kk", f32.kk), a: up("a", f32.a), dy: up("dy", f32.dy) },
    s0: up("s0", Float32Array.from([0, 0, 0, 0, ...s0])),
  };
  const got: FormOutputs = {};
  for (
    const [form, kern] of [
      ["sequential", await Wkv7BackwardKernel.create(g, [N])],
      ["chunked", await Wkv7ChunkedBackwardKernel.create(g, [N])],
    ] as const
  ) {
    const o = {
      dr: up("dr", prior),
      dk: up("dk", prior),
      dv: up("dv", prior),
      ...{ dd: createStorage(g, "dd", n * 4), dkk: createStorage(g, "dkk", n * 4) },
      da: createStorage(g, "da", n * 4),
    };
    const ds0 = createStorage(g, "ds0", (4 + B * NN) * 4);
    const rec = new Recorder(g, `wkv_bwd_${form}`);
    kern.record(rec, {
      B,
      T,
      H,
      N,
      ...ins,
      ...{ s0Off: 4, sharedS0: shared, ...o, accumulate: true, ds0, ds0Off: 4 },
      scratch: kern.createScratch(B, T, H, N),
    });
    await rec.flush();
    got[form] = { ds0: (await readF32(g, ds0, 4 + B * NN)).subarray(4) };
    for (const [key, buf] of Object.entries(o)) got[form][key] = await readF32(g, buf, n);
  }
  return got;
}

/** Sequence b of both forms vs wkvBackward and vs each other; returns the worst error. */
function compareBackwardForms(
  c: GpuShape,
  b: number,
  { f32, refs }: Case,
  prior: Float32Array,
  got: FormOutputs,
): number {
  const { B, T, H, N, shared } = c;
  const NN = H * N * N;
  let worst = 0;
  const r = refs[b];
  const ref = wkvBackward(r.inp, shared ? refs[0].s0 : r.s0, r.dy, T, H, N);
  const sl = (x: ArrayLike<number>, w: number) => Array.from(x).slice(b * w, (b + 1) * w);
  const a = sl(f32.a, T * H * N), kk = sl(f32.kk, T * H * N), p = sl(prior, T * H * N);
  const want: Record<string, ArrayLike<number>> = {
    dr: ref.dr.map((x, i) => x + p[i]),
    dk: ref.dk.map((x, i) => x + p[i]),
    dv: ref.dv.map((x, i) => x + p[i]),
    dd: ref.dd,
    dkk: ref.dalpha.map((x, i) => -x + ref.dbeta[i] * a[i]),
    da: ref.dbeta.map((x, i) => x * kk[i]),
    ds0: ref.dS0,
  };
  for (const [key, w] of Object.entries(want)) {
    const width = key === "ds0" ? NN : T * H * N;
    const at = `backward B${B} T${T} H${H} N${N} b${b}${shared ? " shared" : ""} ${key}`;
    for (const form of ["sequential", "chunked"]) {
      worst = Math.max(
        worst,
        expectClose(sl(got[form][key], width), w, GPU_TOL, `${at} ${form}`),
      );
    }
    expectClose(
      sl(got.chunked[key], width),
      sl(got.sequential[key], width),
      GPU_TOL,
      `${at} GPU`,
    );
  }
  return worst;
}

async function backwardBoth(g: Gpu, c: GpuShape) {
  const { B, T, H, N } = c;
  const cs = gpuCase(B, T, H, N, 200 + T + N, c.zLo);
  const n = B * T * H * N;
  const prior = new Rng(5).f32(n);
  const got = await runBackwardForms(g, c, cs.f32, prior);
  let worst = 0;
  for (let b = 0; b < B; b++) worst = Math.max(worst, compareBackwardForms(c, b, cs, prior, got));
  return worst;
}

const GPU_CASES: GpuShape[] = [
  { B: 2, T: 37, H: 2, N: 64, shared: false },
  { B: 2, T: 19, H: 2, N: 8, shared: true },
  { B: 2, T: 33, H: 2, N: 16, shared: false, zLo: 5 }, // d ≈ 0.545: γ down to 6e-5 per chunk
];

Deno.test({
  name: "wkv7_chunked + wkv7_chunked_backward GPU == sequential GPU == reference (d ≈ 0.545)",
  ignore: !gpu,
}, async () => {
  for (const c of GPU_CASES) {
    const ef = await forwardBoth(gpu!, c), eb = await backwardBoth(gpu!, c);
    const at = `B${c.B} T${c.T} H${c.H} N${c.N}${c.zLo ? " fast decay" : ""}`;
    console.log(
      `  ${at}: max |Δ|/scale forward ${ef.toExponential(2)}, backward ${eb.toExponential(2)}`,
    );
  }
});

Deno.test({
  name: "recordWkvForward / recordWkvBackward: forced, auto and missing forms",
  ignore: !gpu,
}, async () => {
  const g = gpu!, B = 1, T = 20, H = 1, N = 8, n = B * T * H * N, NN = H * N * N;
  const { f32 } = gpuCase(B, T, H, N, 9);
  const up = (l: string, a: Float32Array) => uploadStorage(g, l, a);
  const ins = { r: up("r", f32.r), d: up("d", f32.d), k: up("k", f32.k), v: up("v", f32.v) };
  const vecs = { ...ins, kk: up("kk", f32.kk), a: up("a", f32.a) };
  const fwd = {
    wkv: await Wkv7Kernel.create(g, N),
    wkvChunked: await Wkv7ChunkedKernel.create(g, N),
  };
  const bwdSeq = await Wkv7BackwardKernel.create(g, [N]);
  const bwd = { wkv: bwdSeq, wkvChunked: await Wkv7ChunkedBackwardKernel.create(g, [N]) };
  const run = async (form: "sequential" | "chunked" | "auto") => {
    const state = up("state", f32.s0), y = createStorage(g, "y", n * 4);
    const o = Object.fromEntries(
      ["dr", "dd", "dk", "dv", "dkk", "da"].map((k) => [k, createStorage(g, k, n * 4)]),
    ) as Record<"dr" | "dd" | "dk" | "dv" | "dkk" | "da", GPUBuffer>;
    const ds0 = createStorage(g, "ds0", NN * 4), rec = new Recorder(g, "forms");
    const fArgs = { B, T, H, ...vecs, state, stateOff: 0, y };
    const ff = recordWkvForward(rec, { ...fwd, wkvForm: form }, fArgs);
    const bf = recordWkvBackward(rec, { ...bwd, wkvForm: form }, {
      ...{ B, T, H, N, ...vecs, dy: up("dy", f32.dy), s0: up("s0", f32.s0), ...o, ds0 },
      scratch: bwdSeq.createScratch(B, T, H, N), // the sequential scratch, as the layer passes
    });
    await rec.flush();
    const read = (b: GPUBuffer, len: number) => readF32(g, b, len);
    return { ff, bf, y: await read(y, n), dd: await read(o.dd, n), ds0: await read(ds0, NN) };
  };
  const seq = await run("sequential"), ch = await run("chunked"), auto = await run("auto");
  assertEquals([seq.ff, seq.bf, ch.ff, ch.bf], [
    "sequential",
    "sequential",
    "chunked",
    "chunked",
  ]);
  const chosen = chooseWkvForm(g, { B, T, H, N });
  assertEquals([auto.ff, auto.bf], [chosen, chosen]);
  for (const key of ["y", "dd", "ds0"] as const) {
    expectClose(ch[key], seq[key], GPU_TOL, `forced chunked ${key}`);
  }
  const rec = new Recorder(g, "missing");
  const args = {
    B,
    T,
    H,
    ...vecs,
    state: up("state", f32.s0),
    stateOff: 0,
    y: createStorage(g, "y", n * 4),
  };
  assertThrowsMatch(
    () => recordWkvForward(rec, { wkv: fwd.wkv, wkvForm: "chunked" }, args),
    /needs the chunked/,
  );
  assertEquals(recordWkvForward(rec, { wkv: fwd.wkv }, args), "sequential");
});

Deno.test(
  { name: "chooseWkvForm: sequential on software adapters; forced forms", ignore: !gpu },
  () => {
    const s = { B: 1, T: 512, H: 12, N: 64 };
    const soft = { ...gpu!, isFallback: true };
    assertEquals(chooseWkvForm(soft, s), "sequential");
    const hw = { ...gpu!, isFallback: false, description: "NVIDIA H100" };
    assertEquals(chooseWkvForm(hw, s), "chunked");
    assertEquals(chooseWkvForm(hw, { ...s, B: 16, T: 16 }), "sequential");
    assertEquals(resolveWkvForm(soft, "chunked", s), "chunked");
    assertThrows(() => resolveWkvForm(soft, "fast" as "auto", s));
  },
);
