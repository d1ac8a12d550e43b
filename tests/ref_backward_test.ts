/**
 * Finite-difference checks of the float64 reference backward (lib/ref/*): every op on small
 * random inputs, the whole model's dL/dS0, shift-state and weight gradients on a seeded random
 * multi-head model, and dL/dS0 on the fixture model.
 *
 * FD: five-point central differences in float64,
 * f'(x) ≈ [8(f(x+h) − f(x−h)) − (f(x+2h) − f(x−2h))] / 12h with h = h0·max(1, |x|), h0 = 1e-4
 * unless a test says why it needs another (truncation ~h⁴, round-off ~1e-16·|f|/h).
 *
 * Tolerance, TOL = 1e-6: a spot-checked set must meet, per element,
 * |g − fd| ≤ 1e-6·max(1, |fd|), AND over the set rms(g − fd)/rms(fd) ≤ 1e-6 (the one that
 * bites for small gradients). Spot entries are drawn among those with |g| ≥ 0.1·max|g| (where
 * the FD has signal); every entry is covered by a directional check: along
 * δ = unit(ĝ + random unit vector) over the whole tensor, |g·δ − fd| ≤ 1e-6·|fd|.
 * Measured worst errors are printed per test (all ≲ 1e-8 at the time of writing).
 *
 * @module
 */
import { assert } from "@std/assert";
import { errRatio, fixture, hasFixtures } from "./_helpers.ts";
import { dot, GradChecker } from "./_fd.ts";
import type { LayerWeights, RwkvWeights } from "../lib/model/types.ts";
import { randomWeights, tinyConfig } from "../lib/model/random.ts";
import { loadModel } from "../lib/model/load.ts";
import { linear, linearBackward, matmul, matmulBackward } from "../lib/ref/linear.ts";
import { groupNorm, groupNormBackward, layerNorm, layerNormBackward } from "../lib/ref/norm.ts";
import { wkvBackward, wkvForward } from "../lib/ref/wkv.ts";
import { timeMixBackward, timeMixForward } from "../lib/ref/time_mix.ts";
import { channelMixBackward, channelMixForward } from "../lib/ref/channel_mix.ts";
import { crossEntropy, L2WRAP_COEF } from "../lib/ref/loss.ts";
import { refForward, type RefLayerState64 } from "../lib/ref/model.ts";
import { refBackward, refBatchLossAndGrad, refLossAndGrad } from "../lib/ref/backward.ts";

const fd = new GradChecker(20240607);
const rand = fd.rand.bind(fd), check = fd.check.bind(fd), checkDir = fd.checkDir.bind(fd);
const report = fd.report.bind(fd), pickBig = fd.pickBig.bind(fd);

/** A float64 copy of the weights. The reference reads weights only by index, so float64 arrays
 * stand in for the Float32Arrays of the type: FD then perturbs them exactly. */
function f64Weights(w: RwkvWeights): RwkvWeights {
  const conv = (o: Record<string, unknown>) =>
    Object.fromEntries(
      Object.entries(o).map(([k, v]) => [k, v instanceof Float32Array ? Float64Array.from(v) : v]),
    );
  return {
    ...conv(w as unknown as Record<string, unknown>),
    blocks: w.blocks.map((b) => conv(b as unknown as Record<string, unknown>)),
  } as unknown as RwkvWeights;
}

/** Enlarge the small random paths (bonus, low-rank outputs) so every path matters in the FD. */
function boost(w: RwkvWeights): RwkvWeights {
  for (const b of w.blocks) {
    for (const k of ["r_k", "w2", "a2", "v2"] as const) b[k]?.forEach((x, i, a) => (a[i] = 5 * x));
  }
  return w;
}

const f64 = (a: ArrayLike<number>) => a as unknown as Float64Array;

