/**
 * Decorrelated backpropagation (docs/MATH.md §6) and the set-up of the lifted state: the R update drives
 * the decorrelation loss down and, with κ = 1, diag(C) to 1; support selection, the median
 * heuristic, the Jacobi eigendecomposition and Nyström whitening; option validation.
 *
 * @module
 */
import { assert, assertEquals, assertThrows } from "@std/assert";
import { assertClose, Rng as TestRng } from "./_helpers.ts";
import { Rng } from "../lib/util/rng.ts";
import { randomWeights, tinyConfig } from "../lib/model/random.ts";
import {
  dbpHeadStep,
  dbpLayerStep,
  decorrelationLoss,
  featureCovariance,
  stepFeatures,
} from "../lib/parts/dbp.ts";
import {
  collectHeadVectors,
  gaussianKernelMatrix,
  initLiftedLayers,
  kmeansPlusPlus,
  medianGamma,
  nystromWhitening,
  randomSupport,
  symmetricEigen,
} from "../lib/parts/support.ts";
import { DbpConfigSchema, LiftedConfigSchema } from "../lib/parts/config.ts";

const rng = new TestRng(4242);

/** n rows of M correlated features: φ = A g with g ~ N(0, I) and A = I + noise/√M. */
function correlatedFeatures(n: number, M: number): Float64Array {
  const A = Float64Array.from({ length: M * M }, () => rng.normal() / Math.sqrt(M));
  for (let i = 0; i < M; i++) A[i * M + i] += 1;
  const phi = new Float64Array(n * M), g = new Float64Array(M);
  for (let t = 0; t < n; t++) {
    for (let j = 0; j < M; j++) g[j] = rng.normal();
    for (let i = 0; i < M; i++) {
      let s = 0;
      for (let j = 0; j < M; j++) s += A[i * M + j] * g[j];
      phi[t * M + i] = s;
    }
  }
  return phi;
}

const eye = (M: number) => {
  const R = new Float64Array(M * M);
  for (let i = 0; i < M; i++) R[i * M + i] = 1;
  return R;
};

/** Run `steps` DBP updates from R = I; returns the losses and the final C. */
function runDbp(phi: Float64Array, n: number, M: number, lr: number, kappa: number, steps: number) {
  let R: Float64Array = eye(M);
  const losses: number[] = [];
  for (let s = 0; s < steps; s++) {
    const st = dbpHeadStep(R, phi, n, M, lr, kappa);
    losses.push(st.loss);
    R = st.R;
  }
  return { losses, C: featureCovariance(R, phi, n, M) };
}

const M = 16, n = 1000;
const phi = correlatedFeatures(n, M);

Deno.test("DBP (η 1e-3, κ 0.5): the decorrelation loss falls monotonically over 200 steps", () => {
  const { losses } = runDbp(phi, n, M, 1e-3, 0.5, 200);
  for (let s = 1; s < losses.length; s++) {
    assert(losses[s] <= losses[s - 1], `loss rose at step ${s}: ${losses[s - 1]} → ${losses[s]}`);
  }
  const ratio = losses.at(-1)! / losses[0];
  console.log(`η 1e-3, κ 0.5: ${losses[0].toExponential(3)} → ${losses.at(-1)!.toExponential(3)}`);
  assert(ratio < 0.5, `the loss fell only to ${ratio} of its start`);
});

Deno.test("DBP κ = 0 decorrelates (loss ÷ > 100), κ = 1 whitens the diagonal (diag(C) → 1)", () => {
  const dec = runDbp(phi, n, M, 1e-2, 0, 200);
  const ratio = dec.losses.at(-1)! / dec.losses[0];
  console.log(`η 1e-2, κ 0: loss ratio after 200 steps ${ratio.toExponential(2)}`);
  assert(ratio < 1e-2, `κ = 0: loss ratio ${ratio}`);
  const wh = runDbp(phi, n, M, 2e-2, 1, 300);
  let worst = 0;
  for (let i = 0; i < M; i++) worst = Math.max(worst, Math.abs(wh.C[i * M + i] - 1));
  console.log(`η 2e-2, κ 1: max |diag(C) − 1| after 300 steps ${worst.toExponential(2)}`);
  assert(worst < 1e-3, `κ = 1: max |diag(C) − 1| = ${worst}`);
  // κ = 1 only rescales rows: the correlation coefficients are unchanged
  const C0 = featureCovariance(eye(M), phi, n, M);
  const corr = (C: Float64Array, i: number, j: number) =>
    C[i * M + j] / Math.sqrt(C[i * M + i] * C[j * M + j]);
  assert(Math.abs(corr(wh.C, 0, 1) - corr(C0, 0, 1)) < 1e-9, "κ = 1 changed a correlation");
});

