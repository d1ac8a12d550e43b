/**
 * LoRA (docs/MATH.md §7) on the CPU: the float64 reference (merge, dA/dB from dW) against central finite
 * differences, of a bilinear test function and of the whole model's loss through every target
 * of every layer (seeded random multi-head model, r = 3, B ≠ 0 so both gradients matter);
 * options, the CLI spec, counts and "equal parameters"; files (safetensors, .pth, shape errors)
 * and the merged-checkpoint export read back by `loadModel`.
 *
 * FD tolerance as in ref_backward_test.ts: per element |g − fd| ≤ 1e-6·max(1, |fd|), rms-relative
 * ≤ 1e-6 over the spot set, directional ≤ 1e-6.
 */
import { assert, assertEquals, assertThrows } from "@std/assert";
import { GradChecker } from "./_fd.ts";
import { maxAbsDiff } from "./_helpers.ts";
import { randomWeights, tinyConfig } from "../lib/model/random.ts";
import type { RwkvWeights } from "../lib/model/types.ts";
import { loadModel } from "../lib/model/load.ts";
import { refBatchLossAndGrad, type RefSequence } from "../lib/ref/backward.ts";
import { loraGradsRef, loraMergeRef, loraScale } from "../lib/ref/lora.ts";
import {
  checkLoraAdapter,
  DEFAULT_LORA,
  initLora,
  LORA_FIELDS,
  type LoraAdapter,
  LoraError,
  loraTensorName,
  loraTrainableCount,
  parseLoraSpec,
  rankForCount,
} from "../lib/model/lora.ts";
import {
  loraGradsFromRef,
  mergeLoraWeights,
  parseLora,
  serializeLora,
  serializeMergedModel,
} from "../lib/model/lora_file.ts";

const fd = new GradChecker(1010);

Deno.test("loraMergeRef / loraGradsRef match FD of <R, W + sBA>", () => {
  const d = { out: 5, in: 7, r: 3 }, s = 0.7;
  const W = fd.rand(d.out * d.in), A = fd.rand(d.r * d.in), B = fd.rand(d.out * d.r);
  const R = fd.rand(d.out * d.in);
  const f = () => loraMergeRef(W, A, B, d, s).reduce((acc, x, i) => acc + x * R[i], 0);
  const g = loraGradsRef(R, A, B, d, s); // dL/dW_eff = R
  fd.check("dA", g.dA, f, A);
  fd.check("dB", g.dB, f, B);
  fd.report("lora bilinear");
});

/** A float64 copy of the weights (the reference reads them by index; FD perturbs exactly). */
function f64Weights(w: RwkvWeights): RwkvWeights {
  const conv = (o: object) =>
    Object.fromEntries(
      Object.entries(o).map(([k, v]) => [k, v instanceof Float32Array ? Float64Array.from(v) : v]),
    );
  return { ...conv(w), blocks: w.blocks.map(conv) } as unknown as RwkvWeights;
}

/** An adapter with random B (and float64 factors, cast: FD perturbs them exactly). */
function randomAdapter(w: RwkvWeights, r: number, seed: number): LoraAdapter {
  const a = initLora(w.config, { r, alpha: 5, seed });
  const f = new GradChecker(seed);
  for (const m of a.modules) {
    m.A = Float64Array.from(m.A) as unknown as Float32Array;
    m.B = f.rand(m.B.length, -0.3, 0.3) as unknown as Float32Array;
  }
  return a;
}

/** The merged model in float64 (no f32 rounding, so the FD sees the exact function). */
function merged64(w64: RwkvWeights, a: LoraAdapter): RwkvWeights {
  const s = loraScale(a.r, a.alpha);
  const blocks = w64.blocks.map((b) => ({ ...b }));
  for (const m of a.modules) {
    const f = LORA_FIELDS[m.target];
    const W = w64.blocks[m.layer][f];
    blocks[m.layer][f] = loraMergeRef(W, m.A, m.B, { ...m, r: a.r }, s) as unknown as Float32Array;
  }
  return { ...w64, blocks };
}