Deno.test("linearBackward and matmulBackward match FD", () => {
  const T = 3, I = 5, O = 4;
  const x = rand(T * I), W = rand(O * I), M = rand(I * O), R = rand(T * O);
  const fl = () => dot(linear(x, W, T, I, O), R);
  const gl = linearBackward(R, x, W, T, I, O, true);
  check("linear dx", gl.dx, fl, x);
  check("linear dW", gl.dW!, fl, W);
  const fm = () => dot(matmul(x, M, T, I, O), R);
  const gm = matmulBackward(R, x, M, T, I, O, true);
  check("matmul dx", gm.dx, fm, x);
  check("matmul dM", gm.dM!, fm, M);
  report("linear/matmul");
});

Deno.test("layerNormBackward and groupNormBackward match FD", () => {
  const T = 3, H = 2, N = 5, C = H * N;
  const x = rand(T * C, -2, 2), w = rand(C, 0.5, 1.5), b = rand(C), R = rand(T * C);
  const fg = () => dot(groupNorm(x, w, b, T, H, N, N * 1e-5), R);
  const gg = groupNormBackward(R, x, w, T, H, N, N * 1e-5, true);
  check("groupNorm dx", gg.dx, fg, x);
  check("groupNorm dw", gg.dw!, fg, w);
  check("groupNorm db", gg.db!, fg, b);
  const fl = () => dot(layerNorm(x, w, b, T, C), R);
  const gl = layerNormBackward(R, x, w, T, C, 1e-5, true);
  check("layerNorm dx", gl.dx, fl, x);
  check("layerNorm dw", gl.dw!, fl, w);
  check("layerNorm db", gl.db!, fl, b);
  report("norms");
});

Deno.test("wkvBackward matches FD, including dS0 and the final-state gradient", () => {
  const T = 5, H = 2, N = 4, C = H * N;
  const inp = {
    r: rand(T * C),
    d: rand(T * C, 0.55, 1),
    k: rand(T * C),
    v: rand(T * C),
    alpha: rand(T * C),
    beta: rand(T * C),
  };
  const s0 = rand(H * N * N), Ry = rand(T * C), RS = rand(H * N * N);
  const f = () => {
    const { y, state } = wkvForward(inp, s0, T, H, N);
    return dot(y, Ry) + dot(state, RS);
  };
  const g = wkvBackward(inp, s0, Ry, T, H, N, RS);
  check("wkv dr", g.dr, f, inp.r);
  check("wkv dd", g.dd, f, inp.d);
  check("wkv dk", g.dk, f, inp.k);
  check("wkv dv", g.dv, f, inp.v);
  check("wkv dalpha", g.dalpha, f, inp.alpha);
  check("wkv dbeta", g.dbeta, f, inp.beta);
  check("wkv dS0", g.dS0, f, s0);
  // T = 1 and no final-state gradient
  const f1 = () => dot(wkvForward(inp, s0, 1, H, N).y, Ry);
  check("wkv T=1 dS0", wkvBackward(inp, s0, Ry, 1, H, N).dS0, f1, s0);
  report("wkv");
});

const opCfg = tinyConfig({ nEmbd: 16, headSize: 8, dimW: 4, dimA: 4, dimV: 4, dimG: 6 });

for (const layer of [0, 1]) {
  Deno.test(`timeMixBackward (layer ${layer}) matches FD on every input and weight`, () => {
    const { nHead: H, headSize: N, nEmbd: C } = opCfg;
    const T = 4;
    const dims = { T, H, N, dimW: opCfg.dimW, dimA: opCfg.dimA, dimV: opCfg.dimV, dimG: 6 };
    const w = boost(f64Weights(randomWeights(opCfg, 7))).blocks[layer];
    const x = rand(T * C, -2, 2), shift = rand(C, -2, 2), s0 = rand(H * N * N);
    const vFirst = layer ? rand(T * C) : undefined;
    const R = rand(T * C), RS = rand(H * N * N), RSh = rand(C), RV = rand(T * C);
    const f = () => {
      const o = timeMixForward(w, x, shift, s0, vFirst, dims);
      return dot(o.out, R) + dot(o.state, RS) + dot(o.shift, RSh) + (layer ? 0 : dot(o.vFirst, RV));
    };
    const { cache } = timeMixForward(w, x, shift, s0, vFirst, dims);
    const g = timeMixBackward(w, cache, R, dims, {
      dState: RS,
      dShiftOut: RSh,
      dvFirst: layer ? undefined : RV,
      weightGrads: true,
    });
    check("timeMix dx", g.dx, f, x);
    check("timeMix dShift", g.dShift, f, shift);
    check("timeMix dS0", g.dS0, f, s0);
    if (vFirst) check("timeMix dvFirst", g.dvFirst!, f, vFirst);
    for (const [k, dw] of Object.entries(g.dWeights!)) {
      const arr = f64(w[k as keyof LayerWeights]!);
      if (!layer && k.startsWith("v")) continue; // v0/v1/v2 are absent in layer 0
      checkDir(`timeMix d${k}`, dw, f, arr);
      check(`timeMix d${k}`, dw, f, arr, pickBig(dw, 4));
    }
    report(`timeMix layer ${layer}`);
  });
}

