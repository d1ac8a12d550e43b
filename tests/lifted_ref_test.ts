/**
 * Kernel-upscaled ("lifted") state, CPU reference (docs/MATH.md §5): the branch's backward against
 * finite differences (op level and whole model), Ŝ0 = 0 is the untuned model, the identity limit
 * is plain state tuning with S0 + Ŝ0, and the edit is a contraction.
 *
 * FD: five-point central differences in float64 with h = 1e-4·max(1, |x|). Tolerance 1e-6:
 * spot entries (among |g| ≥ 0.1·max|g|) meet |g − fd| ≤ 1e-6·max(1, |fd|) and, over the set,
 * rms(g − fd)/rms(fd) ≤ 1e-6; a directional check along unit(ĝ + random) over the whole tensor
 * meets |g·δ − fd| ≤ 1e-6·|fd|. Measured worst errors are printed.
 *
 * @module
 */
import { assert, assertEquals } from "@std/assert";
import { assertClose, maxAbsDiff } from "./_helpers.ts";
import { dot, GradChecker, maxAbs } from "./_fd.ts";
import type { RwkvWeights } from "../lib/model/types.ts";
import { randomWeights, tinyConfig } from "../lib/model/random.ts";
import { liftedForward, liftedStep } from "../lib/ref/lifted.ts";
import { liftedBackward } from "../lib/ref/lifted_backward.ts";
import { wkvForward } from "../lib/ref/wkv.ts";
import { refBackward, refBatchLossAndGrad, refLossAndGrad } from "../lib/ref/backward.ts";
import { refForward, type RefLayerState64 } from "../lib/ref/model.ts";
import { crossEntropy } from "../lib/ref/loss.ts";
import { initLiftedLayers } from "../lib/parts/support.ts";
import type { LiftedLayers, LiftedState } from "../lib/ref/lifted_types.ts";
import { LiftedConfigSchema } from "../lib/parts/config.ts";

const fd = new GradChecker(777);
const { rng } = fd;
const rand = fd.rand.bind(fd), checkDir = fd.checkDir.bind(fd), report = fd.report.bind(fd);
/** Check `g` against FD at (at most `k` of) its large entries. */
const check = (what: string, g: ArrayLike<number>, f: () => number, arr: Float64Array, k = 1e9) => {
  assert(maxAbs(g) > 0, `${what}: the gradient is zero`);
  fd.check(what, g, f, arr, fd.pickBig(g, k));
};

/** Unit vectors per (T, H) block of N. */
function unitRows(T: number, H: number, N: number): Float64Array {
  const x = Float64Array.from({ length: T * H * N }, () => rng.normal());
  for (let b = 0; b < T * H; b++) {
    const n = Math.hypot(...x.subarray(b * N, (b + 1) * N));
    for (let j = 0; j < N; j++) x[b * N + j] /= n;
  }
  return x;
}

/** A random lifted state of one layer: support near the unit sphere, R = I + noise. */
function randomLifted(H: number, N: number, M: number, opts: Partial<LiftedState>): LiftedState {
  const R = rand(H * M * M, -0.3, 0.3);
  for (let h = 0; h < H; h++) for (let m = 0; m < M; m++) R[h * M * M + m * M + m] += 1;
  return {
    M,
    featureMap: "gaussian",
    headMeans: true,
    s0: rand(H * N * M),
    R,
    support: unitRows(M, H, N),
    gamma: rand(H, 0.4, 0.8),
    ...opts,
  };
}

