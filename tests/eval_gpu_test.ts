/**
 * The evaluation harness on the tiny fixture model (byte tokenizer): every task end to end on
 * a few items, and forked-state scoring equal to rescoring each full sequence on the CPU
 * reference.
 */
import { assert, assertEquals } from "@std/assert";
import { fixture, gpu, hasFixtures } from "./_helpers.ts";
import { loadModel } from "../lib/model/load.ts";
import { GpuModel } from "../lib/model/gpu_model.ts";
import { refForward } from "../lib/ref/model.ts";
import { ByteTokenizer } from "../lib/tokenizer/mod.ts";
import { Scorer } from "../lib/eval/scorer.ts";
import { tokenLogprob } from "../lib/eval/metrics.ts";
import { prepareTask } from "../lib/eval/tasks.ts";
import { compareResults, evaluateTask } from "../lib/eval/evaluate.ts";
import { formatResults } from "../lib/eval/report.ts";
import type { LoglikRequest } from "../lib/eval/prompts.ts";
import type { RwkvWeights } from "../lib/model/types.ts";

const ignore = !gpu || !hasFixtures;
const DATA = fixture("data");

/** Summed log-likelihood of `cont` after `[0] ++ ctx`, on the CPU reference from scratch. */
function refLoglik(w: RwkvWeights, ctx: number[], cont: number[]): number {
  const toks = [0, ...ctx, ...cont];
  const { logits } = refForward(w, toks);
  const V = w.config.vocabSize, f = Float32Array.from(logits);
  let s = 0;
  for (let j = 0; j < cont.length; j++) {
    s += tokenLogprob(f, (ctx.length + j) * V, V, cont[j]).logprob;
  }
  return s;
}

async function setup() {
  const { weights } = await loadModel(fixture("models/tiny-rwkv7-834K.safetensors"));
  const model = await GpuModel.create(gpu!, weights);
  return { weights, model, scorer: new Scorer(model, new ByteTokenizer()) };
}

Deno.test({
  name: "forked-state choice scores equal rescoring each full sequence (CPU reference, 1e-4)",
  ignore,
  async fn() {
    const { weights, model, scorer } = await setup();
    const tok = new ByteTokenizer();
    const reqs: LoglikRequest[] = [
      // ARC-like: one context, choices of different lengths (padding ignored)
      {
        prefix: "",
        contexts: ["Question: Which is hot?\nAnswer:", "Question: Which is hot?\nAnswer:"],
        continuations: [" fire", " ice cubes", " x"].slice(0, 2),
      },
      // WinoGrande-like: contexts differ after a common part, shared continuation
      {
        prefix: "",
        contexts: ["The cat chased the dog so the cat", "The cat chased the dog so the dog"],
        continuations: [" ran.", " ran."],
      },
      // a cached few-shot prefix and one-token continuations (MMLU-like: no row forward)
      {
        prefix: "Header.\n\nQ1\nAnswer: A\n\n",
        contexts: ["Q2\nAnswer:", "Q2\nAnswer:", "Q2\nAnswer:"],
        continuations: [" A", " B", " C"],
      },
    ];
    for (const req of reqs) {
      const got = await scorer.score(req);
      req.contexts.forEach((c, r) => {
        const want = refLoglik(
          weights,
          tok.encode(req.prefix + c),
          tok.encode(req.continuations[r]),
        );
        assert(
          Math.abs(got[r].loglik - want) <= 1e-4,
          `row ${r} of ${JSON.stringify(req.contexts[r])}: ${got[r].loglik} vs ${want}`,
        );
      });
    }
    // the prefix state was cached and reused
    await scorer.score(reqs[2]);
    assertEquals(scorer.cachedPrefixes, 2);
    scorer.destroy();
    model.destroy();
  },
});

