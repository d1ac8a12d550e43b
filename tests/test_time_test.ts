/**
 * Guided test-time scaling: the pieces on the CPU (KL expansion, choice matching, top-k), the
 * HTTP guide against misbehaving loopback servers (500, 429, garbage JSON, wrong shape, a hang
 * past the timeout; the API key as a Bearer header and never in a message), and the whole loop
 * end to end on the fixture model with a local guide and with the project's own server as the
 * guide. Subsets are the two shortest ARC-Challenge questions, K = 2.
 *
 * @module
 */
import { assert, assertEquals, assertRejects, assertStringIncludes } from "@std/assert";
import { fixture, gpu, hasFixtures } from "./_helpers.ts";
import { klRows, teacherRows } from "../lib/test_time/align.ts";
import { topLogprobs } from "../lib/test_time/local_guide.ts";
import { guidedEvaluate, guidePick } from "../lib/test_time/tts.ts";
import { HttpGuide } from "../lib/test_time/http_guide.ts";
import { GuideError } from "../lib/test_time/guide.ts";
import { LocalGuide } from "../lib/test_time/local_guide.ts";
import { ByteTokenizer } from "../lib/tokenizer/mod.ts";
import { loadModel } from "../lib/model/load.ts";
import { GpuModel } from "../lib/model/gpu_model.ts";
import { Scorer } from "../lib/eval/scorer.ts";
import { type PreparedTask, prepareTask } from "../lib/eval/tasks.ts";
import { evaluateTask } from "../lib/eval/evaluate.ts";
import { startServer } from "../lib/serve/server.ts";

Deno.test("klRows: stratified quantiles of the renormalised top-k, mask on guide tokens", () => {
  const top = [
    { ids: [7, 9], logprobs: [Math.log(0.6), Math.log(0.2)] }, // renormalised: 0.75 / 0.25
    { ids: [], logprobs: [] }, // no alternatives: the guide's token
  ];
  const r = klRows([0, 5], [7, 8], top, 4);
  assertEquals([r.B, r.T], [4, 3]);
  const row = (b: number) => [...r.targets.subarray(b * 3, b * 3 + 3)];
  assertEquals([0, 1, 2, 3].map(row), [[5, 7, 8], [5, 7, 8], [5, 7, 8], [5, 9, 8]]);
  assertEquals([...r.mask.subarray(0, 3)], [0, 1, 1]);
  const t = teacherRows([[0, 1, 2, 3], [0, 4]], [2, 1]);
  assertEquals([t.B, t.T, [...t.mask]], [2, 3, [0, 1, 1, 1, 0, 0]]);
});

Deno.test("guidePick and topLogprobs", () => {
  assertEquals(guidePick(" The Moon, because", ["the sun", "the moon", "moon"]), 1);
  assertEquals(guidePick("no idea", ["a cat", "a dog"]), undefined);
  const t = topLogprobs(new Float32Array([1, 5, 3, 5, -2]), 3);
  assertEquals(t.ids, [1, 3, 2]);
  const z = [1, 5, 3, 5, -2].reduce((s, x) => s + Math.exp(x), 0);
  assert(Math.abs(t.logprobs[0] - (5 - Math.log(z))) < 1e-5);
});

/** A loopback server whose responses a test scripts; it records each request. */
function scripted(handler: (req: Request) => Response | Promise<Response>) {
  const seen: { auth: string | null; body: Record<string, unknown> }[] = [];
  const ctl = new AbortController();
  let port = 0;
  const ready = new Promise<void>((resolve) => {
    const srv = Deno.serve({
      hostname: "127.0.0.1",
      port: 0,
      signal: ctl.signal,
      onListen: (a) => {
        port = a.port;
        resolve();
      },
    }, async (req) => {
      seen.push({ auth: req.headers.get("authorization"), body: await req.json() });
      return handler(req);
    });
    closers.push(srv.finished);
  });
  const closers: Promise<void>[] = [];
  return {
    seen,
    ready,
    url: () => `http://127.0.0.1:${port}/v1/completions`,
    close: async () => {
      ctl.abort();
      await Promise.all(closers);
    },
  };
}

const KEY = "sk-test-0123456789abcdef";
const okBody = (text: string) =>
  Response.json({ choices: [{ text, logprobs: null }], usage: { completion_tokens: 3 } });