Deno.test("decorrelationLoss = ‖offdiag(C)‖²/M²; C = E[z zᵀ] with z = R φ", () => {
  const m = 3, R = Float64Array.from({ length: 9 }, () => rng.normal());
  const p = correlatedFeatures(50, m);
  const C = featureCovariance(R, p, 50, m);
  const z = (t: number, i: number) =>
    R[i * 3] * p[t * 3] + R[i * 3 + 1] * p[t * 3 + 1] + R[i * 3 + 2] * p[t * 3 + 2];
  let c01 = 0;
  for (let t = 0; t < 50; t++) c01 += z(t, 0) * z(t, 1) / 50;
  assert(Math.abs(C[1] - c01) < 1e-12 && C[1] === C[3], "C[0,1]");
  const want = (2 * (C[1] ** 2 + C[2] ** 2 + C[5] ** 2)) / 9;
  assert(Math.abs(decorrelationLoss(C, m) - want) < 1e-15, "loss");
});

// ---- on a lifted layer ----

const cfg = tinyConfig({ nLayer: 2, nEmbd: 16, headSize: 8, vocabSize: 40 });
const weights = randomWeights(cfg, 3);
const calib = [0, 1, 2, 3].map((s) => Array.from({ length: 20 }, (_, t) => (5 * t + 11 * s) % 40));

Deno.test("dbpLayerStep on a lifted layer: R moves, the loss falls; disabled leaves R fixed", () => {
  const { nHead: H, headSize: N } = cfg;
  const lifted = initLiftedLayers(weights, calib, LiftedConfigSchema.parse({ featureRatio: 2 }));
  const s = lifted[1]!;
  const kk = collectHeadVectors(weights, calib.slice(0, 2), { layers: [1] })[1]!;
  const rv = collectHeadVectors(weights, calib.slice(0, 2), { layers: [1], kind: "r" })[1]!;
  // rebuild (T, H·N) layouts of the step's vectors from the per-head rows
  const T = 40, C = H * N;
  const interleave = (per: Float64Array[]) => {
    const out = new Float64Array(T * C);
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < H; h++) out.set(per[h].subarray(t * N, (t + 1) * N), t * C + h * N);
    }
    return out;
  };
  const vectors = [{ kk: interleave(kk), r: interleave(rv) }];
  assertEquals(stepFeatures(s, 0, H, N, vectors, 0).n, 2 * T);
  assertEquals(stepFeatures(s, 0, H, N, vectors, 25, new Rng(1)).n, 25);
  const off = dbpLayerStep(s, H, N, vectors, DbpConfigSchema.parse({ enabled: false }));
  assertEquals(Array.from(off.R), Array.from(s.R), "DBP off must leave R fixed");
  // Gaussian features in (0, 1] have diag(C) ≈ 0.05–0.2, so DBP with κ > 0 also scales them up:
  // ‖offdiag(C)‖²/M² then need not fall, while the correlation coefficients do. From R = I at
  // η 1e-2 both fall; from the Nyström R (diag(C) ≈ 0.03) only the scale-free one does.
  const run = (start: typeof s, steps: number, both: boolean) => {
    let st = start;
    const raw: number[] = [], corr: number[] = [];
    for (let step = 0; step < steps; step++) {
      const r = dbpLayerStep(st, H, N, vectors, DbpConfigSchema.parse({ lr: 1e-2 }));
      if (step > 0) {
        assert(r.meanCorrLoss <= corr.at(-1)!, `correlation loss rose at step ${step}`);
        if (both) assert(r.meanLoss <= raw.at(-1)!, `loss rose at step ${step}`);
      }
      raw.push(r.meanLoss);
      corr.push(r.meanCorrLoss);
      st = { ...st, R: r.R };
    }
    const e = (x: number) => x.toExponential(2);
    console.log(
      `lifted layer DBP (η 1e-2, κ 0.5, ${steps} steps): ‖offdiag C‖²/M² ${e(raw[0])} → ` +
        `${e(raw.at(-1)!)}, correlation loss ${e(corr[0])} → ${e(corr.at(-1)!)}`,
    );
    return { raw, corr };
  };
  const fromI = run(s, 100, true);
  assert(fromI.raw.at(-1)! < 0.7 * fromI.raw[0] && fromI.corr.at(-1)! < 0.7 * fromI.corr[0]);
  const ny = initLiftedLayers(
    weights,
    calib,
    LiftedConfigSchema.parse({ featureRatio: 2, rInit: "nystrom" }),
  );
  const fromNy = run(ny[1]!, 30, false);
  assert(fromNy.corr.at(-1)! < fromNy.corr[0]);
  // sampled steps are seeded and deterministic
  const c2 = DbpConfigSchema.parse({ sample: 30, seed: 9 });
  assertEquals(
    Array.from(dbpLayerStep(s, H, N, vectors, c2).R),
    Array.from(dbpLayerStep(s, H, N, vectors, c2).R),
  );
});