Deno.test("whole-model LoRA gradients (every target, every layer) match FD of the loss", () => {
  const cfg = tinyConfig({ nLayer: 2, nEmbd: 32, headSize: 16, vocabSize: 50 });
  const w64 = f64Weights(randomWeights(cfg, 3));
  const a = randomAdapter(w64, 3, 7);
  const rng = fd.rng;
  const batch: RefSequence[] = [7, 5].map((T) => {
    const tokens = Array.from({ length: T }, () => rng.int(cfg.vocabSize));
    return { tokens, targets: tokens.map(() => rng.int(cfg.vocabSize)), mask: tokens.map(() => 1) };
  });
  const loss = () => refBatchLossAndGrad(merged64(w64, a), batch).loss;
  const r = refBatchLossAndGrad(merged64(w64, a), batch, undefined, { weightGrads: true });
  const g = loraGradsFromRef(a, r.dWeights!);
  assertEquals(Object.keys(g).length, 2 * 6 * 2);
  for (const m of a.modules) {
    for (const which of ["A", "B"] as const) {
      const name = loraTensorName(m.layer, m.target, which);
      const arr = m[which] as unknown as Float64Array;
      fd.check(name, g[name], loss, arr, fd.pickBig(g[name], 3));
      fd.checkDir(name, g[name], loss, arr);
    }
  }
  fd.report("lora whole model");
});

Deno.test("options: defaults, CLI spec, errors that quote the bad value", () => {
  assertEquals([DEFAULT_LORA.r, DEFAULT_LORA.alpha, DEFAULT_LORA.layers], [8, 16, "all"]);
  assertEquals(DEFAULT_LORA.targets.length, 6);
  const c = parseLoraSpec("r=8,alpha=16,targets=att.key+att.value,layers=0+1");
  assertEquals(c.targets, ["att.key", "att.value"]);
  assertEquals(c.layers, [0, 1]);
  assertEquals(parseLoraSpec("layers=all, lrScale=0.01").lrScale, 0.01);
  const bad: [string, RegExp][] = [
    ["r=0", /r must be an integer ≥ 1, got 0/],
    ["r=abc", /r="abc" is not a number/],
    ["targets=att.query", /unknown LoRA target "att.query"/],
    ["rank=4", /bad entry "rank=4"/],
    ["alpha=-1", /alpha must be > 0, got -1/],
    ["r=2,r=3", /r is given twice/],
  ];
  for (const [spec, re] of bad) {
    const e = assertThrows(() => parseLoraSpec(spec), LoraError);
    assert(re.test(e.message), `${spec}: ${e.message}`);
  }
});

Deno.test("trainable count Σ r·(in+out) and equal-parameter rank", () => {
  const cfg = tinyConfig({ nLayer: 3, nEmbd: 32, headSize: 16 }); // F = 128
  // per layer: 4 · (32 + 32) + (32 + 128) · 2 = 576
  assertEquals(loraTrainableCount(cfg, { r: 2 }), 2 * 576 * 3);
  assertEquals(loraTrainableCount(cfg, { r: 1, layers: [1], targets: ["ffn.key"] }), 160);
  const a = initLora(cfg, { r: 2 });
  assertEquals(a.modules.reduce((s, m) => s + m.A.length + m.B.length, 0), 2 * 576 * 3);
  // the state's count L·H·N·N = 3·2·256 = 1536 → r = 1536 / 1728 ≈ 0.9 → 1
  assertEquals(rankForCount(cfg, 1536), 1);
  assertEquals(rankForCount(cfg, 5 * 1728 + 800), 5); // 5.46 → 5
  assertEquals(rankForCount(cfg, 5 * 1728 + 900), 6); // 5.52 → 6
  assertEquals(rankForCount(cfg, 0), 1);
  assertThrows(() => initLora(cfg, { layers: [3] }), LoraError, "layer 3 does not exist");
});