/** A scripted guide server that misbehaves per `?mode=` (500, 429, garbage, shape, 400, flaky, hang). */
function misbehavingServer(hang: AbortController) {
  let flaky = 0;
  return scripted((req) => {
    const mode = new URL(req.url).searchParams.get("mode");
    if (mode === "500") {
      return new Response(JSON.stringify({ error: { message: "boom" } }), { status: 500 });
    }
    if (mode === "429") return new Response(`slow down, ${KEY}`, { status: 429 });
    if (mode === "garbage") return new Response("{not json", { status: 200 });
    if (mode === "shape") return Response.json({ choices: [{ txt: "x" }] });
    if (mode === "400") {
      return Response.json({ error: { message: "bad max_tokens" } }, { status: 400 });
    }
    if (mode === "flaky") {
      return flaky++ % 2 === 0 ? new Response("", { status: 503 }) : okBody(" ok");
    }
    if (mode === "hang") {
      return new Promise<Response>((resolve) =>
        hang.signal.addEventListener("abort", () => resolve(okBody("late")))
      );
    }
    return okBody(" fine");
  });
}
type GuideServer = ReturnType<typeof scripted>;
type MakeGuide = (mode: string, extra?: object) => HttpGuide;

/** A guide call that must fail with a GuideError naming the endpoint and `parts`, without the key. */
async function expectError(srv: GuideServer, guide: MakeGuide, mode: string, ...parts: string[]) {
  const e = await assertRejects(() => guide(mode).continue("Q"), GuideError);
  assertStringIncludes(e.message, `guide ${srv.url()}?mode=${mode} `);
  for (const p of parts) assertStringIncludes(e.message, p);
  assert(!e.message.includes(KEY), `the key leaked into: ${e.message}`);
  return e.message;
}

/** A good answer (key as a Bearer header, max_tokens sent) and a retried 503. */
async function checkGuideAnswers(srv: GuideServer, guide: MakeGuide) {
  const ok = await guide("ok").continue("Question: 1+1?\nAnswer:", {
    maxTokens: 5,
    stop: ["\n"],
  });
  assertEquals(ok.text, " fine");
  assertEquals([ok.cost.tokens, ok.cost.requests], [3, 1]);
  assertEquals(srv.seen.at(-1)!.auth, `Bearer ${KEY}`);
  assertEquals(srv.seen.at(-1)!.body.max_tokens, 5);
  const flaky = guide("flaky");
  assertEquals((await flaky.continue("Q")).text, " ok");
  assertEquals(flaky.cost.requests, 2);
}

/** Each misbehaviour gives its own message; a 400 is not retried. */
async function checkGuideErrors(srv: GuideServer, guide: MakeGuide) {
  await expectError(srv, guide, "500", "returned HTTP 500: boom", "gave up after 2 attempts");
  const m429 = await expectError(
    srv,
    guide,
    "429",
    "rate-limiting (HTTP 429)",
    "gave up after 2 attempts",
  );
  assertStringIncludes(m429, "***"); // the server echoed the key: masked
  await expectError(srv, guide, "garbage", "returned malformed JSON");
  await expectError(srv, guide, "shape", "returned an unexpected response: choices.0.text");
  const n400 = srv.seen.length;
  await expectError(srv, guide, "400", "returned HTTP 400: bad max_tokens");
  assertEquals(srv.seen.length, n400 + 1, "a 400 is not retried");
  await expectError(srv, guide, "hang", "timed out after 300 ms", "gave up after 2 attempts");
}

/** An unreachable guide, and a guide whose key variable is not set. */
async function checkDeadAndKeyless(guide: MakeGuide) {
  const dead = new HttpGuide({ url: "http://127.0.0.1:9/v1/completions", retries: 0 });
  const e = await assertRejects(() => dead.continue("Q"), GuideError);
  assertStringIncludes(e.message, "guide http://127.0.0.1:9/v1/completions is unreachable");
  Deno.env.delete("TTS_TEST_KEY");
  assertStringIncludes(
    (() => {
      try {
        guide("ok");
        return "";
      } catch (e) {
        return (e as Error).message;
      }
    })(),
    "needs an API key in $TTS_TEST_KEY, which is not set",
  );
}

Deno.test("HttpGuide: errors name the endpoint and the problem; key sent, never shown", async () => {
  Deno.env.set("TTS_TEST_KEY", KEY);
  const hang = new AbortController();
  const srv = misbehavingServer(hang);
  await srv.ready;
  const logs: string[] = [];
  const saved = { log: console.log, error: console.error, warn: console.warn };
  console.log = console.error = console.warn = (...a: unknown[]) => void logs.push(a.join(" "));
  const guide = (mode: string, extra = {}) =>
    new HttpGuide({
      url: `${srv.url()}?mode=${mode}`,
      apiKeyEnv: "TTS_TEST_KEY",
      retries: 1,
      backoffMs: 1,
      timeoutMs: 300,
      ...extra,
    });
  try {
    await checkGuideAnswers(srv, guide);
    await checkGuideErrors(srv, guide);
    await checkDeadAndKeyless(guide);
  } finally {
    Object.assign(console, saved);
    hang.abort();
    await srv.close();
  }
  assert(!logs.some((l) => l.includes(KEY)), "the key appeared in the logs");
});

