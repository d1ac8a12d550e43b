/**
 * Bad-input corpus, the server (issue 13 items 8–10), on a CPU stand-in model (no GPU): a
 * bounded loopback load test (N clients plus one long and one oversized prompt, `/v1/models`
 * and `/health` answering while the long one runs), cancellation when the client goes, body
 * and prompt caps, JSON only, loopback Host names, the API key, unknown and named models.
 */
import { assert, assertEquals, assertMatch } from "@std/assert";
import { bindWarning, type ServedModel, startServer } from "../lib/serve/server.ts";
import { ByteTokenizer } from "../lib/tokenizer/mod.ts";
import type { RwkvState } from "../lib/model/types.ts";

const tokenizer = new ByteTokenizer();
const LIMIT = 30_000; // ms: every request of these tests is bounded by it

/** Busy-wait `ms` (the stand-in's "GPU work" blocks the thread, as a long forward would). */
function spin(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) { /* busy */ }
}

/** Per session: tokens fed, whether destroyed, and the initial state it got. */
interface Trace {
  fed: number;
  calls: number;
  destroyed: boolean;
  initial?: RwkvState;
}

/** A model whose every feed blocks ~`msPerCall` and whose logits always favour "a". */
function standIn(msPerCall = 2) {
  const traces: Trace[] = [];
  let onBigFeed: ((t: Trace) => void) | undefined;
  const bigFeed = () => new Promise<Trace>((r) => (onBigFeed = r));
  const model: ServedModel = {
    session(initial?: RwkvState) {
      const t: Trace = { fed: 0, calls: 0, destroyed: false, initial };
      traces.push(t);
      return {
        vocabSize: 256,
        feed: (tokens: number[]) => {
          spin(msPerCall);
          t.fed += tokens.length;
          t.calls++;
          if (tokens.length > 1 && t.fed > 1000 && onBigFeed) {
            onBigFeed(t);
            onBigFeed = undefined;
          }
          const logits = new Float32Array(256).fill(-10);
          logits[97] = 10;
          return Promise.resolve(logits);
        },
        destroy: () => void (t.destroyed = true),
      };
    },
  };
  return { model, traces, bigFeed };
}

const post = (url: string, body: unknown, init: RequestInit = {}) =>
  fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...init.headers },
    body: JSON.stringify(body),
    signal: init.signal ?? AbortSignal.timeout(LIMIT),
  });

const get = (url: string, headers: Record<string, string> = {}) =>
  fetch(url, { headers, signal: AbortSignal.timeout(LIMIT) });

/**
 * The long request is in prefill now: the server must still answer `/v1/models`, `/health` and
 * reject an oversized prompt. Returns how many tokens the prefill had fed by then.
 */
