/**
 * An OpenAI-compatible HTTP server on 127.0.0.1: `/v1/completions`, `/v1/chat/completions`
 * (RWKV chat template), streaming as server-sent events, `logprobs`, `/v1/models`. Requests run
 * one at a time on the GPU (a queue); bodies are validated with zod (400 naming the field).
 *
 * @module
 */
import type { z } from "zod";
import type { GpuModel } from "../model/gpu_model.ts";
import type { RwkvState } from "../model/types.ts";
import type { Tokenizer } from "../tokenizer/mod.ts";
import { generate, type GenerationResult, type LanguageModel } from "../generate/generate.ts";
import {
  chatPrompt,
  ChatRequestSchema,
  CompletionRequestSchema,
  type TokenLogprob,
  tokenLogprobs,
} from "./openai.ts";

/** Options of {@link startServer}. */
export interface ServerOptions {
  model: GpuModel;
  tokenizer: Tokenizer;
  /** Initial state of every request (zero state when omitted). */
  state?: RwkvState;
  /** Name reported by `/v1/models` and in responses. Default "rwkv7". */
  modelName?: string;
  /** Port on 127.0.0.1; 0 (default) picks a free one. */
  port?: number;
  /** Default `max_tokens` when a request gives none. Default 256. */
  defaultMaxTokens?: number;
}

/** A running server. */
export interface RunningServer {
  port: number;
  /** Stop accepting requests, finish the one in flight, and close. */
  close(): Promise<void>;
}

class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly param: string | null = null) {
    super(message);
  }
}

const json = (body: unknown, status = 200) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });

function errorResponse(e: HttpError): Response {
  const type = e.status === 400 ? "invalid_request_error" : "server_error";
  return json({ error: { message: e.message, type, param: e.param, code: null } }, e.status);
}

async function parseBody<S extends z.ZodType>(req: Request, schema: S): Promise<z.output<S>> {
  let body: unknown;
  try {
    body = await req.json();
  } catch {
    throw new HttpError(400, "the request body is not valid JSON");
  }
  const r = schema.safeParse(body);
  if (!r.success) {
    const i = r.error.issues[0];
    const field = i.path.join(".") || "body";
    throw new HttpError(400, `${field}: ${i.message}`, field);
  }
  return r.data;
}

/** A session wrapper recording the logits each generated token was drawn from. */
function tracked(session: LanguageModel, tokenizer: Tokenizer, k: number) {
  let pending: Float32Array | undefined;
  const entries: TokenLogprob[] = [];
  const lm: LanguageModel = {
    vocabSize: session.vocabSize,
    feed: async (tokens) => {
      if (pending && tokens.length === 1) {
        entries.push(tokenLogprobs(pending, tokens[0], k, tokenizer));
      }
      pending = await session.feed(tokens);
      return pending;
    },
  };
  const entry = (i: number, token: number) =>
    entries[i] ?? tokenLogprobs(pending!, token, k, tokenizer);
  return { lm, entry };
}

const finish = (r: GenerationResult) => (r.stopReason === "max_tokens" ? "length" : "stop");

/**
 * Start the server.
 *
 * @returns the port and `close()`.
 * @example
 * ```ts ignore
 * const srv = await startServer({ model, tokenizer });
 * const r = await fetch(`http://127.0.0.1:${srv.port}/v1/models`);
 * await srv.close();
 * ```
 */