Deno.test("channelMixBackward matches FD on every input and weight", () => {
  const { nEmbd: C, dimFfn: F } = opCfg;
  const T = 4;
  const w = f64Weights(randomWeights(opCfg, 8)).blocks[1];
  const x = rand(T * C, -2, 2), shift = rand(C, -2, 2), R = rand(T * C), RSh = rand(C);
  const f = () => {
    const o = channelMixForward(w, x, shift, T, C, F);
    return dot(o.out, R) + dot(o.shift, RSh);
  };
  const { cache } = channelMixForward(w, x, shift, T, C, F);
  const g = channelMixBackward(w, cache, R, T, C, F, { dShiftOut: RSh, weightGrads: true });
  check("channelMix dx", g.dx, f, x);
  check("channelMix dShift", g.dShift, f, shift);
  for (const [k, dw] of Object.entries(g.dWeights!)) {
    checkDir(`channelMix d${k}`, dw, f, f64(w[k as keyof LayerWeights]!));
  }
  report("channelMix");
});

Deno.test("crossEntropy gradient matches FD; L2Wrap adds max·1e-4/count at the argmax", () => {
  const T = 4, V = 7, targets = [3, 0, 6, 2], mask = [1, 0, 1, 1];
  const logits = rand(T * V, -3, 3);
  const ce = crossEntropy(logits, targets, T, V, mask);
  check("CE dlogits", ce.dLogits, () => crossEntropy(logits, targets, T, V, mask).sum / 3, logits);
  // L2Wrap's gradient is that of 1e-4/count · Σ_counted ½ max_t²
  const wrapped = crossEntropy(logits, targets, T, V, mask, { l2wrap: true });
  const f = () => {
    let s = crossEntropy(logits, targets, T, V, mask).sum / 3;
    for (let t = 0; t < T; t++) {
      if (mask[t]) {
        s += (L2WRAP_COEF / 3) * 0.5 * Math.max(...logits.subarray(t * V, (t + 1) * V)) ** 2;
      }
    }
    return s;
  };
  check("CE+L2Wrap dlogits", wrapped.dLogits, f, logits);
  assert(wrapped.sum === ce.sum, "L2Wrap must not change the loss value");
  report("crossEntropy");
});

// ---- whole model ----

const modelCfg = tinyConfig({ nLayer: 2, nEmbd: 64, headSize: 32, vocabSize: 50 });
const model = boost(f64Weights(randomWeights(modelCfg, 11)));

function randomState(): RefLayerState64[] {
  const { nEmbd: C, nHead: H, headSize: N } = modelCfg;
  return Array.from({ length: modelCfg.nLayer }, () => ({
    att: rand(C, -1.5, 1.5),
    wkv: rand(H * N * N, -0.5, 0.5),
    ffn: rand(C, -1.5, 1.5),
  }));
}

function modelLoss(tokens: number[], targets: number[], mask: number[], state: RefLayerState64[]) {
  const { logits } = refForward(model, tokens, state);
  const ce = crossEntropy(logits, targets, tokens.length, modelCfg.vocabSize, mask);
  return ce.sum / ce.count;
}