async function checkAnswersDuringPrefill(url: string, events: string[], trace: Trace) {
  // the long request is in prefill now: the server must still answer
  const [models, health, over] = await Promise.all([
    get(`${url}/v1/models`).then((r) => r.json()),
    get(`${url}/health`).then((r) => r.json()),
    post(`${url}/v1/completions`, { prompt: "y".repeat(50_001) }).then(async (r) => ({
      status: r.status,
      body: await r.json(),
    })),
  ]);
  events.push("models answered");
  const fedWhenAnswered = trace.fed;
  assertEquals(models.data.map((m: { id: string }) => m.id), ["m"]);
  assertEquals(health.status, "ok");
  assert(health.pending >= 1, JSON.stringify(health));
  assertEquals(over.status, 400);
  assertEquals(over.body.error.code, "context_length_exceeded");
  assertEquals(over.body.error.param, "prompt");
  assertMatch(over.body.error.message, /50001 tokens, over the server's limit of 50000/);
  return fedWhenAnswered;
}

Deno.test("bad input 8: load test — /v1/models and /health answer while a long prompt runs", async () => {
  const s = standIn(2);
  const LONG = 40_000; // 40 000 tokens in 128-token slices: ~313 blocking feeds
  const srv = await startServer({
    model: s.model,
    tokenizer,
    modelName: "m",
    maxPromptTokens: 50_000,
  });
  const url = `http://127.0.0.1:${srv.port}`;
  try {
    const events: string[] = [];
    const started = s.bigFeed();
    const long = post(`${url}/v1/completions`, {
      prompt: "x".repeat(LONG),
      max_tokens: 2,
      temperature: 0,
    }).then(async (r) => {
      events.push("long done");
      return { status: r.status, body: await r.json() };
    });
    const N = 6;
    const clients = Array.from(
      { length: N },
      (_, i) =>
        post(`${url}/v1/completions`, { prompt: `client ${i}`, max_tokens: 3, temperature: 0 })
          .then(async (r) => ({ status: r.status, body: await r.json() })),
    );
    const trace = await started;
    const fedWhenAnswered = await checkAnswersDuringPrefill(url, events, trace);

    const l = await long;
    const done = await Promise.all(clients);
    assertEquals(events, ["models answered", "long done"]);
    assert(fedWhenAnswered < LONG, `prefill had fed ${fedWhenAnswered} of ${LONG} tokens`);
    assertEquals(l.status, 200);
    assertEquals(l.body.choices[0].text, "aa");
    assertEquals(l.body.usage.prompt_tokens, LONG);
    assertEquals(trace.fed, LONG + 1); // prompt, then one generated token fed back
    for (const c of done) {
      assertEquals(c.status, 200);
      assertEquals(c.body.choices[0].text, "aaa");
    }
    assert(s.traces.every((t) => t.destroyed));
  } finally {
    await srv.close();
  }
});

for (const stream of [false, true]) {
  Deno.test(`bad input 8: a client that has gone stops its prefill (stream: ${stream})`, async () => {
    const s = standIn(3);
    const LONG = 100_000;
    const srv = await startServer({ model: s.model, tokenizer, maxPromptTokens: LONG });
    try {
      const started = s.bigFeed();
      const client = new AbortController();
      const r = post(`http://127.0.0.1:${srv.port}/v1/completions`, {
        prompt: "x".repeat(LONG),
        max_tokens: 4,
        stream,
      }, { signal: client.signal }).catch((e) => e);
      const trace = await started;
      client.abort();
      const res = await r;
      if (!(res instanceof Error)) await res.body?.cancel().catch(() => {});
      for (let i = 0; i < 600 && !trace.destroyed; i++) await new Promise((r) => setTimeout(r, 50));
      assert(trace.destroyed, "the session was not released after the client left");
      assert(trace.fed < LONG, `prefill ran to the end (${trace.fed} tokens) for a gone client`);
    } finally {
      await srv.close();
    }
  });
}

/** Send a raw HTTP/1.1 request (fetch cannot set Host) and return the status line and body. */
async function rawRequest(port: number, head: string, body = ""): Promise<[number, string]> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const bytes = new TextEncoder().encode(body);
    await conn.write(new TextEncoder().encode(
      `${head}\r\ncontent-length: ${bytes.length}\r\nconnection: close\r\n\r\n`,
    ));
    await conn.write(bytes);
    let text = "";
    const buf = new Uint8Array(65536);
    const deadline = Date.now() + LIMIT;
    while (Date.now() < deadline) {
      const n = await conn.read(buf);
      if (n === null) break;
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    return [Number(text.split(" ")[1]), text.slice(text.indexOf("\r\n\r\n") + 4)];
  } finally {
    conn.close();
  }
}

