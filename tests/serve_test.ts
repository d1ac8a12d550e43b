/**
 * The OpenAI-compatible server on the tiny fixture model: response shapes (plain, streaming,
 * chat, logprobs), 400s that name the field, and greedy completions equal to `generate`.
 */
import { assert, assertEquals, assertMatch } from "@std/assert";
import { fixture, gpu, hasFixtures } from "./_helpers.ts";
import { loadModel } from "../lib/model/load.ts";
import { GpuModel } from "../lib/model/gpu_model.ts";
import { ByteTokenizer } from "../lib/tokenizer/mod.ts";
import { generateText } from "../lib/generate/generate.ts";
import { startServer } from "../lib/serve/server.ts";
import { chatPrompt } from "../lib/serve/openai.ts";

const ignore = !gpu || !hasFixtures;

Deno.test("chat template: RWKV User/Assistant turns", () => {
  assertEquals(
    chatPrompt([
      { role: "system", content: "Be brief." },
      { role: "user", content: "Hi\n\nthere" },
      { role: "assistant", content: "Hello." },
      { role: "user", content: "Bye" },
    ]),
    "System: Be brief.\n\nUser: Hi\nthere\n\nAssistant: Hello.\n\nUser: Bye\n\nAssistant:",
  );
});

type Post = (path: string, body: unknown) => Promise<Response>;

/** Plain completion, greedy = generate with temperature 0 (no penalties); returns the text. */
async function checkCompletion(post: Post, model: GpuModel, tokenizer: ByteTokenizer) {
  // plain completion, greedy = generate with temperature 0 (no penalties)
  const prompt = "The quick brown";
  const r = await post("/completions", { prompt, max_tokens: 8, temperature: 0, logprobs: 2 });
  assertEquals(r.status, 200);
  const c = await r.json();
  assertEquals(c.object, "text_completion");
  assertMatch(c.id, /^cmpl-/);
  assertEquals(c.choices.length, 1);
  assertEquals(c.usage.prompt_tokens, prompt.length);
  const session = model.session();
  const want = await generateText(session, tokenizer, prompt, {
    temperature: 0,
    maxTokens: 8,
    presencePenalty: 0,
    frequencyPenalty: 0,
  });
  session.destroy();
  assertEquals(c.choices[0].text, want.text);
  assertEquals(c.choices[0].finish_reason, "length");
  const lp = c.choices[0].logprobs;
  assertEquals(lp.tokens.length, 8);
  assertEquals(lp.top_logprobs[0] && Object.keys(lp.top_logprobs[0]).length, 2);
  // greedy: the chosen token is the most likely one
  assert(
    Math.abs(
      lp.token_logprobs[0] - Math.max(...Object.values(lp.top_logprobs[0]) as number[]),
    ) < 1e-6,
  );
  return { prompt, text: want.text };
}

/** Streaming completion: SSE chunks then [DONE], concatenating to the same text. */
async function checkStreaming(post: Post, prompt: string, text: string) {
  const s = await post("/completions", { prompt, max_tokens: 8, temperature: 0, stream: true });
  assertEquals(s.headers.get("content-type"), "text/event-stream");
  const events = (await s.text()).split("\n\n").filter(Boolean);
  assertEquals(events.at(-1), "data: [DONE]");
  const chunks = events.slice(0, -1).map((e) => {
    assert(e.startsWith("data: "), e);
    return JSON.parse(e.slice(6));
  });
  assertEquals(chunks.map((x) => x.choices[0].text).join(""), text);
  assertEquals(chunks.at(-1).choices[0].finish_reason, "length");
}

/** Chat, plain and streaming. */
async function checkChat(post: Post) {
  const messages = [{ role: "user", content: "Hi" }];
  const ch = await (await post("/chat/completions", {
    messages,
    max_tokens: 6,
    temperature: 0,
    logprobs: true,
    top_logprobs: 1,
  })).json();
  assertEquals(ch.object, "chat.completion");
  assertEquals(ch.choices[0].message.role, "assistant");
  assertEquals(typeof ch.choices[0].message.content, "string");
  assertEquals(ch.choices[0].logprobs.content[0].top_logprobs.length, 1);
  const chs = await post("/chat/completions", {
    messages,
    max_tokens: 6,
    temperature: 0,
    stream: true,
  });
  const cev = (await chs.text()).split("\n\n").filter(Boolean);
  assertEquals(cev.at(-1), "data: [DONE]");
  const cchunks = cev.slice(0, -1).map((e) => JSON.parse(e.slice(6)));
  assertEquals(cchunks[0].object, "chat.completion.chunk");
  assertEquals(cchunks[0].choices[0].delta.role, "assistant");
  assertEquals(
    cchunks.map((x) => x.choices[0].delta.content ?? "").join(""),
    ch.choices[0].message.content,
  );
}

/** Bad requests: 400s that name the field, a body that is not JSON, a 404. */
async function checkBadRequests(post: Post, url: string) {
  for (
    const [body, field] of [
      [{ prompt: "x", temperature: -1 }, "temperature"],
      [{ max_tokens: 3 }, "prompt"],
      [{ prompt: "x", max_tokens: 1.5 }, "max_tokens"],
    ] as const
  ) {
    const bad = await post("/completions", body);
    assertEquals(bad.status, 400);
    const e = await bad.json();
    assertEquals(e.error.param, field);
    assert(e.error.message.startsWith(field), e.error.message);
  }
  const badChat = await post("/chat/completions", {
    messages: [{ role: "bot", content: "x" }],
  });
  assertEquals(badChat.status, 400);
  assertEquals((await badChat.json()).error.param, "messages.0.role");
  const notJson = await fetch(`${url}/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: "{",
  });
  assertEquals(notJson.status, 400);
  await notJson.body?.cancel();
  const missing = await fetch(`${url}/nothing`);
  assertEquals(missing.status, 404);
  await missing.body?.cancel();
}

Deno.test({
  name: "server: completions (plain, streaming, logprobs), chat, models, 400s",
  ignore,
  async fn() {
    const { weights } = await loadModel(fixture("models/tiny-rwkv7-834K.safetensors"));
    const model = await GpuModel.create(gpu!, weights);
    const tokenizer = new ByteTokenizer();
    const srv = await startServer({ model, tokenizer, modelName: "tiny" });
    const url = `http://127.0.0.1:${srv.port}/v1`;
    const post = (path: string, body: unknown) =>
      fetch(url + path, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    try {
      const models = await (await fetch(`${url}/models`)).json();
      assertEquals(models.object, "list");
      assertEquals(models.data[0].id, "tiny");
      const { prompt, text } = await checkCompletion(post, model, tokenizer);
      await checkStreaming(post, prompt, text);
      await checkChat(post);
      await checkBadRequests(post, url);
    } finally {
      await srv.close();
      model.destroy();
    }
  },
});
