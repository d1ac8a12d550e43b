/**
 * An OpenAI-compatible HTTP server: `/v1/completions`, `/v1/chat/completions` (RWKV chat
 * template), streaming as server-sent events, `logprobs`, `/v1/models`, `/health`. Requests run
 * one at a time on the GPU (a queue); bodies are validated with zod (400 naming the field).
 *
 * Hostile input is bounded before any work (see `guard.ts`): loopback Host names only unless
 * bound elsewhere, an optional bearer token, JSON bodies only, a body size cap, a prompt length
 * cap. Prefill runs in slices that yield to the event loop, so `/v1/models` and `/health`
 * answer while a long prompt runs, and work stops once its client has gone.
 *
 * @module
 */
import { z } from "zod";
import type { RwkvState } from "../model/types.ts";
import type { Tokenizer } from "../tokenizer/mod.ts";
import { generate, type LanguageModel } from "../generate/generate.ts";
import { chatPrompt, ChatRequestSchema, CompletionRequestSchema } from "./openai.ts";
import { ClientGone, slicedFeed, tracked } from "./session.ts";
import {
  checkApiKey,
  checkHost,
  errorResponse,
  HttpError,
  isLoopback,
  json,
  readJsonBody,
} from "./guard.ts";
import {
  asHttpError,
  completionBody,
  errorBody,
  type Job,
  modelObject,
  rid,
  writeEvents,
} from "./respond.ts";

/** A session the server drives (a `GpuSession` is one). */
export interface ServedSession extends LanguageModel {
  /** Free the session's buffers. */
  destroy(): void;
}

/** What the server needs from a model (a `GpuModel` is one). */
export interface ServedModel {
  session(initial?: RwkvState): ServedSession;
}

/**
 * Longest prompt by default, in tokens. RWKV has no fixed context (it is a recurrent network),
 * so this is a chosen bound: 8192 tokens, about 30 KB of English.
 */
export const DEFAULT_MAX_PROMPT_TOKENS = 8192;
/** Largest request body by default: 1 MiB. */
export const DEFAULT_MAX_BODY_BYTES = 2 ** 20;
/** Prompt tokens fed between two turns of the event loop. */
export const DEFAULT_PREFILL_SLICE = 128;

/** The plain-data server options (validated with zod). */
export const ServerLimitsSchema = z.object({
  /** Name reported by `/v1/models` and in responses. */
  modelName: z.string().min(1).default("rwkv7"),
  /** Address to bind; anything but loopback also accepts any Host header. */
  hostname: z.string().min(1).default("127.0.0.1"),
  /** Port; 0 picks a free one. */
  port: z.number().int().min(0).max(65535).default(0),
  /** Default `max_tokens` of chat requests that give none. */
  defaultMaxTokens: z.number().int().min(0).default(256),
  /** Longest prompt in tokens (400 `context_length_exceeded` past it). */
  maxPromptTokens: z.number().int().min(1).default(DEFAULT_MAX_PROMPT_TOKENS),
  /** Largest request body in bytes (413 past it). */
  maxBodyBytes: z.number().int().min(1).default(DEFAULT_MAX_BODY_BYTES),
  /** Prompt tokens fed per slice of prefill. */
  prefillSlice: z.number().int().min(1).default(DEFAULT_PREFILL_SLICE),
  /** Bearer token every `/v1` request must send (`/health` is open). */
  apiKey: z.string().min(8, "the API key must have at least 8 characters").optional(),
});

/** Options of {@link startServer}. */
export interface ServerOptions extends Partial<z.input<typeof ServerLimitsSchema>> {
  model: ServedModel;
  tokenizer: Tokenizer;
  /** Initial state of requests for `modelName` (zero state when omitted). */
  state?: RwkvState;
  /** More initial states served by name: a request's `model` picks one. */
  states?: Record<string, RwkvState>;
}

/** A running server. */
export interface RunningServer {
  port: number;
  /** Stop accepting requests, finish the one in flight, and close. */
  close(): Promise<void>;
}

/**
 * A warning for a bind address beyond loopback (or `null`): other machines can reach the
 * server, and without `apiKey` anyone who can reach it can use it.
 */