for (
  const [name, featureMap, headMeans, ratio, read, writes] of [
    ["gaussian, head means, M = 2N, raw read", "gaussian", true, 2, "raw", false],
    ["gaussian, per-channel d and a, M = N, raw read", "gaussian", false, 1, "raw", false],
    ["identity, per-channel d and a", "identity", false, 1, "normalised", false],
    ["gaussian, head means, normalised read", "gaussian", true, 2, "normalised", false],
    ["writes, gaussian, head means, M = 2N", "gaussian", true, 2, "normalised", true],
    ["writes, identity, per-channel d and a", "identity", false, 1, "normalised", true],
  ] as const
) {
  Deno.test(`liftedBackward (${name}) matches FD on Ŝ0, g, kk, r, d, a, k, v`, () => {
    const T = 5, H = 2, N = 4, C = H * N, M = ratio * N;
    const gate = writes ? rand(H, 0.3, 1) : undefined;
    const s = randomLifted(H, N, M, { featureMap, headMeans, read, writes, gate });
    const s0 = s.s0 as Float64Array;
    // r near the support vectors' scale so that φ(r) is not negligible
    const wide = read === "normalised";
    const inp = {
      kk: unitRows(T, H, N),
      r: rand(T * C, wide ? -3 : -1, wide ? 3 : 1),
      d: rand(T * C, 0.55, 1),
      a: rand(T * C, 0, 1),
      k: rand(T * C, -2, 2),
      v: rand(T * C, -1, 1),
    };
    const Ry = rand(T * C), RS = rand(H * N * M);
    const f = () => {
      const o = liftedForward(inp, s, T, H, N);
      return dot(o.y, Ry) + dot(o.state, RS);
    };
    const { cache } = liftedForward(inp, s, T, H, N);
    const g = liftedBackward(cache, Ry, T, H, N, RS);
    check("dS0", g.dS0, f, s0);
    check("dkk", g.dkk, f, inp.kk);
    check("dr", g.dr, f, inp.r);
    check("dd", g.dd, f, inp.d);
    check("da", g.da, f, inp.a);
    if (writes) {
      check("dg", g.dGate, f, gate!);
      check("dk", g.dk, f, inp.k);
      check("dv", g.dv, f, inp.v);
    } else {
      assert(maxAbs(g.dGate) === 0 && maxAbs(g.dk) === 0 && maxAbs(g.dv) === 0, "memory mode");
    }
    // no final-state gradient
    const f2 = () => dot(liftedForward(inp, s, T, H, N).y, Ry);
    checkDir("dS0 (no dSFinal)", liftedBackward(cache, Ry, T, H, N).dS0, f2, s0);
    report(`lifted op (${name})`);
  });
}

Deno.test("writes-mode identity limit (op): y_S + y_lifted = (1 + g) y_S with Ŝ0 = S0", () => {
  const T = 7, H = 2, N = 4, C = H * N, gate = Float64Array.of(0.3, -0.7);
  const S0 = rand(H * N * N, -0.5, 0.5), R = new Float64Array(H * N * N);
  for (let h = 0; h < H; h++) for (let m = 0; m < N; m++) R[h * N * N + m * N + m] = 1;
  const s: LiftedState = {
    ...{ M: N, featureMap: "identity", headMeans: false, s0: S0, R, writes: true, gate },
  };
  const kk = unitRows(T, H, N), r = rand(T * C), d = rand(T * C, 0.55, 1), a = rand(T * C, 0, 1);
  const k = rand(T * C), v = rand(T * C);
  const alpha = kk.map((x) => -x), beta = kk.map((x, i) => x * a[i]);
  const wkv = wkvForward({ r, d, k, v, alpha, beta }, Float64Array.from(S0), T, H, N);
  const lf = liftedForward({ kk, r, d, a, k, v }, s, T, H, N);
  let worst = 0;
  for (let i = 0; i < T * C; i++) {
    const want = (1 + gate[Math.floor((i % C) / N)]) * wkv.y[i];
    worst = Math.max(worst, Math.abs(wkv.y[i] + lf.y[i] - want));
  }
  assert(worst <= 1e-12, `max |Δ| = ${worst}`);
  assertClose(lf.state, wkv.state, { maxAbs: 1e-12 }, "final Ŝ = final S");
  console.log(`writes identity limit (op): max |Δ| = ${worst.toExponential(2)}`);
});

