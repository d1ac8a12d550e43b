/**
 * GPU backward kernels vs the CPU reference backward (lib/ref/), on small seeded shapes:
 * H > 1, T = 1, T not a multiple of the 16-token checkpoint chunk, B = 2.
 */
import { assert, assertStrictEquals } from "@std/assert";
import { createStorage, readF32, uploadStorage } from "../lib/gpu/buffers.ts";
import type { Gpu } from "../lib/gpu/device.ts";
import { Recorder } from "../lib/gpu/recorder.ts";
import { Wkv7BackwardKernel } from "../lib/kernels/wkv7_backward.ts";
import { wkvBackward } from "../lib/ref/wkv.ts";
import { AdamKernel } from "../lib/kernels/adam.ts";
import { HeadCeKernel } from "../lib/kernels/head_ce.ts";
import { MatmulKernel } from "../lib/kernels/matmul.ts";
import { MatmulDwKernel } from "../lib/kernels/matmul_dw.ts";
import { NormBackwardKernel } from "../lib/kernels/norm_backward.ts";
import { TokenShiftBackwardKernel } from "../lib/kernels/token_shift_backward.ts";
import { uploadMatrix } from "../lib/model/gpu_weights.ts";
import { linear, linearBackward } from "../lib/ref/linear.ts";
import { crossEntropy } from "../lib/ref/loss.ts";
import { groupNormBackward } from "../lib/ref/norm.ts";
import { shiftMixBackward, tokenShiftBackward } from "../lib/ref/shift.ts";
import { assertClose, errRatio, gpu, Rng } from "./_helpers.ts";

const TOL = { rel: 1e-5 };

/** Upload a Float64Array/number[] as f32. */
function up(g: Gpu, label: string, x: ArrayLike<number>): GPUBuffer {
  return uploadStorage(g, label, Float32Array.from(x));
}

/** Slice sequence b of a (B, T, C) array. */
function seq(x: ArrayLike<number>, b: number, T: number, C: number): Float64Array {
  return Float64Array.from(Array.prototype.slice.call(x, b * T * C, (b + 1) * T * C));
}

/** Random WKV inputs (B·T, C) with valid ranges: d ∈ (0.545, 1), unit kk per head, a ∈ (0, 1). */
function wkvInputs(rng: Rng, B: number, T: number, H: number, N: number) {
  const n = B * T * H * N;
  const kk = rng.f32(n);
  for (let o = 0; o < n; o += N) {
    let s = 0;
    for (let j = 0; j < N; j++) s += kk[o + j] ** 2;
    for (let j = 0; j < N; j++) kk[o + j] /= Math.sqrt(s);
  }
  return {
    r: rng.f32(n),
    d: rng.f32(n, 0.546, 0.999),
    k: rng.f32(n),
    v: rng.f32(n),
    kk,
    a: rng.f32(n, 0.01, 0.99),
    dy: rng.f32(n),
  };
}

type WkvInputs = ReturnType<typeof wkvInputs>;
type WkvShape = { B: number; T: number; H: number; N: number };

/** Record and run the WKV backward (plus the batch sum of dS0) on the GPU and read every output. */
async function runWkvBackward(
  g: Gpu,
  sh: WkvShape,
  x: WkvInputs,
  s0: Float32Array,
  shared: boolean,
) {
  const { B, T, H, N } = sh;
  const C = H * N, NN = H * N * N, n = B * T * C;
  const kern = await Wkv7BackwardKernel.create(g, [N]);
  const bufs = Object.fromEntries(
    Object.entries(x).map(([k, v]) => [k, up(g, k, v)]),
  ) as Record<keyof typeof x, GPUBuffer>;
  const out = (l: string) => createStorage(g, l, n * 4);
  const o = { dr: out("dr"), dd: out("dd"), dk: out("dk"), dv: out("dv"), dkk: out("dkk") };
  const da = out("da"), ds0 = createStorage(g, "ds0", B * NN * 4);
  const rec = new Recorder(g, "wkv_bwd_test");
  kern.record(rec, {
    B,
    T,
    H,
    N,
    ...bufs,
    s0: up(g, "s0", s0),
    sharedS0: shared,
    ...o,
    da,
    ds0,
    scratch: kern.createScratch(B, T, H, N),
  });
  const dsum = createStorage(g, "dsum", NN * 4);
  kern.sumBatch(rec, { B, n: NN, src: ds0, dst: dsum });
  rec.submit();
  return {
    dr: await readF32(g, o.dr, n),
    dd: await readF32(g, o.dd, n),
    dk: await readF32(g, o.dk, n),
    dv: await readF32(g, o.dv, n),
    dkk: await readF32(g, o.dkk, n),
    da: await readF32(g, da, n),
    ds0: await readF32(g, ds0, B * NN),
    dsum: await readF32(g, dsum, NN),
  };
}