Deno.test("bad input 8–9: body cap, JSON only, loopback Host names", async () => {
  const s = standIn(0);
  const srv = await startServer({ model: s.model, tokenizer, maxBodyBytes: 1000 });
  const url = `http://127.0.0.1:${srv.port}/v1/completions`;
  try {
    const big = await post(url, { prompt: "x".repeat(2000) });
    assertEquals(big.status, 413);
    assertEquals((await big.json()).error.code, "request_too_large");
    // a streamed body without Content-Length is cut at the cap as well
    const chunks = new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < 5; i++) c.enqueue(new TextEncoder().encode(" ".repeat(400)));
        c.close();
      },
    });
    const streamed = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: chunks,
      signal: AbortSignal.timeout(LIMIT),
    });
    assertEquals(streamed.status, 413);
    await streamed.body?.cancel();

    const plain = await fetch(url, {
      method: "POST",
      headers: { "content-type": "text/plain" },
      body: JSON.stringify({ prompt: "hi" }),
      signal: AbortSignal.timeout(LIMIT),
    });
    assertEquals(plain.status, 415);
    const pe = await plain.json();
    assertEquals(pe.error.code, "unsupported_media_type");
    assertMatch(pe.error.message, /got "text\/plain"/);
    assertEquals(s.traces.length, 0); // none of these reached the model

    const body = JSON.stringify({ prompt: "hi", max_tokens: 1 });
    const head = (host: string) =>
      `POST /v1/completions HTTP/1.1\r\nhost: ${host}\r\ncontent-type: application/json`;
    const [evil, evilBody] = await rawRequest(srv.port, head("evil.example:8000"), body);
    assertEquals(evil, 403);
    assertMatch(evilBody, /Host header \\"evil.example:8000\\" is not a loopback name/);
    for (const ok of ["localhost:1234", "127.0.0.1", "[::1]:80"]) {
      const [st] = await rawRequest(srv.port, head(ok), body);
      assertEquals(st, 200, ok);
    }
    assertEquals(s.traces.length, 3);
  } finally {
    await srv.close();
  }
});

Deno.test("bad input 9: --api-key is required, compared, and never echoed", async () => {
  const s = standIn(0);
  const key = "sk-local-0123456789";
  const srv = await startServer({ model: s.model, tokenizer, apiKey: key, modelName: "m" });
  const url = `http://127.0.0.1:${srv.port}`;
  try {
    const none = await get(`${url}/v1/models`);
    assertEquals(none.status, 401);
    assertEquals((await none.json()).error.code, "invalid_api_key");
    const wrong = await get(`${url}/v1/models`, { authorization: "Bearer sk-local-0123456780" });
    assertEquals(wrong.status, 401);
    const text = await wrong.text();
    assert(!text.includes("0123456780") && !text.includes(key), text);
    const good = await get(`${url}/v1/models`, { authorization: `Bearer ${key}` });
    assertEquals(good.status, 200);
    await good.body?.cancel();
    const noAuthPost = await post(`${url}/v1/completions`, { prompt: "hi" });
    assertEquals(noAuthPost.status, 401);
    await noAuthPost.body?.cancel();
    const health = await get(`${url}/health`);
    assertEquals(health.status, 200);
    await health.body?.cancel();
    assertEquals(s.traces.length, 0);
  } finally {
    await srv.close();
  }
  assertEquals(bindWarning("127.0.0.1", false), null);
  assertEquals(bindWarning("localhost", false), null);
  assertMatch(bindWarning("0.0.0.0", false)!, /no --api-key is set, so anyone can/);
  assertMatch(bindWarning("0.0.0.0", true)!, /clear text/);
});

Deno.test("bad input 10: an unknown model is a 404 model_not_found; named states by model", async () => {
  const s = standIn(0);
  const tuned = [] as unknown as RwkvState; // identity only: the stand-in records it
  const srv = await startServer({ model: s.model, tokenizer, modelName: "m", states: { tuned } });
  const url = `http://127.0.0.1:${srv.port}/v1`;
  try {
    const r = await post(`${url}/completions`, { model: "gpt-4", prompt: "hi" });
    assertEquals(r.status, 404);
    const e = (await r.json()).error;
    assertEquals(e.type, "invalid_request_error");
    assertEquals(e.code, "model_not_found");
    assertEquals(e.param, "model");
    assertMatch(e.message, /^The model `gpt-4` does not exist or you do not have access to it/);
    assertEquals(s.traces.length, 0);
    const gone = await get(`${url}/models/gpt-4`);
    assertEquals(gone.status, 404);
    await gone.body?.cancel();

    const models = await (await get(`${url}/models`)).json();
    assertEquals(models.data.map((m: { id: string }) => m.id), ["m", "tuned"]);
    const a =
      await (await post(`${url}/completions`, { model: "tuned", prompt: "hi", max_tokens: 1 }))
        .json();
    assertEquals(a.model, "tuned");
    assertEquals(s.traces[0].initial, tuned);
    const b = await (await post(`${url}/chat/completions`, {
      model: "m",
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 1,
    })).json();
    assertEquals(b.model, "m");
    assertEquals(s.traces[1].initial, undefined);
    const c = await (await post(`${url}/completions`, { prompt: "hi", max_tokens: 1 })).json();
    assertEquals(c.model, "m");
  } finally {
    await srv.close();
  }
});