export function startServer(options: ServerOptions): Promise<RunningServer> {
  const { model, tokenizer } = options;
  const name = options.modelName ?? "rwkv7";
  let queue: Promise<unknown> = Promise.resolve();
  const enqueue = <T>(job: () => Promise<T>): Promise<T> => {
    const run = queue.then(job, job);
    queue = run.catch(() => {});
    return run;
  };
  const enc = new TextEncoder();
  const created = () => Math.floor(Date.now() / 1000);
  const rid = () => crypto.randomUUID().replaceAll("-", "").slice(0, 24);

  async function complete(req: Request, chat: boolean): Promise<Response> {
    const body = chat
      ? await parseBody(req, ChatRequestSchema)
      : await parseBody(req, CompletionRequestSchema);
    const prompt = "messages" in body ? chatPrompt(body.messages) : body.prompt;
    const k = "messages" in body ? (body.top_logprobs ?? 0) : (body.logprobs ?? 0);
    const wantLogprobs = "messages" in body ? body.logprobs : body.logprobs != null;
    const maxTokens = ("max_completion_tokens" in body ? body.max_completion_tokens : undefined) ??
      body.max_tokens ?? (chat ? options.defaultMaxTokens ?? 256 : 16);
    const ids = tokenizer.encode(prompt);
    if (ids.length === 0) throw new HttpError(400, "prompt: encodes to no tokens", "prompt");
    const stops = chat ? ["\n\n", ...body.stop] : body.stop;
    const abort = new AbortController();
    req.signal.addEventListener("abort", () => abort.abort());
    const id = (chat ? "chatcmpl-" : "cmpl-") + rid();
    const start = () => {
      const session = model.session(options.state);
      const t = tracked(session, tokenizer, k);
      const it = generate(t.lm, tokenizer, ids, {
        temperature: body.temperature,
        topP: body.top_p,
        presencePenalty: body.presence_penalty,
        frequencyPenalty: body.frequency_penalty,
        maxTokens,
        stop: stops,
        seed: body.seed,
        signal: abort.signal,
      });
      return { session, it, entry: t.entry };
    };
    const logprobsOf = (items: { e: TokenLogprob; offset: number }[]) => {
      if (!wantLogprobs) return null;
      if (chat) {
        return {
          content: items.map(({ e }) => ({
            token: e.token,
            logprob: e.logprob,
            bytes: e.bytes,
            top_logprobs: e.top.map((x) => ({
              token: x.token,
              logprob: x.logprob,
              bytes: x.bytes,
            })),
          })),
        };
      }
      return {
        tokens: items.map(({ e }) => e.token),
        token_logprobs: items.map(({ e }) => e.logprob),
        top_logprobs: items.map(({ e }) =>
          Object.fromEntries(e.top.map((x) => [x.token, x.logprob]))
        ),
        text_offset: items.map(({ offset }) => offset),
      };
    };
    const usage = (r: GenerationResult) => ({
      prompt_tokens: ids.length,
      completion_tokens: r.tokens.length,
      total_tokens: ids.length + r.tokens.length,
    });
    const object = chat ? "chat.completion" : "text_completion";

    if (!body.stream) {
      return await enqueue(async () => {
        const { session, it, entry } = start();
        try {
          let text = "", n = 0;
          const lp: { e: TokenLogprob; offset: number }[] = [];
          let r = await it.next();
          while (!r.done) {
            if (wantLogprobs) lp.push({ e: entry(n, r.value.token), offset: text.length });
            text += r.value.text;
            n++;
            r = await it.next();
          }
          const choice = chat
            ? { index: 0, message: { role: "assistant", content: text }, logprobs: logprobsOf(lp) }
            : { index: 0, text, logprobs: logprobsOf(lp) };
          return json({
            id,
            object,
            created: created(),
            model: name,
            choices: [{ ...choice, finish_reason: finish(r.value) }],
            usage: usage(r.value),
          });
        } finally {
          session.destroy();
        }
      });
    }

    const chunkObject = chat ? "chat.completion.chunk" : "text_completion";
    const sse = (data: unknown) => enc.encode(`data: ${JSON.stringify(data)}\n\n`);
    const frame = (piece: Record<string, unknown>, finishReason: string | null) => ({
      id,
      object: chunkObject,
      created: created(),
      model: name,
      choices: [{ index: 0, ...piece, finish_reason: finishReason }],
    });
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        enqueue(async () => {
          const { session, it, entry } = start();
          try {
            if (chat) {
              controller.enqueue(
                sse(frame({ delta: { role: "assistant" }, logprobs: null }, null)),
              );
            }
            let n = 0, offset = 0;
            let r = await it.next();
            while (!r.done) {
              const lp = wantLogprobs ? logprobsOf([{ e: entry(n, r.value.token), offset }]) : null;
              const piece = chat
                ? { delta: { content: r.value.text }, logprobs: lp }
                : { text: r.value.text, logprobs: lp };
              controller.enqueue(sse(frame(piece, null)));
              offset += r.value.text.length;
              n++;
              r = await it.next();
            }
            const last = chat ? { delta: {}, logprobs: null } : { text: "", logprobs: null };
            controller.enqueue(sse({ ...frame(last, finish(r.value)), usage: usage(r.value) }));
            controller.enqueue(enc.encode("data: [DONE]\n\n"));
            controller.close();
          } catch (e) {
            if (!abort.signal.aborted) controller.error(e);
          } finally {
            session.destroy();
          }
        });
      },
      cancel() {
        abort.abort();
      },
    });
    return new Response(stream, {
      headers: { "content-type": "text/event-stream", "cache-control": "no-cache" },
    });
  }

  async function handle(req: Request): Promise<Response> {
    const path = new URL(req.url).pathname.replace(/\/$/, "");
    try {
      if (path === "/v1/models" && req.method === "GET") {
        return json({
          object: "list",
          data: [{ id: name, object: "model", created: 0, owned_by: "local" }],
        });
      }
      const route = { "/v1/completions": false, "/v1/chat/completions": true }[path];
      if (route === undefined) throw new HttpError(404, `no route ${req.method} ${path}`);
      if (req.method !== "POST") throw new HttpError(405, `${path} takes POST`);
      return await complete(req, route);
    } catch (e) {
      if (e instanceof HttpError) return errorResponse(e);
      if (e instanceof RangeError) return errorResponse(new HttpError(400, e.message));
      return errorResponse(new HttpError(500, (e as Error).message ?? String(e)));
    }
  }

  return new Promise((resolve) => {
    const ctl = new AbortController();
    const server = Deno.serve({
      hostname: "127.0.0.1",
      port: options.port ?? 0,
      signal: ctl.signal,
      onListen: ({ port }) =>
        resolve({
          port,
          close: async () => {
            ctl.abort();
            await server.finished;
            await queue;
          },
        }),
    }, handle);
  });
}