/** Sequence b of the GPU outputs vs wkvBackward; returns the reference dS0 of that sequence. */
function checkWkvSequence(
  sh: WkvShape,
  b: number,
  x: WkvInputs,
  s0: Float32Array,
  shared: boolean,
  got: Awaited<ReturnType<typeof runWkvBackward>>,
): ArrayLike<number> {
  const { B, T, H, N } = sh;
  const C = H * N, NN = H * N * N;
  const sl = (a: ArrayLike<number>) => seq(a, b, T, C);
  const kk = sl(x.kk), a = sl(x.a);
  const ref = wkvBackward(
    {
      r: sl(x.r),
      d: sl(x.d),
      k: sl(x.k),
      v: sl(x.v),
      alpha: kk.map((q) => -q),
      beta: kk.map((q, i) => q * a[i]),
    },
    seq(s0, shared ? 0 : b, 1, NN),
    sl(x.dy),
    T,
    H,
    N,
  );
  const dkk = ref.dalpha.map((q, i) => -q + ref.dbeta[i] * a[i]);
  const daRef = ref.dbeta.map((q, i) => q * kk[i]);
  const what = (s: string) => `wkv B${B} T${T} H${H} N${N} b${b} ${s}`;
  for (const key of ["dr", "dd", "dk", "dv"] as const) {
    assertClose(seq(got[key], b, T, C), ref[key], TOL, what(key));
  }
  assertClose(seq(got.dkk, b, T, C), dkk, TOL, what("dkk"));
  assertClose(seq(got.da, b, T, C), daRef, TOL, what("da"));
  assertClose(seq(got.ds0, b, 1, NN), ref.dS0, TOL, what("dS0"));
  return ref.dS0;
}

async function checkWkv(g: Gpu, B: number, T: number, H: number, N: number, shared: boolean) {
  const rng = new Rng(1000 + B * 97 + T * 13 + H * 7 + N);
  const NN = H * N * N;
  const x = wkvInputs(rng, B, T, H, N);
  const s0 = rng.f32((shared ? 1 : B) * NN, -0.5, 0.5);
  const sh = { B, T, H, N };
  const got = await runWkvBackward(g, sh, x, s0, shared);
  const refSum = new Float64Array(NN);
  for (let b = 0; b < B; b++) {
    const dS0 = checkWkvSequence(sh, b, x, s0, shared, got);
    for (let e = 0; e < NN; e++) refSum[e] += dS0[e];
  }
  assertClose(got.dsum, refSum, TOL, "wkv dS0 summed over the batch");
  return errRatio(got.dsum, refSum);
}

Deno.test({
  name: "wkv7_backward matches wkvBackward (T = 1, 19, 37; H = 2; B = 2)",
  ignore: !gpu,
  async fn() {
    const g = gpu!;
    for (
      const [B, T, H, N, shared] of [
        [1, 1, 2, 8, false],
        [2, 19, 2, 8, true],
        [2, 37, 3, 16, false],
        [1, 17, 1, 64, true],
      ] as const
    ) {
      const e = await checkWkv(g, B, T, H, N, shared);
      console.log(`  wkv B${B} T${T} H${H} N${N}: dS0 (batch sum) rel err ${e.toExponential(2)}`);
      assert(e < TOL.rel);
    }
  },
});