Deno.test("lifted edit is a contraction: ‖Ŝ_t‖_F ≤ ‖Ŝ_{t−1}‖_F and every row's norm too", () => {
  const N = 8, M = 32, T = 200;
  const S = rand(N * M);
  let worstRatio = 0;
  for (let t = 0; t < T; t++) {
    const e = unitRows(1, 1, M);
    const dBar = rng.uniform(0.545, 1), aBar = rng.uniform(0, 1);
    const prevRows = Array.from(
      { length: N },
      (_, i) => Math.hypot(...S.subarray(i * M, (i + 1) * M)),
    );
    const prev = Math.hypot(...prevRows);
    liftedStep(S, 0, N, M, e, 0, new Float64Array(M).fill(dBar), e.map((x) => aBar * x));
    const rows = Array.from({ length: N }, (_, i) => Math.hypot(...S.subarray(i * M, (i + 1) * M)));
    rows.forEach((r, i) => assert(r <= prevRows[i] * (1 + 1e-12), `row ${i} grew at t = ${t}`));
    const now = Math.hypot(...rows);
    assert(now <= prev * (1 + 1e-12), `‖Ŝ‖_F grew at t = ${t}: ${prev} → ${now}`);
    worstRatio = Math.max(worstRatio, now / prev);
  }
  // the same through the full branch (Gaussian features, random R, head means)
  const H = 2, Nh = 4, Mh = 16;
  const s = randomLifted(H, Nh, Mh, {});
  let state = s.s0 as Float64Array;
  const norm = (x: Float64Array, h: number) =>
    Math.hypot(...x.subarray(h * Nh * Mh, (h + 1) * Nh * Mh));
  for (let t = 0; t < 100; t++) {
    const C = H * Nh;
    const inp = { kk: unitRows(1, H, Nh), r: rand(C), d: rand(C, 0.545, 1), a: rand(C, 0, 1) };
    const next = liftedForward(inp, { ...s, s0: state }, 1, H, Nh).state;
    for (let h = 0; h < H; h++) assert(norm(next, h) <= norm(state, h) * (1 + 1e-12), `t = ${t}`);
    state = next;
  }
  console.log(`contraction: worst ‖Ŝ_t‖_F / ‖Ŝ_{t−1}‖_F = ${worstRatio.toFixed(6)}`);
});

// ---- whole model: L2, C64, H2, N32 ----

const cfg = tinyConfig({ nLayer: 2, nEmbd: 64, headSize: 32, vocabSize: 50 });
const { nLayer: L, nEmbd: C, nHead: H, headSize: N, vocabSize: V } = cfg;
const model: RwkvWeights = randomWeights(cfg, 11);
const calib = [0, 1, 2].map((s) => Array.from({ length: 30 }, (_, t) => (7 * t + 13 * s + 3) % V));

function randomState(): RefLayerState64[] {
  return Array.from({ length: L }, () => ({
    att: rand(C, -1.5, 1.5),
    wkv: rand(H * N * N, -0.5, 0.5),
    ffn: rand(C, -1.5, 1.5),
  }));
}

Deno.test("lifted model: Ŝ0 = 0 leaves the logits exactly equal to the model without it", () => {
  const lifted = initLiftedLayers(model, calib, LiftedConfigSchema.parse({ featureRatio: 2 }));
  lifted.forEach((s) => assert(s && s.M === 2 * N && s.R.length === H * 4 * N * N));
  const state = randomState(), tokens = [3, 17, 42, 8, 8, 29];
  const plain = refForward(model, tokens, state);
  const withBranch = refForward(model, tokens, state, { lifted });
  assertEquals(maxAbsDiff(withBranch.logits, plain.logits), 0, "logits differ");
  withBranch.state64.forEach((s, l) => assertEquals(maxAbsDiff(s.wkv, plain.state64[l].wkv), 0));
  assert(withBranch.lifted!.every((s) => s!.every((x) => x === 0)), "Ŝ stays 0");
});