Deno.test("refLossAndGrad: dL/dS0, shift and weight gradients match FD (L2, H2, N32)", () => {
  const tokens = [3, 17, 42, 8, 8, 29], targets = [17, 42, 8, 8, 29, 1], mask = [0, 1, 1, 0, 1, 1];
  const state = randomState();
  const g = refLossAndGrad(model, tokens, targets, mask, state, { weightGrads: true });
  const f = () => modelLoss(tokens, targets, mask, state);
  assert(Math.abs(g.loss - f()) < 1e-12, "loss value");
  g.dState.forEach((ds, l) => {
    check(`model dS0[${l}]`, ds.wkv, f, state[l].wkv, pickBig(ds.wkv, 16));
    checkDir(`model dS0[${l}]`, ds.wkv, f, state[l].wkv);
    check(`model dShiftAtt[${l}]`, ds.att, f, state[l].att, pickBig(ds.att, 12));
    checkDir(`model dShiftAtt[${l}]`, ds.att, f, state[l].att);
    check(`model dShiftFfn[${l}]`, ds.ffn, f, state[l].ffn, pickBig(ds.ffn, 12));
    checkDir(`model dShiftFfn[${l}]`, ds.ffn, f, state[l].ffn);
  });
  const dw = g.dWeights!;
  for (const k of ["emb", "ln0_w", "ln0_b", "ln_out_w", "ln_out_b", "head"] as const) {
    checkDir(`model d${k}`, dw[k], f, f64(model[k]));
    check(`model d${k}`, dw[k], f, f64(model[k]), pickBig(dw[k], 3));
  }
  dw.blocks.forEach((b, l) => {
    for (const [k, gk] of Object.entries(b)) {
      if (gk === undefined) continue;
      const arr = f64(model.blocks[l][k as keyof LayerWeights]!);
      checkDir(`model blocks[${l}].d${k}`, gk, f, arr);
      check(`model blocks[${l}].d${k}`, gk, f, arr, pickBig(gk, 1));
    }
  });
  report("model");
});

Deno.test("refLossAndGrad: T = 1, zero state, L2Wrap, batch", () => {
  const zero = randomState().map((s) => ({
    att: s.att.fill(0),
    wkv: s.wkv.fill(0),
    ffn: s.ffn.fill(0),
  }));
  const g1 = refLossAndGrad(model, [5], [9], undefined, zero);
  const f1 = () => modelLoss([5], [9], [1], zero);
  g1.dState.forEach((ds, l) => {
    // From a zero state at T = 1 the GroupNorm input has a small variance: the loss curves
    // strongly in S0, so FD takes a smaller step (1e-5).
    check(`T=1 dS0[${l}]`, ds.wkv, f1, zero[l].wkv, pickBig(ds.wkv, 12), 1e-5);
    checkDir(`T=1 dS0[${l}]`, ds.wkv, f1, zero[l].wkv, 1e-5);
    check(`T=1 dShiftAtt[${l}]`, ds.att, f1, zero[l].att, pickBig(ds.att, 12), 1e-5);
  });
  // batch = mean over all counted tokens; L2Wrap leaves the loss unchanged
  const state = randomState();
  const a = { tokens: [1, 2, 3, 4], targets: [2, 3, 4, 5], mask: [0, 1, 1, 1] };
  const b = { tokens: [7, 8], targets: [8, 9] };
  const gb = refBatchLossAndGrad(model, [a, b], state);
  const fb = () =>
    (3 * modelLoss(a.tokens, a.targets, a.mask, state) +
      2 * modelLoss(b.tokens, b.targets, [1, 1], state)) / 5;
  assert(Math.abs(gb.loss - fb()) < 1e-12 && gb.count === 5, "batch loss");
  gb.dState.forEach((ds, l) => checkDir(`batch dS0[${l}]`, ds.wkv, fb, state[l].wkv));
  // L2Wrap: the gradient of loss + 1e-4/count · Σ_counted ½ max_t(logits)²; loss unchanged
  const gw = refBatchLossAndGrad(model, [a, b], state, { l2wrap: true });
  assert(gw.loss === gb.loss, "L2Wrap must not change the loss");
  const wrap = (s: { tokens: number[]; mask?: number[] }) => {
    const { logits } = refForward(model, s.tokens, state);
    let sum = 0;
    s.tokens.forEach((_, t) => {
      if (s.mask && !s.mask[t]) return;
      const m = Math.max(...logits.subarray(t * modelCfg.vocabSize, (t + 1) * modelCfg.vocabSize));
      sum += (L2WRAP_COEF / 5) * 0.5 * m * m;
    });
    return sum;
  };
  const fw = () => fb() + wrap(a) + wrap(b);
  gw.dState.forEach((ds, l) => checkDir(`batch+L2Wrap dS0[${l}]`, ds.wkv, fw, state[l].wkv));
  report("T=1/batch");
});