Deno.test({
  name: "head_ce: loss, dxNorm and dHead vs crossEntropy + linearBackward (blocks, L2Wrap)",
  ignore: !gpu,
  async fn() {
    const g = gpu!;
    const rng = new Rng(5);
    const rows = 13, C = 8, V = 70;
    const x = rng.f32(rows * C), W = rng.f32(V * C, -2, 2);
    const targets = Uint32Array.from({ length: rows }, () => rng.int(V));
    const mask = Float32Array.from({ length: rows }, (_, i) => (i % 4 === 1 ? 0 : 1));
    const mm = await MatmulKernel.create(g);
    const ce = await HeadCeKernel.create(g, mm, await MatmulDwKernel.create(g));
    for (const l2wrap of [false, true]) {
      const head = uploadMatrix(g, "head", W, V, C, 32 * C * 4); // 3 chunks
      const dHead = uploadMatrix(g, "dHead", new Float32Array(V * C), V, C, 32 * C * 4);
      const [dx, stats, nll] = [
        createStorage(g, "dx", rows * C * 4),
        createStorage(g, "stats", 16),
        createStorage(g, "nll", rows * 4),
      ];
      const rec = new Recorder(g, "head_ce_test");
      ce.record(rec, {
        rows,
        xNorm: up(g, "x", x),
        head,
        targets: uploadStorage(g, "targets", targets),
        mask: up(g, "mask", mask),
        logits: ce.createLogits(rows, V, 5 * V * 4), // blocks of 5 rows
        dx,
        stats,
        nll,
        l2wrap,
        dHead,
      });
      rec.submit();
      const ref = crossEntropy(linear(x, W, rows, C, V), targets, rows, V, mask, { l2wrap });
      const lb = linearBackward(ref.dLogits, x, W, rows, C, V, true);
      const st = await readF32(g, stats, 4);
      assertStrictEquals(st[1], ref.count);
      assert(Math.abs(st[0] - ref.sum / ref.count) <= 1e-5 * Math.abs(ref.sum / ref.count));
      assertClose(await readF32(g, dx, rows * C), lb.dx, TOL, `head_ce dx l2wrap=${l2wrap}`);
      const dW = new Float32Array(V * C);
      for (const ch of dHead.chunks) {
        dW.set(await readF32(g, ch.buffer, ch.rows * C), ch.rowStart * C);
      }
      assertClose(dW, lb.dW!, TOL, `head_ce dHead l2wrap=${l2wrap}`);
    }
  },
});

Deno.test({
  name: "norm_backward: LayerNorm and GroupNorm (eps N·1e-5) vs reference, accumulate",
  ignore: !gpu,
  async fn() {
    const g = gpu!;
    const kern = await NormBackwardKernel.create(g);
    const rng = new Rng(9);
    for (const [rows, G, S, eps] of [[7, 1, 24, 1e-5], [5, 3, 16, 16e-5]] as const) {
      const n = rows * G * S;
      const x = rng.f32(n, -2, 2), dy = rng.f32(n), w = rng.f32(G * S, 0.5, 1.5);
      const base = rng.f32(n);
      const dx = up(g, "dx", base);
      const rec = new Recorder(g, "norm_bwd_test");
      kern.record(rec, {
        rows,
        G,
        S,
        x: up(g, "x", x),
        dy: up(g, "dy", dy),
        vecs: up(g, "w", w),
        wOff: 0,
        dx,
        eps,
        accumulate: true,
      });
      rec.submit();
      const ref = groupNormBackward(dy, x, w, rows, G, S, eps);
      assertClose(await readF32(g, dx, n), ref.dx.map((v, i) => v + base[i]), TOL, `norm G${G}`);
    }
  },
});

