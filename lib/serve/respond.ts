/**
 * The OpenAI-shaped bodies the server sends: a finished completion as one JSON object, a
 * streamed one as server-sent events, `logprobs` in the completions or chat layout, usage,
 * errors and model objects. `server.ts` routes and queues; this file only shapes answers.
 *
 * @module
 */
import type { z } from "zod";
import type { RwkvState } from "../model/types.ts";
import type { GeneratedChunk, GenerationResult } from "../generate/generate.ts";
import type { ChatRequestSchema, CompletionRequestSchema, TokenLogprob } from "./openai.ts";
import { HttpError } from "./guard.ts";

/** OpenAI's finish_reason for a result. */
const finish = (r: GenerationResult) => (r.stopReason === "max_tokens" ? "length" : "stop");

/** One validated request, ready to run. */
export interface Job {
  chat: boolean;
  id: string;
  model: string;
  state: RwkvState | undefined;
  ids: number[];
  k: number;
  wantLogprobs: boolean;
  body: z.output<typeof ChatRequestSchema> | z.output<typeof CompletionRequestSchema>;
  maxTokens: number;
  stops: string[];
  abort: AbortController;
  /** Called now and then during work (writes keep-alive bytes to notice a gone client). */
  beat?: () => void;
}

/** A token's logprob entry and its offset in the text. */
type Lp = { e: TokenLogprob; offset: number };

/** `logprobs` of a choice in the chat or completions layout (null unless asked for). */
function logprobsOf(job: Job, items: Lp[]) {
  if (!job.wantLogprobs) return null;
  if (job.chat) {
    return {
      content: items.map(({ e }) => ({
        token: e.token,
        logprob: e.logprob,
        bytes: e.bytes,
        top_logprobs: e.top.map((x) => ({ token: x.token, logprob: x.logprob, bytes: x.bytes })),
      })),
    };
  }
  return {
    tokens: items.map(({ e }) => e.token),
    token_logprobs: items.map(({ e }) => e.logprob),
    top_logprobs: items.map(({ e }) => Object.fromEntries(e.top.map((x) => [x.token, x.logprob]))),
    text_offset: items.map(({ offset }) => offset),
  };
}

const usage = (job: Job, r: GenerationResult) => ({
  prompt_tokens: job.ids.length,
  completion_tokens: r.tokens.length,
  total_tokens: job.ids.length + r.tokens.length,
});

/** Seconds since the epoch, for `created`. */
const created = () => Math.floor(Date.now() / 1000);
/** A random response id suffix (24 hex digits). */
export const rid = () => crypto.randomUUID().replaceAll("-", "").slice(0, 24);

/** Tokens as they are generated, ending in the result. */
export type Tokens = AsyncGenerator<GeneratedChunk, GenerationResult>;
/** The logprob entry of the `n`-th generated token. */
export type EntryOf = (n: number, token: number) => TokenLogprob;

/** Drain `it` into the whole completion (or chat completion) object of `job`. */
export async function completionBody(
  job: Job,
  it: Tokens,
  entry: EntryOf,
): Promise<Record<string, unknown>> {
  let text = "", n = 0;
  const lp: Lp[] = [];
  let r = await it.next();
  while (!r.done) {
    if (job.wantLogprobs) lp.push({ e: entry(n, r.value.token), offset: text.length });
    text += r.value.text;
    n++;
    r = await it.next();
  }
  const message = { role: "assistant", content: text };
  const choice = job.chat
    ? { index: 0, message, logprobs: logprobsOf(job, lp) }
    : { index: 0, text, logprobs: logprobsOf(job, lp) };
  return {
    id: job.id,
    object: job.chat ? "chat.completion" : "text_completion",
    created: created(),
    model: job.model,
    choices: [{ ...choice, finish_reason: finish(r.value) }],
    usage: usage(job, r.value),
  };
}

/** Drain `it` into `controller` as server-sent events, ending in `data: [DONE]`. */
export async function writeEvents(
  job: Job,
  it: Tokens,
  entry: EntryOf,
  controller: ReadableStreamDefaultController<Uint8Array>,
): Promise<void> {
  const enc = new TextEncoder();
  const sse = (data: unknown) => enc.encode(`data: ${JSON.stringify(data)}\n\n`);
  const frame = (piece: Record<string, unknown>, finishReason: string | null) => ({
    id: job.id,
    object: job.chat ? "chat.completion.chunk" : "text_completion",
    created: created(),
    model: job.model,
    choices: [{ index: 0, ...piece, finish_reason: finishReason }],
  });
  if (job.chat) {
    controller.enqueue(sse(frame({ delta: { role: "assistant" }, logprobs: null }, null)));
  }
  let n = 0, offset = 0;
  let r = await it.next();
  while (!r.done) {
    const lp = job.wantLogprobs ? logprobsOf(job, [{ e: entry(n, r.value.token), offset }]) : null;
    const piece = job.chat
      ? { delta: { content: r.value.text }, logprobs: lp }
      : { text: r.value.text, logprobs: lp };
    controller.enqueue(sse(frame(piece, null)));
    offset += r.value.text.length;
    n++;
    r = await it.next();
  }
  const last = job.chat ? { delta: {}, logprobs: null } : { text: "", logprobs: null };
  controller.enqueue(sse({ ...frame(last, finish(r.value)), usage: usage(job, r.value) }));
  controller.enqueue(enc.encode("data: [DONE]\n\n"));
  controller.close();
}

/** Any error as an HttpError: RangeError → 400, others → 500. */
export function asHttpError(e: unknown): HttpError {
  if (e instanceof HttpError) return e;
  if (e instanceof RangeError) return new HttpError(400, e.message);
  return new HttpError(500, (e as Error).message ?? String(e));
}

/** The OpenAI-shaped error object, for an error after the status was sent. */
export function errorBody(e: unknown) {
  const h = asHttpError(e);
  return {
    error: { message: h.message, type: "server_error", param: h.param, code: h.code },
  };
}

/** A `/v1/models` entry. */
export const modelObject = (id: string) => ({ id, object: "model", created: 0, owned_by: "local" });
