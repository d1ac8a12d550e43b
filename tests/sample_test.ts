/**
 * GPU sampling (shaders/sample.wgsl) vs its CPU twin (lib/generate/gpu_sampler_ref.ts), and
 * both vs an independent float64 definition of the filtered distribution.
 *
 * Tolerances: tokens must be equal, except where the reference reports a decision closer than
 * MARGIN (1e-4, relative) to its boundary — the GPU's `exp` may differ from `Math.exp` by a few
 * ULP (WGSL allows 3 + 2|x| ULP), which can flip only such near-ties; a row is not compared
 * further after one. Counts: max |Δ| ≤ 1e-6 (they are ≤ 1/(1 − decay) and updated by one
 * multiply and one add per step). Chi-square: p-value ≥ 1e-3 with a fixed seed.
 */
import {
  assert,
  assertEquals,
  assertNotStrictEquals,
  assertStrictEquals,
  assertThrowsMatch,
} from "@std/assert";
import { createStorage, readF32, readU32, uploadStorage } from "../lib/gpu/buffers.ts";
import { Recorder } from "../lib/gpu/recorder.ts";
import {
  SAMPLE_ERR_ALL_BANNED,
  SAMPLE_ERR_NONFINITE,
  SampleKernel,
  type SampleSettings,
  sampleWorkgroupSize,
} from "../lib/kernels/sample.ts";
import { drawUniform, sampleRowRef } from "../lib/generate/gpu_sampler_ref.ts";
import { gpu, maxAbsDiff, Rng } from "./_helpers.ts";

const ignore = !gpu;
const MARGIN = 1e-4;

const base: SampleSettings = {
  temperature: 1,
  topP: 1,
  topK: 0,
  presencePenalty: 0,
  frequencyPenalty: 0,
  penaltyDecay: 0.996,
  seed: 1,
};

function randomLogits(rng: Rng, n: number, scale: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = scale * rng.normal();
  return a;
}

/** Run `steps` draws of B rows of V logits on the GPU; tokens (steps, B) and final counts. */
async function gpuDraws(
  k: SampleKernel,
  a: { B: number; V: number; limit?: number; logits: Float32Array; counts: Float32Array },
  s: SampleSettings,
  steps: number,
  step0 = 0,
): Promise<{ tokens: Uint32Array; counts: Float32Array }> {
  const { B, V } = a;
  const logits = uploadStorage(gpu!, "test.logits", a.logits);
  const counts = uploadStorage(gpu!, "test.counts", a.counts);
  const probs = createStorage(gpu!, "test.probs", B * V * 4);
  const tokens = createStorage(gpu!, "test.tokens", steps * B * 4);
  const rec = new Recorder(gpu!, "test.sample");
  for (let t = 0; t < steps; t++) {
    k.record(rec, {
      B,
      V,
      limit: a.limit,
      logits,
      probs,
      counts,
      tokens,
      tokOff: t * B,
      step: step0 + t,
      settings: s,
    });
  }
  rec.submit();
  const out = {
    tokens: await readU32(gpu!, tokens, steps * B),
    counts: await readF32(gpu!, counts, B * V),
  };
  for (const b of [logits, counts, probs, tokens]) b.destroy();
  return out;
}

/** The filtered distribution in float64, by sorting (independent of the radix search). */
function filtered(
  logits: ArrayLike<number>,
  counts: ArrayLike<number>,
  s: SampleSettings,
  limit = logits.length,
): Map<number, number> {
  const x: [number, number][] = [];
  for (let i = 0; i < limit; i++) {
    if (logits[i] === -Infinity) continue;
    const c = counts[i];
    x.push([i, c > 0 ? logits[i] - (s.presencePenalty + c * s.frequencyPenalty) : logits[i]]);
  }
  const M = Math.max(...x.map(([, v]) => v));
  let p = x.map((
    [i, v],
  ) => [i, (v - M) / s.temperature >= -87 ? Math.exp((v - M) / s.temperature) : 0])
    .filter(([, q]) => q > 0).sort((a, b) => b[1] - a[1]);
  const cutAt = (n: number) => {
    while (n < p.length && p[n][1] === p[n - 1][1]) n++;
    return n;
  };
  if (s.topK > 0 && s.topK < p.length) p = p.slice(0, cutAt(s.topK));
  if (s.topP < 1) {
    const target = s.topP * p.reduce((t, [, q]) => t + q, 0);
    let cum = 0, n = 0;
    while (n < p.length && cum < target) cum += p[n++][1];
    p = p.slice(0, cutAt(Math.max(n, 1)));
  }
  const total = p.reduce((t, [, q]) => t + q, 0);
  return new Map(p.map(([i, q]) => [i, q / total]));
}