Deno.test("refBackward chains chunks: dFinalState carries the gradient across a split", () => {
  const V = modelCfg.vocabSize, state = randomState();
  const tokens = [4, 9, 16, 25, 36, 49, 0], targets = [9, 16, 25, 36, 49, 0, 1];
  const mask = [1, 0, 1, 1, 0, 1, 1];
  const whole = refLossAndGrad(model, tokens, targets, mask, state);
  const chunk = (lo: number, hi: number, s: RefLayerState64[]) => {
    const fwd = refForward(model, tokens.slice(lo, hi), s, { keepCache: true });
    const ce = crossEntropy(fwd.logits, targets.slice(lo, hi), hi - lo, V, mask.slice(lo, hi), {
      denominator: 5,
    });
    return { fwd, ce };
  };
  const A = chunk(0, 4, state), B = chunk(4, 7, A.fwd.state64);
  const gB = refBackward(model, B.fwd.cache!, B.ce.dLogits);
  const gA = refBackward(model, A.fwd.cache!, A.ce.dLogits, { dFinalState: gB.dState });
  assert(Math.abs((A.ce.sum + B.ce.sum) / 5 - whole.loss) < 1e-12, "chunked loss");
  whole.dState.forEach((ds, l) => {
    for (const k of ["wkv", "att", "ffn"] as const) {
      const e = errRatio(gA.dState[l][k], ds[k]);
      assert(e < 1e-12, `layer ${l} ${k}: chunked vs whole errRatio ${e}`);
    }
  });
});

Deno.test({
  name: "fixture model: dL/dS0 is finite and FD-consistent in layers 0 and 11",
  ignore: !hasFixtures,
  fn: async () => {
    const { weights } = await loadModel(fixture("models/tiny-rwkv7-834K.safetensors"));
    const bytes = [...new TextEncoder().encode("The quick brown fox jumps.")];
    const tokens = bytes.slice(0, -1), targets = bytes.slice(1);
    const mask = tokens.map((_, t) => (t >= 10 ? 1 : 0));
    const { nHead: H, headSize: N, nEmbd: C, nLayer: L } = weights.config;
    const state = Array.from({ length: L }, () => ({
      att: new Float64Array(C),
      wkv: new Float64Array(H * N * N),
      ffn: new Float64Array(C),
    }));
    const t0 = performance.now();
    const g = refLossAndGrad(weights, tokens, targets, mask, state);
    const ms = performance.now() - t0;
    const f = () => {
      const ce = crossEntropy(
        refForward(weights, tokens, state).logits,
        targets,
        tokens.length,
        256,
        mask,
      );
      return ce.sum / ce.count;
    };
    for (const ds of g.dState) assert(ds.wkv.every(Number.isFinite), "dS0 not finite");
    // The fixture's dL/dS0 entries are small (~1e-6 … 1e-4), so FD uses a larger step (1e-3).
    for (const l of [0, L - 1]) {
      const gl = g.dState[l].wkv;
      check(`fixture dS0[${l}]`, gl, f, state[l].wkv, pickBig(gl, 2), 1e-3);
      checkDir(`fixture dS0[${l}]`, gl, f, state[l].wkv, 1e-3);
    }
    report(`fixture (T=${tokens.length}, loss+grad ${ms.toFixed(0)} ms)`);
  },
});