Deno.test({
  name: "token_shift_backward: 6 mixes, B = 2, vs shiftMixBackward + tokenShiftBackward",
  ignore: !gpu,
  async fn() {
    const g = gpu!;
    const kern = await TokenShiftBackwardKernel.create(g);
    const rng = new Rng(3);
    const B = 2, T = 5, C = 8, nMix = 6, n = B * T * C;
    const dmix = rng.f32(nMix * n), xm = rng.f32(nMix * C, 0, 1);
    const du = createStorage(g, "du", n * 4), dshift = createStorage(g, "dshift", 3 * B * C * 4);
    const rec = new Recorder(g, "shift_bwd_test");
    kern.record(rec, {
      B,
      T,
      C,
      nMix,
      dmix: up(g, "dmix", dmix),
      vecs: up(g, "xm", xm),
      xOff: 0,
      du,
      dshift,
      shiftOff: B * C,
    });
    rec.submit();
    const gotDu = await readF32(g, du, n), gotSh = await readF32(g, dshift, B * C, B * C);
    for (let b = 0; b < B; b++) {
      const rDu = new Float64Array(T * C),
        rDp = new Float64Array(T * C),
        z = new Float64Array(T * C);
      for (let m = 0; m < nMix; m++) {
        const dm = seq(dmix.subarray(m * n), b, T, C);
        shiftMixBackward(dm, z, z, xm.subarray(m * C, (m + 1) * C), rDu, rDp, T, C);
      }
      const rSh = tokenShiftBackward(rDp, rDu, T, C);
      assertClose(seq(gotDu, b, T, C), rDu, TOL, `shift du b${b}`);
      assertClose(gotSh.subarray(b * C, (b + 1) * C), rSh, TOL, `shift dshift b${b}`);
    }
  },
});

Deno.test({
  name: "adam: two steps with grad-norm clipping vs a CPU Adam",
  ignore: !gpu,
  async fn() {
    const g = gpu!;
    const adam = await AdamKernel.create(g);
    const rng = new Rng(17);
    const n = 1000, lr = 0.5, maxNorm = 3;
    const p0 = rng.f32(n), grads = [rng.f32(n, -0.5, 0.5), rng.f32(n, -0.5, 0.5)];
    const param = up(g, "p", p0),
      m = createStorage(g, "m", n * 4),
      v = createStorage(g, "v", n * 4);
    const parts = adam.createPartials(2), norm = createStorage(g, "norm", 8);
    const cpu = { p: Float64Array.from(p0), m: new Float64Array(n), v: new Float64Array(n) };
    for (let step = 1; step <= 2; step++) {
      const grad = up(g, "g", grads[step - 1]);
      const rec = new Recorder(g, "adam_test");
      // the norm over two blocks (halves) must equal the whole norm
      adam.gradNorm(
        rec,
        [{ buffer: grad, n: 600 }, { buffer: grad, n: 400, off: 600 }],
        parts,
        norm,
        maxNorm,
      );
      adam.step(rec, { buffer: param, n }, { buffer: grad, n }, m, v, { lr, step, clip: norm });
      rec.submit();
      const gr = grads[step - 1];
      const sq = gr.reduce((s, x) => s + x * x, 0);
      const scale = Math.min(1, maxNorm / (Math.sqrt(sq) + 1e-6));
      for (let i = 0; i < n; i++) {
        const gi = gr[i] * scale;
        cpu.m[i] = 0.9 * cpu.m[i] + 0.1 * gi;
        cpu.v[i] = 0.99 * cpu.v[i] + 0.01 * gi * gi;
        const denom = Math.sqrt(cpu.v[i]) / Math.sqrt(1 - 0.99 ** step) + 1e-8;
        cpu.p[i] -= (lr / (1 - 0.9 ** step)) * cpu.m[i] / denom;
      }
      const nb = await readF32(g, norm, 2);
      assert(Math.abs(nb[0] - sq) <= 1e-5 * sq, `squared norm ${nb[0]} vs ${sq}`);
      assertClose(await readF32(g, param, n), cpu.p, { rel: 1e-6 }, `adam step ${step}`);
    }
  },
});