Deno.test("reference: the radix cutoffs keep exactly the float64 filtered set", () => {
  const rng = new Rng(11);
  let checked = 0;
  for (let c = 0; c < 300; c++) {
    const V = 1 + rng.int(700);
    const s: SampleSettings = {
      ...base,
      temperature: [0.3, 0.8, 1, 2][rng.int(4)],
      topK: [0, 1, 5, 40, 1000][rng.int(5)],
      topP: [1, 0.5, 0.85, 0.99][rng.int(4)],
      seed: rng.int(2 ** 32),
    };
    const logits = randomLogits(rng, V, [0.5, 3, 10][rng.int(3)]);
    if (c % 7 === 0) { for (let i = 0; i < V; i += 3) logits[i] = logits[0]; // exact ties
     }
    const r = sampleRowRef(logits, undefined, s, { step: c, row: 0 });
    const want = filtered(logits, new Float32Array(V), s);
    assert(want.has(r.token) || r.margin < MARGIN, `case ${c}: token ${r.token} filtered out`);
    if (r.margin < MARGIN) continue;
    assertStrictEquals(
      r.kept,
      want.size,
      `case ${c}: kept ${r.kept}, float64 filter keeps ${want.size}`,
    );
    checked++;
  }
  assert(checked > 250, `only ${checked} cases away from a near-tie`);
});

Deno.test(
  { name: "GPU draws equal the reference draws (workgroups of 64 and 256)", ignore },
  async () => {
    const k = await SampleKernel.create(gpu!);
    await drawsMatch(k, { B: 6, steps: 4, minCompared: 180 });
    // The other size; small on llvmpipe, which runs 256-wide workgroups of this kernel slowly.
    const other = await SampleKernel.create(gpu!, k.wg === 256 ? 64 : 256);
    const slow = other.wg === 256 && sampleWorkgroupSize(gpu!) === 64;
    await drawsMatch(
      other,
      slow ? { B: 2, steps: 2, minCompared: 28 } : { B: 6, steps: 4, minCompared: 180 },
    );
  },
);

async function drawsMatch(
  k: SampleKernel,
  size: { B: number; steps: number; minCompared: number },
): Promise<void> {
  const rng = new Rng(5);
  const settings: Partial<SampleSettings>[] = [
    { temperature: 0 },
    { temperature: 0, presencePenalty: 0.5, frequencyPenalty: 0.3 },
    { temperature: 1 },
    { temperature: 0.7, topK: 10 },
    { temperature: 1.3, topP: 0.6 },
    { temperature: 1, topK: 50, topP: 0.9, presencePenalty: 0.2, frequencyPenalty: 0.2 },
    { temperature: 0.5, topK: 1 },
    { temperature: 1, topP: 0.05, penaltyDecay: 0.5, presencePenalty: 1, frequencyPenalty: 1 },
    { temperature: 2, topK: 3, topP: 0.99 }, // the nucleus reaches the top-k cutoff
  ];
  let compared = 0, nearTies = 0;
  for (const [si, o] of settings.entries()) {
    const { B, steps } = size, V = [300, 1000, 257][si % 3];
    const limit = si % 2 ? V - 7 : V;
    const s = { ...base, ...o, seed: rng.int(2 ** 32) };
    const logits = randomLogits(rng, B * V, 3);
    logits[5] = -Infinity; // a banned id
    const counts = new Float32Array(B * V);
    for (let i = 0; i < counts.length; i += 17) counts[i] = rng.uniform(0, 3);
    const got = await gpuDraws(k, { B, V, limit, logits, counts }, s, steps, 100 * si);
    for (let b = 0; b < B; b++) {
      const row = logits.subarray(b * V, (b + 1) * V), cnt = counts.slice(b * V, (b + 1) * V);
      let diverged = false;
      for (let t = 0; t < steps && !diverged; t++) {
        const r = sampleRowRef(row, cnt, s, { step: 100 * si + t, row: b, limit, wg: k.wg });
        const g = got.tokens[t * B + b];
        if (g !== r.token) {
          assert(
            r.margin < MARGIN,
            `settings ${si} row ${b} step ${t}: GPU ${g} vs ref ${r.token} (margin ${r.margin})`,
          );
          nearTies++;
          diverged = true;
        } else compared++;
      }
      if (!diverged) {
        const d = maxAbsDiff(got.counts.subarray(b * V, (b + 1) * V), cnt);
        assert(d <= 1e-6, `settings ${si} row ${b}: counts max|Δ| ${d}`);
      }
    }
  }
  console.log(`WG ${k.wg}: compared ${compared} draws, ${nearTies} near-tie flips`);
  assert(compared >= size.minCompared, `only ${compared} draws compared`);
}