/** The fixture model, and the two shortest ARC-Challenge questions (fast on a software GPU). */
async function setup() {
  const { weights } = await loadModel(fixture("models/tiny-rwkv7-834K.safetensors"));
  const model = await GpuModel.create(gpu!, weights);
  const all = await prepareTask("arc_challenge", { dataDir: fixture("data"), limit: 700 });
  const len = (i: PreparedTask["items"][number]) =>
    i.kind === "loglik" ? i.request.contexts[0].length : Infinity;
  const items = [...all.items].sort((a, b) => len(a) - len(b)).slice(0, 2);
  const task: PreparedTask = { ...all, items };
  return { model, task, tok: new ByteTokenizer() };
}

Deno.test({
  name: "guided TTS end to end with a local guide (CE, then KL + REINFORCE), cost reported",
  ignore: !gpu || !hasFixtures,
  fn: async () => {
    const { model, task, tok } = await setup();
    const scorer = new Scorer(model, tok);
    try {
      const before = await evaluateTask(scorer, task);
      const guide = new LocalGuide(model, tok, { topK: 4 });
      const r = await guidedEvaluate(scorer, task, guide, {
        steps: 2,
        lr: 0.1,
        guideMaxTokens: 6,
      });
      assertEquals(r.result.n, 2);
      assertEquals(r.result.items.map((i) => i.id), before.items.map((i) => i.id));
      assertEquals(r.items.length, 2);
      for (const it of r.items) {
        assertEquals([it.objective, it.losses.length, it.alignTokens], ["ce", 2, 6]);
        assert(it.cost.guideTokens === 6 && it.cost.guideRequests === 1 && it.cost.guideMs > 0);
      }
      assertEquals(r.total.optimiserSteps, 4);
      assertEquals(r.total.guideTokens, 12);
      assert(r.total.tuneMs > 0 && r.total.ms >= r.total.tuneMs);
      // the tuned state changed the scores
      assert(r.result.items[0].logliks!.some((l, i) => l !== before.items[0].logliks![i]));
      console.log(
        `local guide: acc ${before.metrics[0].value} → ${r.result.metrics[0].value}, ` +
          `cost ${JSON.stringify(r.total)}`,
      );
      const one: PreparedTask = { ...task, items: task.items.slice(0, 1) };
      const kl = await guidedEvaluate(scorer, one, guide, {
        steps: 1,
        objective: "kl",
        klRows: 2,
        guideMaxTokens: 4,
        reinforce: { samples: 2, steps: 1, reward: "oracle" },
      });
      const it = kl.items[0];
      assertEquals([it.objective, it.losses.length, it.rewards?.length], ["kl", 1, 1]);
      assert(Number.isFinite(it.losses[0]) && it.rewards![0] >= 0 && it.rewards![0] <= 1);
    } finally {
      scorer.destroy();
      model.destroy();
    }
  },
});

Deno.test({
  name: "guided TTS end to end with an HTTP guide (the project's server on loopback)",
  ignore: !gpu || !hasFixtures,
  fn: async () => {
    const { model, task, tok } = await setup();
    const srv = await startServer({ model, tokenizer: tok });
    const scorer = new Scorer(model, tok);
    try {
      const url = `http://127.0.0.1:${srv.port}/v1/completions`;
      const guide = new HttpGuide({ url, maxTokens: 6, topLogprobs: 3 }, tok);
      const r = await guidedEvaluate(scorer, task, guide, { steps: 2, guideMaxTokens: 6 });
      assertEquals(r.result.n, 2);
      assertEquals(guide.name, url);
      assertEquals([r.total.guideTokens, r.total.guideRequests, r.total.optimiserSteps], [
        12,
        2,
        4,
      ]);
      assert(r.items.every((i) => i.alignTokens > 0 && i.objective === "ce"));
      // byte tokens map one-to-one, so the same guide also supports KL
      const out = await guide.continue("Question: 1+1?\nAnswer:", { maxTokens: 3 });
      assertEquals(out.tokens?.length, 3);
      assertEquals(out.top?.[0].ids.length, 3);
      console.log(`http guide: acc ${r.result.metrics[0].value}, cost ${JSON.stringify(r.total)}`);
    } finally {
      scorer.destroy();
      await srv.close();
      model.destroy();
    }
  },
});

