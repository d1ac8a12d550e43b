import { assert, assertAlmostEquals, assertEquals, assertThrows } from "@std/assert";
import {
  areaUnderCurve,
  bootstrapInterval,
  formatDifference,
  mcnemarExact,
  meanInterval,
  pairedDifference,
  stepsToTarget,
  tCdf,
  tQuantile,
} from "../lib/util/stats.ts";
import { meanStderr as evalMeanStderr } from "../lib/eval/metrics.ts";

// reference values: scipy.stats 1.x (t.ppf, t.cdf, ttest_rel)
Deno.test("tQuantile matches scipy's t.ppf", () => {
  const cases: [number, number, number][] = [
    [0.975, 1, 12.70620474],
    [0.975, 2, 4.30265273],
    [0.975, 4, 2.77644511],
    [0.975, 10, 2.22813885],
    [0.975, 30, 2.04227246],
    [0.995, 3, 5.840909309733355],
    [0.975, 200, 1.9718962236339088],
  ];
  for (const [p, df, want] of cases) assertAlmostEquals(tQuantile(p, df), want, 1e-7);
  assertAlmostEquals(tQuantile(0.025, 4), -2.77644511, 1e-7);
  assertEquals(tQuantile(0.5, 7), 0);
  assertThrows(() => tQuantile(1, 3), RangeError, "p = 1");
  assertThrows(() => tQuantile(0.9, 0), RangeError, "degrees of freedom 0");
});

Deno.test("tCdf matches scipy's t.cdf", () => {
  assertAlmostEquals(tCdf(2, 5), 0.9490302605850708, 1e-12);
  assertAlmostEquals(tCdf(-1.5, 3), 0.11529193262241147, 1e-12);
  assertAlmostEquals(tCdf(0.5, 1), 0.6475836176504333, 1e-12);
  assertAlmostEquals(tCdf(-3.1, 2), 0.04510036506509436, 1e-12);
  assertAlmostEquals(tCdf(1.0, 0.5), 0.698878389158678, 1e-10);
  assertEquals(tCdf(0, 9), 0.5);
  for (const df of [1, 3, 12]) {
    for (const p of [0.6, 0.9, 0.99]) assertAlmostEquals(tCdf(tQuantile(p, df), df), p, 1e-10);
  }
});

Deno.test("meanInterval: t interval over seeds", () => {
  const r = meanInterval([1, 2, 3, 4, 5]);
  assertEquals(r.mean, 3);
  assertAlmostEquals(r.sd, Math.sqrt(2.5), 1e-12);
  assertAlmostEquals(r.lo, 3 - 2.77644511 * Math.sqrt(0.5), 1e-7);
  assertAlmostEquals(r.hi, 3 + 2.77644511 * Math.sqrt(0.5), 1e-7);
  const one = meanInterval([0.4]);
  assert(Number.isNaN(one.lo) && one.mean === 0.4);
  // the same stderr as the evaluation harness's (one module)
  assertAlmostEquals(evalMeanStderr([1, 2, 3, 4, 5]).stderr, Math.sqrt(0.5), 1e-12);
});

Deno.test("pairedDifference matches scipy's ttest_rel and its interval", () => {
  const a = [0.62, 0.55, 0.71, 0.60, 0.66], b = [0.50, 0.52, 0.58, 0.49, 0.61];
  const d = pairedDifference(a, b);
  assertAlmostEquals(d.p, 0.011891951970527942, 1e-9);
  assertAlmostEquals(d.lo, 0.032194144047784576, 1e-9);
  assertAlmostEquals(d.hi, 0.14380585595221546, 1e-9);
  assert(d.significant);
  assert(formatDifference(d, 1, 100).startsWith("+8.8 [+3.2, +14.4], p = 0.012"));
  const six = pairedDifference([1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 0, 1.5]);
  assertAlmostEquals(six.p, 0.003567754691277745, 1e-9);
  assertAlmostEquals(six.t, 5.165676192553671, 1e-9);
  // interval covers 0: no significant difference
  const none = pairedDifference([0.5, 0.52, 0.49], [0.51, 0.5, 0.5]);
  assertAlmostEquals(none.p, 1, 1e-9);
  assert(!none.significant);
  assert(formatDifference(none).endsWith("(no significant difference)"));
  assertThrows(() => pairedDifference([1, 2], [1]), RangeError, "pair them by seed");
  const flat = pairedDifference([2, 2, 2], [1, 1, 1]);
  assertEquals([flat.p, flat.significant], [0, true]);
});

Deno.test("bootstrapInterval: seeded, brackets the mean, close to the t interval for many items", () => {
  const xs = Array.from({ length: 400 }, (_, i) => (i % 10 < 3 ? 1 : 0));
  const a = bootstrapInterval(xs, { seed: 3 }), b = bootstrapInterval(xs, { seed: 3 });
  assertEquals(a, b);
  assertAlmostEquals(a.mean, 0.3, 1e-12);
  const t = meanInterval(xs);
  assert(a.lo < 0.3 && a.hi > 0.3);
  assertAlmostEquals(a.lo, t.lo, 0.01);
  assertAlmostEquals(a.hi, t.hi, 0.01);
});

Deno.test("mcnemarExact: exact binomial p", () => {
  const r = mcnemarExact([1, 1, 1, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0, 0]);
  assertEquals([r.aOnly, r.bOnly], [6, 0]);
  assertAlmostEquals(r.p, 2 / 64, 1e-12);
  // 2 vs 8 discordant: 2 · P(X ≤ 2 | n = 10) = 2 · 56/1024
  const a = [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1], b = [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1];
  assertAlmostEquals(mcnemarExact(a, b).p, 112 / 1024, 1e-12);
});

Deno.test("stepsToTarget and areaUnderCurve", () => {
  const steps = [1, 2, 3, 4, 5, 6], loss = [4, 3, 1.9, 2.1, 1.5, 1.0];
  assertEquals(stepsToTarget(steps, loss, 2), 3);
  // trailing means over 2: 3.5, 2.45, 2.0 (step 4)
  assertEquals(stepsToTarget(steps, loss, 2, 2), 4);
  assertEquals(stepsToTarget(steps, loss, 1.8, 2), 5); // (2.1 + 1.5) / 2
  assertEquals(stepsToTarget(steps, loss, 0.5), null);
  assertAlmostEquals(areaUnderCurve([0, 1, 3], [2, 1, 0]), (1.5 + 1) / 3, 1e-12);
  assertEquals(areaUnderCurve([5], [0.7]), 0.7);
});