Deno.test("init: seeded Kaiming-uniform A within 1/√in, zero B", () => {
  const cfg = tinyConfig();
  const a = initLora(cfg, { r: 4, seed: 9 }), b = initLora(cfg, { r: 4, seed: 9 });
  const c = initLora(cfg, { r: 4, seed: 10 });
  for (const [i, m] of a.modules.entries()) {
    assertEquals(m.A, b.modules[i].A);
    assert(m.B.every((x) => x === 0));
    const bound = 1 / Math.sqrt(m.in), max = m.A.reduce((s, x) => Math.max(s, Math.abs(x)), 0);
    assert(max < bound && max > 0.8 * bound, `${m.target}: max |A| ${max} vs bound ${bound}`);
  }
  assert(maxAbsDiff(a.modules[0].A, c.modules[0].A) > 0);
});

Deno.test("files: safetensors and .pth round trips, shape and key errors", async () => {
  const cfg = tinyConfig();
  const a = initLora(cfg, { r: 3, alpha: 6, targets: ["att.key", "ffn.value"], layers: [1] });
  a.modules[1].B.fill(0.25);
  const st = await parseLora(serializeLora(a), "a.safetensors", { config: cfg });
  assertEquals([st.r, st.alpha, st.modules.length], [3, 6, 2]);
  assertEquals(st.modules[1].B, a.modules[1].B);
  assertEquals(st.modules[0].A, a.modules[0].A);
  const pth = serializeLora(a, "pth");
  await assertRejectsLora(() => parseLora(pth, "a.pth"), /carries none: pass \{ alpha \}/);
  const p = await parseLora(pth, "a.pth", { alpha: 6, config: cfg });
  assertEquals(p.modules.map((m) => m.target), ["att.key", "ffn.value"]);
  assertEquals(p.modules[1].B, a.modules[1].B);
  // the same adapter against a wider model: the error names the tensor and the fix
  const wide = tinyConfig({ nEmbd: 64, headSize: 16 });
  await assertRejectsLora(
    () => parseLora(serializeLora(a), "a.safetensors", { config: wide }),
    /blocks\.1\.att\.key\.lora_A holds 96 values .* needs \[3, 64\].*trained on/,
  );
  assertThrows(() => checkLoraAdapter(a, tinyConfig({ nLayer: 1 })), LoraError, "layer 1");
});

async function assertRejectsLora(f: () => Promise<unknown>, re: RegExp) {
  try {
    await f();
  } catch (e) {
    assert(e instanceof LoraError, `expected LoraError, got ${e}`);
    assert(re.test(e.message), e.message);
    return;
  }
  throw new Error(`expected a LoraError matching ${re}`);
}

Deno.test("merged-checkpoint export loads with loadModel and equals W + (α/r) B A", async () => {
  const cfg = tinyConfig();
  const w = randomWeights(cfg, 1);
  const a = initLora(cfg, { r: 2, alpha: 3, seed: 4 });
  for (const m of a.modules) m.B.forEach((_, i, B) => (B[i] = Math.sin(i + m.layer)));
  const path = await Deno.makeTempFile({ suffix: ".safetensors" });
  try {
    await Deno.writeFile(path, serializeMergedModel(w, a));
    const { weights } = await loadModel(path);
    const want = mergeLoraWeights(w, a);
    for (const m of a.modules) {
      const f = LORA_FIELDS[m.target];
      assertEquals(weights.blocks[m.layer][f], want.blocks[m.layer][f]);
      assert(maxAbsDiff(weights.blocks[m.layer][f], w.blocks[m.layer][f]) > 1e-3);
    }
    assertEquals(weights.blocks[0].x_r, w.blocks[0].x_r);
    assertEquals(weights.head, w.head);
  } finally {
    await Deno.remove(path);
  }
});