Deno.test("writes mode: g = 0 leaves the logits exactly equal (Ŝ0 ≠ 0, writes on)", () => {
  const conf = LiftedConfigSchema.parse({ featureRatio: 2, writes: true });
  const lifted = initLiftedLayers(model, calib, conf);
  for (const s of lifted) {
    assert(s!.writes && s!.gate!.length === H && Array.from(s!.gate!).every((x) => x === 0));
    (s!.s0 as Float64Array).set(rand(H * N * 2 * N, -0.5, 0.5));
  }
  const state = randomState(), tokens = [3, 17, 42, 8, 8, 29];
  const plain = refForward(model, tokens, state);
  const withBranch = refForward(model, tokens, state, { lifted });
  assertEquals(maxAbsDiff(withBranch.logits, plain.logits), 0, "logits differ");
  assert(withBranch.lifted!.some((s) => s!.some((x) => x !== 0)), "Ŝ moves (writes on)");
});

Deno.test("writes-mode identity limit (model): the last layer's WKV output times (1 + g)", () => {
  const conf = LiftedConfigSchema.parse({
    ...{ featureMap: "identity", headMeans: false, featureRatio: 1, writes: true },
  });
  const all = initLiftedLayers(model, [], conf);
  const state = randomState(), l = L - 1, gate = Float64Array.of(0.4, -0.25);
  const lifted: LiftedLayers = [undefined, { ...all[l]!, s0: state[l].wkv, gate }];
  const tokens = [3, 17, 42, 8, 8, 29];
  const a = refForward(model, tokens, state, { lifted, keepCache: true });
  const b = refForward(model, tokens, state, { keepCache: true });
  const ya = a.cache!.layers[l].att.y, yb = b.cache!.layers[l].att.y;
  let worst = 0;
  for (let i = 0; i < ya.length; i++) {
    worst = Math.max(worst, Math.abs(ya[i] - (1 + gate[Math.floor((i % C) / N)]) * yb[i]));
  }
  assert(worst <= 1e-12, `GroupNorm input: max |Δ| = ${worst}`);
  assertClose(a.lifted![l]!, b.state64[l].wkv, { maxAbs: 1e-12 }, "final Ŝ = final S");
  console.log(`writes identity limit (model): max |Δ| = ${worst.toExponential(2)}`);
});

Deno.test("identity limit: S0 and Ŝ0 together equal plain state tuning with S0 + Ŝ0", () => {
  const conf = LiftedConfigSchema.parse({
    featureMap: "identity",
    headMeans: false,
    featureRatio: 1,
  });
  const lifted = initLiftedLayers(model, [], conf);
  for (const s of lifted) (s!.s0 as Float64Array).set(rand(H * N * N, -0.5, 0.5));
  const state = randomState();
  const sum = state.map((s, l) => ({ ...s, wkv: s.wkv.map((x, i) => x + lifted[l]!.s0[i]) }));
  const tokens = [3, 17, 42, 8, 8, 29], targets = [17, 42, 8, 8, 29, 1], mask = [0, 1, 1, 0, 1, 1];
  const a = refForward(model, tokens, state, { lifted }), b = refForward(model, tokens, sum);
  assertClose(a.logits, b.logits, { maxAbs: 1e-5 }, "logits");
  const ga = refLossAndGrad(model, tokens, targets, mask, state, { lifted });
  const gb = refLossAndGrad(model, tokens, targets, mask, sum);
  let worstD = maxAbsDiff(a.logits, b.logits);
  for (let l = 0; l < L; l++) {
    assertClose(ga.dLifted![l]!, gb.dState[l].wkv, { maxAbs: 1e-5 }, `dL/dŜ0[${l}]`);
    assertClose(ga.dState[l].wkv, gb.dState[l].wkv, { maxAbs: 1e-5 }, `dL/dS0[${l}]`);
    assertClose(ga.dState[l].att, gb.dState[l].att, { maxAbs: 1e-5 }, `dL/dshift[${l}]`);
    worstD = Math.max(worstD, maxAbsDiff(ga.dLifted![l]!, gb.dState[l].wkv));
    // the final states add up too
    const fin = a.state64[l].wkv.map((x, i) => x + a.lifted![l]![i]);
    assertClose(fin, b.state64[l].wkv, { maxAbs: 1e-5 }, `final state[${l}]`);
  }
  // the raw read R φ(r) is the same read for the identity map
  const nr = lifted.map((s) => ({ ...s!, read: "raw" as const }));
  const gn = refLossAndGrad(model, tokens, targets, mask, state, { lifted: nr });
  for (let l = 0; l < L; l++) {
    assertClose(gn.dLifted![l]!, gb.dState[l].wkv, { maxAbs: 1e-5 }, `raw read [${l}]`);
    worstD = Math.max(worstD, maxAbsDiff(gn.dLifted![l]!, gb.dState[l].wkv));
  }
  assert(Math.abs(ga.loss - gb.loss) <= 1e-12, "loss");
  console.log(`identity limit: worst max|Δ| over logits and dL/dŜ0 = ${worstD.toExponential(2)}`);
});