// ---- support vectors, γ, Nyström ----

Deno.test("kmeansPlusPlus finds one centre per well-separated cluster; randomSupport samples rows", () => {
  const centres = [[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10]];
  const count = 200, N = 3, x = new Float64Array(count * N);
  for (let i = 0; i < count; i++) {
    for (let k = 0; k < N; k++) x[i * N + k] = centres[i % 4][k] + 0.3 * rng.normal();
  }
  const c = kmeansPlusPlus(x, count, N, 4, new Rng(7), 5);
  for (const t of centres) {
    const best = Math.min(
      ...[0, 1, 2, 3].map((m) => Math.hypot(...t.map((v, k) => v - c[m * N + k]))),
    );
    assert(best < 0.2, `no centre near ${t}: closest at ${best}`);
  }
  assertEquals(Array.from(kmeansPlusPlus(x, count, N, 4, new Rng(7), 5)), Array.from(c), "seeded");
  const r = randomSupport(x, count, N, 10, new Rng(3));
  const rows = new Set<string>();
  for (let m = 0; m < 10; m++) {
    const row = Array.from(r.subarray(m * N, (m + 1) * N));
    let found = false;
    for (let i = 0; i < count && !found; i++) found = row.every((v, k) => v === x[i * N + k]);
    assert(found, `random support row ${m} is not a calibration vector`);
    rows.add(row.join());
  }
  assertEquals(rows.size, 10, "distinct rows");
  assertThrows(() => kmeansPlusPlus(x, 3, N, 4, new Rng(0)), RangeError, "calibration vectors");
});

Deno.test("medianGamma: 1/median of squared pairwise distances; sampled pairs come close", () => {
  assertEquals(medianGamma(Float64Array.of(0, 1, 3), 3, 1, 100, new Rng(0)), 1 / 4);
  // d² = 1, 4, 9, 9, 25, 36: the median of an even count is the mean of the middle two
  assertEquals(medianGamma(Float64Array.of(0, 1, 3, 6), 4, 1, 100, new Rng(0)), 1 / 9);
  const N = 5, count = 400, x = Float64Array.from({ length: count * N }, () => rng.normal());
  const all = medianGamma(x, count, N, 1e9, new Rng(0)),
    some = medianGamma(x, count, N, 5000, new Rng(0));
  assert(Math.abs(some / all - 1) < 0.05, `sampled γ ${some} vs exact ${all}`);
  assertThrows(
    () => medianGamma(new Float64Array(6), 3, 2, 10, new Rng(0)),
    RangeError,
    "coincide",
  );
});

Deno.test("symmetricEigen reconstructs A; Nyström R satisfies R (K + ridge·I) R = I", () => {
  const n = 12, B = Float64Array.from({ length: n * n }, () => rng.normal());
  const A = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) A[i * n + j] = B[i * n + j] + B[j * n + i];
  }
  const { values, vectors: V } = symmetricEigen(A, n);
  const rec = new Float64Array(n * n), vtv = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      for (let k = 0; k < n; k++) {
        rec[i * n + j] += V[i * n + k] * values[k] * V[j * n + k];
        vtv[i * n + j] += V[k * n + i] * V[k * n + j];
      }
    }
  }
  assertClose(rec, A, { maxAbs: 1e-10 }, "V Λ Vᵀ");
  assertClose(vtv, eye(n), { maxAbs: 1e-12 }, "Vᵀ V");
  const Mn = 10, N = 4, c = Float64Array.from({ length: Mn * N }, () => rng.normal());
  for (const ridge of [0, 1e-3]) {
    const R = nystromWhitening(c, Mn, N, 0.5, ridge);
    const K = gaussianKernelMatrix(c, Mn, N, 0.5);
    for (let i = 0; i < Mn; i++) K[i * Mn + i] += ridge;
    const RKR = new Float64Array(Mn * Mn);
    for (let i = 0; i < Mn; i++) {
      for (let j = 0; j < Mn; j++) {
        let s = 0;
        for (let a = 0; a < Mn; a++) {
          for (let b = 0; b < Mn; b++) s += R[i * Mn + a] * K[a * Mn + b] * R[b * Mn + j];
        }
        RKR[i * Mn + j] = s;
      }
    }
    assertClose(RKR, eye(Mn), { maxAbs: 1e-8 }, `R K R (ridge ${ridge})`);
  }
});