Deno.test({
  name: "every task runs end to end on the fixture model (few items)",
  ignore,
  async fn() {
    const { model, scorer } = await setup();
    const tmp = await Deno.makeTempDir();
    // Short GSM8K/MMLU data keeps the few-shot prefixes cheap on a software GPU.
    await Deno.mkdir(`${tmp}/gsm8k`);
    const g = (i: number) =>
      JSON.stringify({ question: `${i}+1?`, answer: `${i}+1=${i + 1}\n#### ${i + 1}` });
    await Deno.writeTextFile(`${tmp}/gsm8k/train.jsonl`, [1, 2, 3, 4, 5, 6].map(g).join("\n"));
    await Deno.writeTextFile(`${tmp}/gsm8k/test.jsonl`, [7, 8].map(g).join("\n"));
    await Deno.writeTextFile(
      `${tmp}/lambada_openai.jsonl`,
      ['{"text":"the sun is hot and the sun"}', '{"context":"one two","continuation":"three"}']
        .join("\n"),
    );
    for (const split of ["dev", "test"]) {
      await Deno.mkdir(`${tmp}/mmlu/${split}`, { recursive: true });
      const rows = [1, 2, 3, 4, 5].map((i) => `${i}x?,a,b,c,d,${"ABCD"[i % 4]}`).join("\n");
      await Deno.writeTextFile(`${tmp}/mmlu/${split}/toy_${split}.csv`, rows);
    }
    const runs = [
      { name: "arc_challenge", dataDir: DATA, limit: 1 },
      { name: "arc_easy", dataDir: DATA, limit: 1 },
      { name: "winogrande", dataDir: DATA, limit: 2 },
      { name: "lambada", dataDir: tmp, limit: 2 },
      { name: "mmlu", dataDir: tmp, limit: 3 },
      { name: "gsm8k", dataDir: tmp, limit: 2 },
    ] as const;
    const results = [];
    for (const r of runs) {
      const task = await prepareTask(r.name, { dataDir: r.dataDir, limit: r.limit });
      const res = await evaluateTask(scorer, task, { maxGenTokens: 8 });
      assertEquals(res.n, r.limit);
      for (const m of res.metrics) assert(Number.isFinite(m.value), `${r.name} ${m.metric}`);
      for (const it of res.items) {
        assert(it.prompt.length > 0);
        if (r.name === "gsm8k") assert(typeof it.generated === "string");
        else assertEquals(it.logliks!.length, it.continuations!.length);
      }
      results.push(res);
    }
    assertEquals(results[4].subjects?.[0].subject, "toy");
    // the same items under the same state compare as identical
    const again = await evaluateTask(
      scorer,
      await prepareTask("winogrande", { dataDir: DATA, limit: 2 }),
      { state: "again" },
    );
    const [cmp] = compareResults(results[2], again);
    assertEquals([cmp.diff, cmp.p, cmp.test], [0, 1, "mcnemar-exact"]);
    const table = formatResults(results);
    for (const word of ["n-shot", "split", "metric", "mmlu", "exact_match_strict", "perplexity"]) {
      assert(table.includes(word), word);
    }
    scorer.destroy();
    model.destroy();
    await Deno.remove(tmp, { recursive: true });
  },
});

Deno.test({
  name: "a per-item initial state changes the scores and bypasses the prefix cache",
  ignore,
  async fn() {
    const { weights, model, scorer } = await setup();
    const task = await prepareTask("arc_easy", { dataDir: DATA, limit: 1 });
    const item = task.items[0];
    assert(item.kind === "loglik");
    const base = await scorer.score(item.request);
    const st = (await import("../lib/model/types.ts")).zeroState(weights.config);
    st.forEach((l) => l.wkv.fill(0.5));
    const tuned = await scorer.score(item.request, st);
    assert(Math.abs(base[0].loglik - tuned[0].loglik) > 1e-6, `${base[0].loglik}`);
    assertEquals(scorer.cachedPrefixes, 1);
    scorer.destroy();
    model.destroy();
  },
});