/**
 * The same model with Wr scaled by 0.2. The branch reads through φ(r) with r unnormalised and
 * support vectors drawn from unit-length kk; with this model's ‖r‖ ≈ 5, φ(r) ≈ 1e-3 and dL/dŜ0
 * is ~1e-5, where FD round-off (~1e-11 absolute) is too close to the 1e-6 tolerance. Scaling r
 * to ‖r‖ ≈ 1 makes φ(r) = O(0.1) so every path of the branch carries signal in the FD.
 */
const modelSmallR: RwkvWeights = {
  ...model,
  blocks: model.blocks.map((b) => ({ ...b, Wr: b.Wr.map((x) => 0.2 * x) })),
};

function liftedModel(w = model, read: "raw" | "normalised" = "raw", writes = false): LiftedLayers {
  const conf = LiftedConfigSchema.parse({
    featureRatio: 2,
    rInit: "nystrom",
    seed: 5,
    read,
    writes,
  });
  const lifted = initLiftedLayers(w, calib, conf);
  for (const s of lifted) {
    (s!.s0 as Float64Array).set(rand(H * N * 2 * N, -0.5, 0.5));
    if (writes) s!.gate = rand(H, 0.2, 0.8);
  }
  return lifted;
}

for (
  const [name, w, read, writes] of [
    ["raw read, Wr × 0.2", modelSmallR, "raw", false],
    ["normalised read", model, "normalised", false],
    ["writes", model, "normalised", true],
  ] as const
) {
  Deno.test(`lifted model (${name}): dL/dŜ0 and input gradients match FD (L2 C64 H2 N32 M2N)`, () => {
    const lifted = liftedModel(w, read, writes);
    const state = randomState();
    const tokens = [3, 17, 42, 8, 8, 29], targets = [17, 42, 8, 8, 29, 1];
    const mask = [0, 1, 1, 0, 1, 1];
    const g = refLossAndGrad(w, tokens, targets, mask, state, { lifted });
    const f = () => {
      const { logits } = refForward(w, tokens, state, { lifted });
      const ce = crossEntropy(logits, targets, tokens.length, V, mask);
      return ce.sum / ce.count;
    };
    assert(Math.abs(g.loss - f()) < 1e-12, "loss value");
    for (let l = 0; l < L; l++) {
      const dS = g.dLifted![l]!, s0 = lifted[l]!.s0 as Float64Array;
      const big = Math.max(...dS.map(Math.abs));
      console.log(`max |dL/dŜ0[${l}]| = ${big.toExponential(2)}`);
      assert(big > 1e-4, `dL/dŜ0[${l}] is (near) zero`);
      check(`dŜ0[${l}]`, dS, f, s0, 16);
      checkDir(`dŜ0[${l}]`, dS, f, s0);
      if (writes) {
        const dg = g.dLiftedGate![l]!;
        assert(maxAbs(dg) > 1e-4, `dL/dg[${l}] is (near) zero`);
        check(`dg[${l}]`, dg, f, lifted[l]!.gate as Float64Array);
      } else assert(maxAbs(g.dLiftedGate![l]!) === 0, "memory mode: dL/dg = 0");
      // gradients that flow through the branch's inputs (kk, r, d, a) into the network
      checkDir(`dS0[${l}]`, g.dState[l].wkv, f, state[l].wkv);
      checkDir(`dShiftAtt[${l}]`, g.dState[l].att, f, state[l].att);
    }
    report(`lifted model (${name})`);
  });
}