Deno.test({ name: "GPU sampling at V = 65536 equals the reference", ignore }, async () => {
  const k = await SampleKernel.create(gpu!);
  const rng = new Rng(8);
  const V = 65536, limit = 65530;
  const logits = randomLogits(rng, V, 2);
  for (let i = 0; i < 20; i++) logits[rng.int(V)] += 8; // a few likely tokens
  const counts = new Float32Array(V);
  for (let i = 0; i < 40; i++) counts[rng.int(V)] = rng.uniform(0, 2);
  for (
    const o of [{ temperature: 0 }, { topP: 0.85 }, { topK: 100, topP: 0.95, temperature: 0.8 }]
  ) {
    const s = {
      ...base,
      ...o,
      presencePenalty: 0.2,
      frequencyPenalty: 0.2,
      seed: rng.int(2 ** 32),
    };
    const got = await gpuDraws(k, { B: 1, V, limit, logits, counts }, s, 2);
    const cnt = counts.slice();
    for (let t = 0; t < 2; t++) {
      const r = sampleRowRef(logits, cnt, s, { step: t, row: 0, limit, wg: k.wg });
      if (got.tokens[t] !== r.token) {
        assert(
          r.margin < MARGIN,
          `${JSON.stringify(o)} step ${t}: GPU ${got.tokens[t]} vs ref ${r.token}`,
        );
        break;
      }
    }
  }
});

Deno.test({ name: "greedy GPU sampling is the argmax (first id on ties)", ignore }, async () => {
  const k = await SampleKernel.create(gpu!);
  const rng = new Rng(3);
  const B = 5, V = 700;
  const logits = randomLogits(rng, B * V, 1);
  logits[V + 10] = logits[V + 600] = 9; // row 1: a tie between ids 10 and 600
  const got = await gpuDraws(k, { B, V, logits, counts: new Float32Array(B * V) }, {
    ...base,
    temperature: 0,
  }, 1);
  for (let b = 0; b < B; b++) {
    const row = logits.subarray(b * V, (b + 1) * V);
    let best = 0;
    for (let i = 1; i < V; i++) if (row[i] > row[best]) best = i;
    assertStrictEquals(got.tokens[b], best, `row ${b}`);
  }
  assertEquals(got.tokens[1], 10);
});

/** Upper tail of the chi-square distribution (Wilson–Hilferty normal approximation). */
function chiSquarePValue(x: number, dof: number): number {
  const z = (Math.cbrt(x / dof) - (1 - 2 / (9 * dof))) / Math.sqrt(2 / (9 * dof));
  return 0.5 * erfc(z / Math.SQRT2);
}

function erfc(x: number): number { // Numerical Recipes erfcc, |error| < 1.2e-7
  const t = 1 / (1 + 0.5 * Math.abs(x));
  const y = t * Math.exp(
    -x * x - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
                  t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
                                  t * (-0.82215223 + t * 0.17087277)))))))),
  );
  return x >= 0 ? y : 2 - y;
}

