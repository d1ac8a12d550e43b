import { assert, assertEquals, assertThrows } from "@std/assert";
import { fixture, gpu, hasFixtures } from "./_helpers.ts";
import { loadModel } from "../lib/model/load.ts";
import { GpuModel } from "../lib/model/gpu_model.ts";
import { ByteTokenizer } from "../lib/tokenizer/bytes.ts";
import {
  addTestbed,
  factsTestbed,
  harnessTask,
  jsonlTestbed,
  pairExample,
  skillTestbed,
  teacherForced,
} from "../lib/experiments/testbeds.ts";
import { skillRows } from "../lib/train/synthetic.ts";
import { skillAccuracyGpu } from "../lib/train/skills_eval.ts";
import { buildDataset } from "../lib/train/data.ts";

const MODEL = new URL("../models/default.safetensors", import.meta.url).pathname;
const tok = new ByteTokenizer();
const dec = new TextDecoder();
const text = (ids: number[]) => dec.decode(Uint8Array.from(ids));

Deno.test("facts: seeded, K distinct keys of 4–8 letters, loss on the value and newline", () => {
  const a = factsTestbed(tok, { K: 64, seed: 3 }), b = factsTestbed(tok, { K: 64, seed: 3 });
  assertEquals(a.train, b.train);
  assert(factsTestbed(tok, { K: 64, seed: 4 }).train[0].ids.join() !== a.train[0].ids.join());
  const keys = new Set<string>();
  for (const e of a.train) {
    const s = text(e.ids), m = /^([a-z]{4,8})=([a-z]{4,8})\n$/.exec(s);
    assert(m, s);
    keys.add(m[1]);
    const first = e.loss.indexOf(1);
    assertEquals(first, m[1].length + 1);
    assert(e.loss.subarray(first).every((x) => x === 1));
  }
  assertEquals(keys.size, 64);
  assertEquals(a.heldOut, a.train);
  assertEquals(a.metric, "recall");
});

Deno.test("skill and add: ≥ 200 held-out items disjoint from training; instruction only for add", () => {
  const s = skillTestbed(tok, { skill: "reverse", seed: 1 });
  assertEquals(s.heldOut.length, 200);
  const trainP = new Set(s.train.map((e) => text(e.ids)));
  assert(s.heldOut.every((e) => !trainP.has(text(e.ids))));
  assert(!text(s.train[0].ids).startsWith("reverse\n"));
  const a = addTestbed(tok, { seed: 2 });
  assertEquals(a.heldOut.length, 300);
  assert(text(a.train[0].ids).startsWith("add\n"));
  const prompts = new Set(a.train.map((e) => text(e.ids).split("=")[0]));
  assert(a.heldOut.every((e) => !prompts.has(text(e.ids).split("=")[0])));
  assertThrows(() => skillTestbed(tok, { testItems: 50 }));
});

Deno.test("jsonl: needs a held-out split", () => {
  const rows = Array.from(
    { length: 20 },
    (_, i) => JSON.stringify({ prompt: `q${i}=`, response: `${i}\n` }),
  );
  const ds = buildDataset(rows.join("\n"), tok, { valSplit: 5 });
  const tb = jsonlTestbed(ds);
  assertEquals([tb.train.length, tb.heldOut.length], [15, 5]);
  assertThrows(() => jsonlTestbed({ ...ds, val: [] }), RangeError, "held-out split");
});

Deno.test({
  name: "teacherForced exact match = greedy decoding's exact match (instructed skills, GPU)",
  ignore: !gpu,
  async fn() {
    const { weights } = await loadModel(MODEL);
    const model = await GpuModel.create(gpu!, weights);
    try {
      for (const skill of ["add", "reverse"] as const) {
        const rows = skillRows(skill, 60, 11, true);
        const r = await teacherForced(
          model,
          rows.map((x) => pairExample(tok, x.prompt, x.response)),
        );
        const g = await skillAccuracyGpu(model, skill, 60, 11, true);
        const tf = r.exact.reduce((a, b) => a + b, 0) / 60;
        console.log(`${skill}: teacher-forced ${tf}, greedy ${g.accuracy}`);
        // at most one item apart (near-tied f32 logits of the batched vs token-by-token forward)
        assert(Math.abs(tf - g.accuracy) <= 1 / 60 + 1e-12, `${skill}: ${tf} vs ${g.accuracy}`);
        assert(r.loss.every((x) => x > 0 && Number.isFinite(x)));
      }
      const facts = factsTestbed(tok, { K: 16, seed: 0, sideItems: 20 });
      const sc = await facts.score(model);
      assertEquals(sc.items.length, 16);
      assert(sc.metrics.recall < 0.2, "the untuned model cannot know random facts");
      const side = await facts.side!(model);
      assert(side["skill.copy"] > 0.5, JSON.stringify(side));
    } finally {
      model.destroy();
    }
  },
});

Deno.test({
  name: "jsonl + harness: a harness task scores the tuned state (fixture model, ARC-Easy)",
  ignore: !gpu || !hasFixtures,
  async fn() {
    const { weights } = await loadModel(fixture("models/tiny-rwkv7-834K.safetensors"));
    const model = await GpuModel.create(gpu!, weights);
    try {
      const run = harnessTask(tok, "arc_easy", { dataDir: fixture("data"), limit: 2 });
      const zero = await run(model);
      assert(Object.keys(zero).includes("arc_easy.acc"), JSON.stringify(zero));
      assert(zero["arc_easy.acc"] >= 0 && zero["arc_easy.acc"] <= 1);
      const { zeroState } = await import("../lib/model/types.ts");
      const st = zeroState(weights.config);
      st.forEach((l) => l.wkv.fill(0.5));
      const tuned = await run(model, st);
      assertEquals(Object.keys(tuned), Object.keys(zero));
    } finally {
      model.destroy();
    }
  },
});