Deno.test("lifted model: batches sum, dFinalLifted chains chunks, mixed layers", () => {
  const w = modelSmallR, lifted: LiftedLayers = [undefined, liftedModel(w)[1]];
  const lw: LiftedLayers = [undefined, liftedModel(model, "normalised", true)[1]];
  const state = randomState();
  const tokens = [4, 9, 16, 25, 36, 49, 0], targets = [9, 16, 25, 36, 49, 0, 1];
  const whole = refLossAndGrad(w, tokens, targets, undefined, state, { lifted });
  assert(whole.dLifted![0] === undefined && whole.dLifted![1] !== undefined);
  const chunk = (lo: number, hi: number, s: RefLayerState64[], lf: LiftedLayers) => {
    const fwd = refForward(w, tokens.slice(lo, hi), s, { keepCache: true, lifted: lf });
    const ce = crossEntropy(fwd.logits, targets.slice(lo, hi), hi - lo, V, undefined, {
      denominator: 7,
    });
    return { fwd, ce };
  };
  const A = chunk(0, 4, state, lifted);
  const lB: LiftedLayers = [undefined, { ...lifted[1]!, s0: A.fwd.lifted![1]! }];
  const B = chunk(4, 7, A.fwd.state64, lB);
  const gB = refBackward(w, B.fwd.cache!, B.ce.dLogits);
  const gA = refBackward(w, A.fwd.cache!, A.ce.dLogits, {
    dFinalState: gB.dState,
    dFinalLifted: gB.dLifted,
  });
  assertClose(gA.dLifted![1]!, whole.dLifted![1]!, { rel: 1e-12 }, "chunked dL/dŜ0");
  // writes mode chains too (dŜ0 and the summed dg)
  const wWhole = refLossAndGrad(model, tokens, targets, undefined, state, { lifted: lw });
  const run = (lo: number, hi: number, st: RefLayerState64[], lf: LiftedLayers) => {
    const fwd = refForward(model, tokens.slice(lo, hi), st, { keepCache: true, lifted: lf });
    const ce = crossEntropy(fwd.logits, targets.slice(lo, hi), hi - lo, V, undefined, {
      denominator: 7,
    });
    return { fwd, ce };
  };
  const wA = run(0, 4, state, lw);
  const wB = run(4, 7, wA.fwd.state64, [undefined, { ...lw[1]!, s0: wA.fwd.lifted![1]! }]);
  const wgB = refBackward(model, wB.fwd.cache!, wB.ce.dLogits);
  const wgA = refBackward(model, wA.fwd.cache!, wA.ce.dLogits, {
    dFinalState: wgB.dState,
    dFinalLifted: wgB.dLifted,
  });
  assertClose(wgA.dLifted![1]!, wWhole.dLifted![1]!, { rel: 1e-12 }, "writes: chunked dŜ0");
  const dgSum = wgA.dLiftedGate![1]!.map((x, h) => x + wgB.dLiftedGate![1]![h]);
  assertClose(dgSum, wWhole.dLiftedGate![1]!, { rel: 1e-12 }, "writes: chunked dg");
  assertClose(gA.dState[1].wkv, whole.dState[1].wkv, { rel: 1e-12 }, "chunked dL/dS0");
  // batch: the gradient of the pooled mean
  const sa = { tokens: [1, 2, 3, 4], targets: [2, 3, 4, 5], mask: [0, 1, 1, 1] };
  const sb = { tokens: [7, 8], targets: [8, 9] };
  const gb = refBatchLossAndGrad(w, [sa, sb], state, { lifted });
  const one = (s: { tokens: number[]; targets: number[]; mask?: number[] }) => {
    const { logits } = refForward(w, s.tokens, state, { lifted });
    return crossEntropy(logits, s.targets, s.tokens.length, V, s.mask).sum;
  };
  checkDir(
    "batch dŜ0",
    gb.dLifted![1]!,
    () => (one(sa) + one(sb)) / 5,
    lifted[1]!.s0 as Float64Array,
  );
  report("lifted chunks/batch");
});