Deno.test({ name: "GPU draws follow the filtered softmax (chi-square)", ignore }, async () => {
  const k = await SampleKernel.create(gpu!);
  const rng = new Rng(21);
  const V = 60, B = 3000;
  const row = randomLogits(rng, V, 1.5);
  const logits = new Float32Array(B * V);
  for (let b = 0; b < B; b++) logits.set(row, b * V);
  const s = { ...base, temperature: 0.8, topK: 25, topP: 0.9, seed: 777 };
  const want = filtered(row, new Float32Array(V), s);
  assert(want.size > 5 && want.size < 25, `the filters should bite: ${want.size} kept`);
  const got = await gpuDraws(k, { B, V, logits, counts: new Float32Array(B * V) }, s, 1);
  const hist = new Map<number, number>();
  for (const t of got.tokens) {
    assert(want.has(t), `token ${t} is outside the filtered set`);
    hist.set(t, (hist.get(t) ?? 0) + 1);
  }
  let chi = 0, bins = 0, restE = 0, restO = 0;
  for (const [id, q] of want) {
    const e = q * B, o = hist.get(id) ?? 0;
    if (e < 5) restE += e, restO += o;
    else chi += (o - e) ** 2 / e, bins++;
  }
  if (restE > 0) chi += (restO - restE) ** 2 / restE, bins++;
  const pv = chiSquarePValue(chi, bins - 1);
  console.log(`chi-square ${chi.toFixed(2)} on ${bins - 1} dof, p = ${pv.toFixed(3)}`);
  assert(pv >= 1e-3, `chi-square ${chi} on ${bins - 1} dof: p = ${pv}`);
});

Deno.test("the draw's uniforms are uniform and depend on seed, step and row", () => {
  const n = 20000, bins = new Array(10).fill(0);
  for (let t = 0; t < n; t++) bins[Math.floor(drawUniform(9, t, 0) * 10)]++;
  const chi = bins.reduce((c, o) => c + (o - n / 10) ** 2 / (n / 10), 0);
  assert(chiSquarePValue(chi, 9) >= 1e-3, `uniform chi-square ${chi}`);
  const u = drawUniform(9, 5, 0);
  assertNotStrictEquals(u, drawUniform(10, 5, 0));
  assertNotStrictEquals(u, drawUniform(9, 6, 0));
  assertNotStrictEquals(u, drawUniform(9, 5, 1));
});

Deno.test({ name: "GPU sampling flags broken rows and rejects bad settings", ignore }, async () => {
  const k = await SampleKernel.create(gpu!);
  const V = 40;
  const logits = new Float32Array(3 * V);
  logits[7] = NaN; // row 0
  logits.fill(-Infinity, V, 2 * V); // row 1: everything banned
  const got = await gpuDraws(k, { B: 3, V, logits, counts: new Float32Array(3 * V) }, base, 1);
  assertStrictEquals(got.tokens[0], SAMPLE_ERR_NONFINITE);
  assertStrictEquals(got.tokens[1], SAMPLE_ERR_ALL_BANNED);
  assert(got.tokens[2] < V);
  assertStrictEquals(
    sampleRowRef(logits.subarray(0, V), undefined, base, { step: 0, row: 0 }).token,
    SAMPLE_ERR_NONFINITE,
  );
  const buf = createStorage(gpu!, "test.tiny", 16);
  const rec = new Recorder(gpu!, "test.bad");
  const args = {
    B: 1,
    V: 4,
    logits: buf,
    probs: buf,
    counts: buf,
    tokens: buf,
    tokOff: 0,
    step: 0,
  };
  assertThrowsMatch(
    () => k.record(rec, { ...args, settings: { ...base, topP: 0 } }),
    /topP = 0; expected a number in \(0, 1\]/,
  );
  assertThrowsMatch(() => k.record(rec, { ...args, limit: 5, settings: base }), /limit = 5/);
  assertThrowsMatch(() => k.record(rec, { ...args, V: 8, settings: base }), /logits \(B, V\)/);
  buf.destroy();
});