export function bindWarning(hostname: string, hasApiKey: boolean): string | null {
  if (isLoopback(hostname)) return null;
  return `warning: --host ${hostname} serves beyond this machine: every client that can reach ` +
    `it can use the model` +
    (hasApiKey
      ? " with the API key; the key travels in clear text over plain HTTP"
      : "; no --api-key is set, so anyone can");
}

/** The server's request handling over one model, tokenizer and set of named states. */
class Handler {
  readonly o: z.output<typeof ServerLimitsSchema>;
  readonly models: Map<string, RwkvState | undefined>;
  queue: Promise<unknown> = Promise.resolve();
  /** Requests queued or running. */
  pending = 0;

  constructor(readonly options: ServerOptions) {
    const { model: _m, tokenizer: _t, state, states, ...limits } = options;
    this.o = ServerLimitsSchema.parse(limits);
    this.models = new Map([[this.o.modelName, state]]);
    for (const [n, st] of Object.entries(states ?? {})) {
      if (this.models.has(n)) throw new RangeError(`state name "${n}" is used twice`);
      this.models.set(n, st);
    }
  }

  enqueue<T>(job: () => Promise<T>): Promise<T> {
    this.pending++;
    const run = this.queue.then(job, job).finally(() => this.pending--);
    this.queue = run.catch(() => {});
    return run;
  }

  async handle(req: Request): Promise<Response> {
    const path = new URL(req.url).pathname.replace(/\/$/, "");
    try {
      if (isLoopback(this.o.hostname)) checkHost(req);
      if (path === "/health" && req.method === "GET") {
        return json({ status: "ok", pending: this.pending });
      }
      if (this.o.apiKey !== undefined && path.startsWith("/v1/")) {
        await checkApiKey(req, this.o.apiKey);
      }
      if (path === "/v1/models" && req.method === "GET") {
        return json({ object: "list", data: [...this.models.keys()].map(modelObject) });
      }
      if (path.startsWith("/v1/models/") && req.method === "GET") {
        return json(modelObject(this.modelNamed(decodeURIComponent(path.slice(11)), null)));
      }
      const route = { "/v1/completions": false, "/v1/chat/completions": true }[path];
      if (route === undefined) throw new HttpError(404, `no route ${req.method} ${path}`);
      if (req.method !== "POST") throw new HttpError(405, `${path} takes POST`);
      const job = await this.prepare(req, route);
      return job.body.stream ? this.stream(job) : await this.plain(job);
    } catch (e) {
      return errorResponse(asHttpError(e));
    }
  }

  modelNamed(name: string, param: string | null): string {
    if (this.models.has(name)) return name;
    throw new HttpError(
      404,
      `The model \`${name}\` does not exist or you do not have access to it. Served: ` +
        [...this.models.keys()].map((n) => `\`${n}\``).join(", "),
      param,
      "model_not_found",
    );
  }

  async prepare(req: Request, chat: boolean): Promise<Job> {
    const max = this.o.maxBodyBytes;
    const body = chat
      ? await readJsonBody(req, ChatRequestSchema, max)
      : await readJsonBody(req, CompletionRequestSchema, max);
    const model = this.modelNamed(body.model ?? this.o.modelName, "model");
    const prompt = "messages" in body ? chatPrompt(body.messages) : body.prompt;
    const field = chat ? "messages" : "prompt";
    const ids = this.options.tokenizer.encode(prompt);
    if (ids.length === 0) throw new HttpError(400, `${field}: encodes to no tokens`, field);
    if (ids.length > this.o.maxPromptTokens) this.tooLong(field, ids.length);
    const abort = new AbortController();
    if (req.signal.aborted) abort.abort();
    req.signal.addEventListener("abort", () => abort.abort());
    return {
      chat,
      id: (chat ? "chatcmpl-" : "cmpl-") + rid(),
      model,
      state: this.models.get(model),
      ids,
      k: "messages" in body ? (body.top_logprobs ?? 0) : (body.logprobs ?? 0),
      wantLogprobs: "messages" in body ? body.logprobs : body.logprobs != null,
      body,
      maxTokens: ("max_completion_tokens" in body ? body.max_completion_tokens : undefined) ??
        body.max_tokens ?? (chat ? this.o.defaultMaxTokens : 16),
      stops: chat ? ["\n\n", ...body.stop] : body.stop,
      abort,
    };
  }