Deno.test("wilson95: known values, edges", async () => {
  const { wilson95 } = await import("../lib/test_time/scaling.ts");
  const [lo, hi] = wilson95(47, 100);
  assert(Math.abs(lo - 0.3752) < 1e-3 && Math.abs(hi - 0.5669) < 1e-3, `${lo} ${hi}`);
  assertEquals(wilson95(0, 100)[0], 0);
  assert(Math.abs(wilson95(0, 100)[1] - 0.037) < 1e-3);
  assertEquals(wilson95(100, 100)[1], 1);
});

Deno.test("PromptedGuide: preamble reaches the guide; memo returns the same output and cost", async () => {
  const { PromptedGuide } = await import("../lib/test_time/prompted_guide.ts");
  const seen: string[] = [];
  const inner = {
    name: "fake",
    cost: { tokens: 0, requests: 0, ms: 0 },
    continue(prompt: string) {
      seen.push(prompt);
      return Promise.resolve({ text: "ab", cost: { tokens: 2, requests: 1, ms: 1 } });
    },
    close: () => Promise.resolve(),
  };
  const g = new PromptedGuide(inner, { preamble: "reverse\n", memoize: true });
  await g.continue("ba=", { maxTokens: 4 });
  await g.continue("ba=", { maxTokens: 4 });
  await g.continue("ba=", { maxTokens: 2 });
  assertEquals(seen, ["reverse\nba=", "reverse\nba="]);
  assertEquals(g.memoHits, 1);
  assertEquals(g.cost.tokens, 6, "a memoised call still counts its item's cost");
});

Deno.test("skill tasks: 4 distinct choices with the answer at the gold index; generation items", async () => {
  const { prepareSkillTask } = await import("../lib/eval/skill_tasks.ts");
  const t = prepareSkillTask("skill_choice", { skill: "reverse", limit: 50, seed: 3 });
  assertEquals(t.items.length, 50);
  for (const it of t.items) {
    if (it.kind !== "loglik") throw new Error("choice items are loglik");
    const c = it.request.continuations;
    assertEquals(new Set(c).size, 4);
    const input = it.request.contexts[0].slice(0, -1);
    const answer = [...input].reverse().join("") + "\n";
    const gold = c.indexOf(answer);
    assert(gold >= 0, `answer ${answer} among ${c}`);
    const rows = c.map((_, i) => ({ loglik: i === gold ? -1 : -9, greedy: false, tokens: 3 }));
    assertEquals(it.judge(rows).metrics.acc, 1);
  }
  const g = prepareSkillTask("skill_answer", { skill: "sort", limit: 2, instruction: true });
  const it = g.items[0];
  if (it.kind !== "generate") throw new Error("answer items generate");
  assert(it.request.context.startsWith("sort\n"));
  assertEquals(it.request.stop, ["\n"]);
  assertEquals(g.split, "synthetic:sort+instruction");
});

Deno.test({
  name: "scalingCurve on the default model: the instructed guide lifts the student (K = 4 > K = 0)",
  ignore: !gpu,
  sanitizeResources: false,
  async fn() {
    const { PromptedGuide } = await import("../lib/test_time/prompted_guide.ts");
    const { scalingCurve } = await import("../lib/test_time/scaling.ts");
    const { weights } = await loadModel(
      new URL("../models/default.safetensors", import.meta.url).pathname,
    );
    const model = await GpuModel.create(gpu!, weights);
    const tok = new ByteTokenizer();
    const scorer = new Scorer(model, tok);
    try {
      const task = await prepareTask("skill_answer", { dataDir: "", skill: "reverse", limit: 12 });
      const guide = new PromptedGuide(new LocalGuide(model, tok, { maxTokens: 16 }), {
        preamble: "reverse\n",
        memoize: true,
      });
      const c = await scalingCurve(scorer, task, guide, {
        ks: [0, 4],
        guideMaxTokens: 16,
        tts: { lr: 0.1, maxGenTokens: 16 },
      });
      const [k0, k4] = c.byK;
      assertEquals(k0.cost.guideTokens, 0);
      assert(k4.correct > k0.correct, `K=4 ${k4.correct}/12 ≤ K=0 ${k0.correct}/12`);
      assert(k4.lo <= k4.accuracy && k4.accuracy <= k4.hi);
    } finally {
      scorer.destroy();
      model.destroy();
    }
  },
});