/** Two state files in dir, a.pth and b.pth, every wkv value −20 and +20 respectively. */
async function writeStateFiles(dir: string): Promise<string[]> {
  const { loadModel } = await import("../lib/model/load.ts");
  const { serializeState } = await import("../lib/train/state_file.ts");
  const path = new URL("../models/default.safetensors", import.meta.url).pathname;
  const cfg = (await loadModel(path)).weights.config;
  const files = ["a", "b"].map((n) => `${dir}/${n}.pth`);
  for (const [i, f] of files.entries()) {
    const s = Array.from(
      { length: cfg.nLayer },
      () => new Float32Array(cfg.nHead * cfg.headSize ** 2).fill(20 * (2 * i - 1)),
    );
    await Deno.writeFile(f, serializeState(s, cfg, "peft", "f32"));
  }
  return files;
}

/** `deno run scripts/serve.ts` on port 0 with the API key and the states as `one` and `two`. */
function spawnServe(key: string, files: string[]) {
  return new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "scripts/serve.ts",
      "--port",
      "0",
      "--api-key",
      key,
      "--state",
      `one=${files[0]}`,
      "--state",
      `two=${files[1]}`,
    ],
    cwd: new URL("..", import.meta.url).pathname,
    env: { NO_COLOR: "1", XDG_RUNTIME_DIR: "/tmp" },
    stdout: "null",
    stderr: "piped",
  }).spawn();
}

/** The port from the server's first stderr line, which must not show the key. */
async function readPort(lines: ReadableStreamDefaultReader<string>, key: string) {
  let first = "";
  while (!first.includes("\n")) {
    const { done, value } = await lines.read();
    if (done) break;
    first += value;
  }
  assert(!first.includes(key), "the API key was logged");
  const port = Number(/127\.0\.0\.1:(\d+)\/v1/.exec(first)?.[1]);
  assert(port > 0, first);
  return port;
}

/** The three models are listed and each state gives its own logits. */
async function checkNamedStates(port: number, key: string) {
  const auth = { authorization: `Bearer ${key}` };
  const url = `http://127.0.0.1:${port}/v1`;
  const models = await (await get(`${url}/models`, auth)).json();
  assertEquals(models.data.map((m: { id: string }) => m.id), ["default", "one", "two"]);
  const texts: string[] = [];
  for (const model of ["default", "one", "two"]) {
    const r = await post(`${url}/completions`, {
      model,
      prompt: "T",
      max_tokens: 1,
      temperature: 0,
      logprobs: 1,
    }, { headers: auth });
    assertEquals(r.status, 200, model);
    const j = await r.json();
    assertEquals(j.model, model);
    texts.push(JSON.stringify(j.choices[0].logprobs.top_logprobs[0]));
  }
  // each state gives its own logits (the same state gives bit-identical ones)
  assertEquals(new Set(texts).size, 3, texts.join(" "));
}

Deno.test({
  name: "bad input 9–10: `deno task serve` with --api-key and two named --state files",
  ignore: !(await hasAdapter()),
  async fn() {
    const dir = await Deno.makeTempDir();
    const files = await writeStateFiles(dir);
    const key = "test-key-0123456789";
    const child = spawnServe(key, files);
    const lines = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    try {
      await checkNamedStates(await readPort(lines, key), key);
    } finally {
      child.kill("SIGINT");
      await lines.cancel();
      await child.status;
      await Deno.remove(dir, { recursive: true });
    }
  },
});

async function hasAdapter(): Promise<boolean> {
  try {
    return (await navigator.gpu?.requestAdapter()) != null;
  } catch {
    return false;
  }
}