  tooLong(field: string, n: number): never {
    throw new HttpError(
      400,
      `${field}: the prompt is ${n} tokens, over the server's limit of ` +
        `${this.o.maxPromptTokens} (--max-prompt-tokens); shorten it`,
      field,
      "context_length_exceeded",
    );
  }

  /** Start generation for `job` (inside its queue turn). */
  start(job: Job) {
    if (job.abort.signal.aborted) throw new ClientGone();
    const session = this.options.model.session(job.state);
    const fed = slicedFeed(
      session,
      this.o.prefillSlice,
      job.abort.signal,
      job.beat,
      !job.body.stream,
    );
    const t = tracked(fed, this.options.tokenizer, job.k);
    const b = job.body;
    const it = generate(t.lm, this.options.tokenizer, job.ids, {
      temperature: b.temperature,
      topP: b.top_p,
      presencePenalty: b.presence_penalty,
      frequencyPenalty: b.frequency_penalty,
      maxTokens: job.maxTokens,
      stop: job.stops,
      seed: b.seed,
      signal: job.abort.signal,
    });
    return { session, it, entry: t.entry };
  }

  /** The whole completion as one JSON object (a job in the queue). */
  complete(job: Job): Promise<Record<string, unknown>> {
    return this.enqueue(async () => {
      const { session, it, entry } = this.start(job);
      try {
        return await completionBody(job, it, entry);
      } finally {
        session.destroy();
      }
    });
  }

  /**
   * A non-streamed answer. Quick jobs answer with their status as usual; once a job has run
   * for a heartbeat, the 200 is sent and whitespace (valid before JSON) written now and then,
   * so that a client that has gone is noticed and its work stopped.
   */
  async plain(job: Job): Promise<Response> {
    const enc = new TextEncoder();
    let ctl!: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({
      start: (c) => void (ctl = c),
      cancel: () => job.abort.abort(),
    });
    let opened: (() => void) | undefined;
    const open = new Promise<null>((r) => (opened = () => r(null)));
    job.beat = () => {
      opened?.();
      opened = undefined;
      ctl.enqueue(enc.encode(" "));
    };
    const result = this.complete(job);
    const first = await Promise.race([
      result.then((r) => ({ r }), (e) => ({ e: e as unknown })),
      open,
    ]);
    if (first !== null) {
      if ("e" in first) throw first.e;
      return json(first.r);
    }
    result.then(
      (r) => ctl.enqueue(enc.encode(JSON.stringify(r))),
      (e) => {
        if (!job.abort.signal.aborted) ctl.enqueue(enc.encode(JSON.stringify(errorBody(e))));
      },
    ).finally(() => {
      try {
        ctl.close();
      } catch { /* the client has gone */ }
    });
    return new Response(body, { headers: { "content-type": "application/json" } });
  }

  stream(job: Job): Response {
    const run = async (controller: ReadableStreamDefaultController<Uint8Array>) => {
      job.beat = () => controller.enqueue(new TextEncoder().encode(": keep-alive\n\n"));
      const { session, it, entry } = this.start(job);
      try {
        await writeEvents(job, it, entry, controller);
      } finally {
        session.destroy();
      }
    };
    const stream = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.enqueue(() => run(controller)).catch((e) => {
          if (!job.abort.signal.aborted) controller.error(e);
        });
      },
      cancel: () => job.abort.abort(),
    });
    return new Response(stream, {
      headers: { "content-type": "text/event-stream", "cache-control": "no-cache" },
    });
  }
}

/**
 * Start the server.
 *
 * @returns the port and `close()`.
 * @throws {z.ZodError} for bad limits (a port out of range, a short API key)
 * @example
 * ```ts ignore
 * const srv = await startServer({ model, tokenizer });
 * const r = await fetch(`http://127.0.0.1:${srv.port}/v1/models`);
 * await srv.close();
 * ```
 */
export function startServer(options: ServerOptions): Promise<RunningServer> {
  const h = new Handler(options);
  return new Promise((resolve) => {
    const ctl = new AbortController();
    const server = Deno.serve({
      hostname: h.o.hostname,
      port: h.o.port,
      signal: ctl.signal,
      onListen: ({ port }) =>
        resolve({
          port,
          close: async () => {
            ctl.abort();
            await server.finished;
            await h.queue;
          },
        }),
    }, (req) => h.handle(req));
  });
}