Deno.test("initLiftedLayers: shapes, chosen layers, identity map; options are validated", () => {
  const { nHead: H, headSize: N, nLayer: L } = cfg;
  const kk = collectHeadVectors(weights, calib);
  assertEquals(kk[0]![0].length, 80 * N);
  for (let i = 0; i < 80; i++) {
    const norm = Math.hypot(...kk[1]![1].subarray(i * N, (i + 1) * N));
    assert(Math.abs(norm - 1) < 1e-12, `kk row ${i} has norm ${norm}`);
  }
  const conf = LiftedConfigSchema.parse({ layers: [1], support: "random", rInit: "nystrom" });
  const lifted = initLiftedLayers(weights, calib, conf);
  assertEquals(lifted.length, L);
  assert(lifted[0] === undefined);
  const s = lifted[1]!;
  assertEquals([s.M, s.s0.length, s.R.length, s.support!.length, s.gamma!.length], [
    4 * N,
    H * N * 4 * N,
    H * 16 * N * N,
    H * 4 * N * N,
    H,
  ]);
  assert(Array.from(s.s0).every((x) => x === 0), "Ŝ0 starts at zero");
  const id = initLiftedLayers(
    weights,
    [],
    LiftedConfigSchema.parse({ featureMap: "identity", featureRatio: 1 }),
  );
  assertEquals(Array.from(id[0]!.R).slice(0, N * N), Array.from(eye(N)));
  assertThrows(() => LiftedConfigSchema.parse({ featureMap: "identity" }), Error, "featureRatio 1");
  assertThrows(() => DbpConfigSchema.parse({ kappa: 2 }), Error, "kappa must be in [0, 1]");
  assertThrows(
    () => initLiftedLayers(weights, calib, LiftedConfigSchema.parse({ layers: [5] })),
    RangeError,
    "does not exist",
  );
});

Deno.test("lifted v2 options and DBP rows: normalised read by default, writes mode measures k", () => {
  const c = LiftedConfigSchema.parse({});
  assertEquals([c.read, c.writes], ["normalised", false]);
  assertThrows(() => LiftedConfigSchema.parse({ read: "unit" }), Error, "read");
  const { nHead: H, headSize: N } = tinyConfig({ nLayer: 1, nEmbd: 16, headSize: 8 });
  const M = 8, C = H * N, T = 3;
  const base = {
    M,
    featureMap: "gaussian" as const,
    headMeans: true,
    s0: new Float64Array(H * N * M),
    R: Float64Array.from({ length: H * M * M }, (_, i) => (i % (M + 1) === 0 ? 1 : 0)),
    support: Float64Array.from({ length: H * M * N }, () => rng.normal()),
    gamma: [0.5, 0.5],
  };
  const v = { kk: rng.f32(T * C), r: rng.f32(T * C), k: rng.f32(T * C) };
  const mem = stepFeatures(base, 0, H, N, [v], 0);
  const wr = stepFeatures({ ...base, writes: true, gate: [0, 0] }, 0, H, N, [v], 0);
  assertEquals([mem.n, wr.n], [2 * T, 3 * T]);
  // the first 2T rows agree; the k rows see k/‖k‖: scaling k leaves them unchanged
  assertEquals(Array.from(wr.phi.subarray(0, 2 * T * M)), Array.from(mem.phi));
  const scaled = { ...v, k: Float64Array.from(v.k, (x) => 3 * x) };
  const wr3 = stepFeatures({ ...base, writes: true }, 0, H, N, [scaled], 0);
  assertClose(wr3.phi, wr.phi, { maxAbs: 1e-12 }, "k rows are length-free");
  assertThrows(
    () => stepFeatures({ ...base, writes: true }, 0, H, N, [{ kk: v.kk, r: v.r }], 0),
    RangeError,
    "needs the k vectors",
  );
});
