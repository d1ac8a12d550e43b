/**
 * An OpenAI-compatible HTTP endpoint as the guide (`/v1/completions` or
 * `/v1/chat/completions`), with `logprobs` when asked for. The API key comes from an
 * environment variable named by an option and is sent as a Bearer header; it never appears in a
 * message. Each attempt has a timeout (AbortSignal); 429, 5xx, timeouts and network errors are
 * retried with exponential backoff; every failure is a {@link GuideError} naming the endpoint
 * and the problem. Responses are validated with zod.
 *
 * @module
 */
import { z } from "zod";
import type { Tokenizer } from "../tokenizer/mod.ts";
import {
  addCost,
  type ContinueOptions,
  type Guide,
  type GuideCost,
  GuideError,
  type GuideOutput,
  type TopLogprobs,
  type Vocabulary,
  zeroCost,
} from "./guide.ts";

/** Options of {@link HttpGuide}. */
export const HttpGuideOptionsSchema = z.object({
  /** The endpoint: a full `/v1/completions` or `/v1/chat/completions` URL, or a base URL. */
  url: z.string().regex(/^https?:\/\/\S+$/, "expected an http:// or https:// URL"),
  /** Which API a base URL gets (a full URL decides by its path). Default "completions". */
  api: z.enum(["completions", "chat"]).optional(),
  /** `model` field of the requests. */
  model: z.string().optional(),
  /** Name of the environment variable holding the API key (none: no Authorization header). */
  apiKeyEnv: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "expected a variable name").optional(),
  temperature: z.number().min(0).max(2).default(0),
  /** Default `max_tokens` of a call. */
  maxTokens: z.number().int().min(1).default(64),
  /** Top log-probabilities asked per token (0 = none; completions allow at most 5). */
  topLogprobs: z.number().int().min(0).max(20).default(0),
  /** Timeout of one attempt, ms. */
  timeoutMs: z.number().int().positive().default(60_000),
  /** Retries after the first attempt (429, 5xx, timeout, network error). */
  retries: z.number().int().min(0).max(10).default(3),
  /** First backoff, ms; doubles each retry (a 429's Retry-After wins when longer). */
  backoffMs: z.number().min(0).default(500),
  /** Longest single wait, ms. */
  maxBackoffMs: z.number().min(0).default(10_000),
});
/** HTTP guide options (input form). */
export type HttpGuideOptions = z.input<typeof HttpGuideOptionsSchema>;

const Top = z.record(z.string(), z.number());
const CompletionResponse = z.object({
  choices: z.array(z.object({
    text: z.string(),
    logprobs: z.object({
      tokens: z.array(z.string()).optional(),
      top_logprobs: z.array(Top.nullable()).nullable().optional(),
    }).nullable().optional(),
  })).min(1, "no choices"),
  usage: z.object({ completion_tokens: z.number().optional() }).nullable().optional(),
});
const ChatEntry = z.object({
  token: z.string(),
  logprob: z.number(),
  top_logprobs: z.array(z.object({ token: z.string(), logprob: z.number() })).optional(),
});
const ChatResponse = z.object({
  choices: z.array(z.object({
    message: z.object({ content: z.string().nullable() }),
    logprobs: z.object({ content: z.array(ChatEntry).nullable().optional() }).nullable()
      .optional(),
  })).min(1, "no choices"),
  usage: z.object({ completion_tokens: z.number().optional() }).nullable().optional(),
});

/** One token's text and its alternatives, as the endpoint gave them. */
interface RawToken {
  token: string;
  top: [string, number][];
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    }, { once: true });
  });

/**
 * A guide behind an OpenAI-compatible HTTP endpoint.
 *
 * @example
 * ```ts ignore
 * const guide = new HttpGuide({ url: "http://127.0.0.1:8080/v1/completions", apiKeyEnv: "GUIDE_KEY" });
 * const out = await guide.continue("Question: 2+2?\nAnswer:");
 * ```
 */
export class HttpGuide implements Guide {
  readonly name: string;
  readonly vocabulary?: Vocabulary;
  readonly #o: z.output<typeof HttpGuideOptionsSchema>;
  readonly #url: string;
  readonly #chat: boolean;
  readonly #key?: string;
  #cost: GuideCost = zeroCost();

  /**
   * @param options endpoint, key variable, sampling, timeout and retries
   * @param tokenizer the student's tokenizer: returned tokens are mapped to its ids when each
   *   encodes to exactly one id (then outputs carry `tokens`, and `top` when log-probs were asked)
   * @throws {GuideError} when `apiKeyEnv` names an unset variable
   */
  constructor(options: HttpGuideOptions, readonly tokenizer?: Tokenizer) {
    const o = this.#o = HttpGuideOptionsSchema.parse(options);
    const u = new URL(o.url);
    const path = u.pathname.replace(/\/+$/, "");
    if (/\/chat\/completions$/.test(path)) this.#chat = true;
    else if (/\/completions$/.test(path)) this.#chat = false;
    else {
      this.#chat = o.api === "chat";
      u.pathname = `${path.endsWith("/v1") ? path : `${path}/v1`}/` +
        (this.#chat ? "chat/completions" : "completions");
    }
    this.#url = u.toString();
    this.name = this.#url;
    if (o.apiKeyEnv) {
      const key = Deno.env.get(o.apiKeyEnv);
      if (!key) {
        throw new GuideError(this.name, `needs an API key in $${o.apiKeyEnv}, which is not set`);
      }
      this.#key = key;
    }
    if (tokenizer) this.vocabulary = { name: tokenizer.name, size: tokenizer.vocabSize };
  }

  /** Running total over every call (attempts counted as requests). */
  get cost(): GuideCost {
    return { ...this.#cost };
  }

  /** The text with the API key masked (defence in depth: messages never carry it). */
  #scrub(s: string): string {
    return this.#key ? s.replaceAll(this.#key, "***") : s;
  }

  #fail(message: string): never {
    throw new GuideError(this.name, this.#scrub(message));
  }

  #body(prompt: string, o: ContinueOptions): Record<string, unknown> {
    const k = this.#o.topLogprobs;
    const common = {
      ...(this.#o.model ? { model: this.#o.model } : {}),
      max_tokens: o.maxTokens ?? this.#o.maxTokens,
      temperature: this.#o.temperature,
      ...(o.stop?.length ? { stop: o.stop.slice(0, 4) } : {}),
    };
    if (this.#chat) {
      return {
        ...common,
        messages: [{ role: "user", content: prompt }],
        ...(k > 0 ? { logprobs: true, top_logprobs: k } : {}),
      };
    }
    return { ...common, prompt, ...(k > 0 ? { logprobs: Math.min(k, 5) } : {}) };
  }

  /** Continue `prompt` (retrying as configured). */
  async continue(prompt: string, options: ContinueOptions = {}): Promise<GuideOutput> {
    const t0 = performance.now();
    const body = JSON.stringify(this.#body(prompt, options));
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (this.#key) headers.authorization = `Bearer ${this.#key}`;
    const attempts = this.#o.retries + 1;
    let last = "";
    let retryAfterMs = 0;
    let requests = 0;
    try {
      for (let a = 0; a < attempts; a++) {
        if (a > 0) await sleep(this.#wait(a, retryAfterMs), options.signal);
        retryAfterMs = 0;
        if (options.signal?.aborted) this.#fail("call was cancelled");
        requests++;
        const signal = AbortSignal.any([
          AbortSignal.timeout(this.#o.timeoutMs),
          ...(options.signal ? [options.signal] : []),
        ]);
        let res: Response, text: string;
        try {
          res = await fetch(this.#url, { method: "POST", headers, body, signal });
          text = await res.text();
        } catch (e) {
          if (options.signal?.aborted) this.#fail("call was cancelled");
          const err = e as Error;
          last = err.name === "TimeoutError" || signal.aborted
            ? `timed out after ${this.#o.timeoutMs} ms`
            : `is unreachable (${err.message})`;
          continue;
        }
        if (res.status === 429 || res.status >= 500) {
          last =
            (res.status === 429 ? "is rate-limiting (HTTP 429)" : `returned HTTP ${res.status}`) +
            serverMessage(text);
          const ra = Number(res.headers.get("retry-after"));
          if (res.status === 429 && ra > 0) retryAfterMs = ra * 1000;
          continue;
        }
        if (!res.ok) this.#fail(`returned HTTP ${res.status}${serverMessage(text)}`);
        const out = this.#parse(text);
        const cost = { tokens: out.tokens, requests, ms: performance.now() - t0 };
        return { ...out.output, cost };
      }
      this.#fail(
        `${last}; gave up after ${attempts} attempt${attempts > 1 ? "s" : ""}`,
      );
    } finally {
      this.#cost = addCost(this.#cost, {
        tokens: 0,
        requests,
        ms: performance.now() - t0,
      });
    }
  }

  /** Backoff before attempt `a` (≥ 1): doubling, or a 429's Retry-After seconds if longer. */
  #wait(a: number, retryAfterMs: number): number {
    const exp = this.#o.backoffMs * 2 ** (a - 1);
    return Math.min(this.#o.maxBackoffMs, Math.max(exp, retryAfterMs));
  }

  #parse(text: string): { output: Omit<GuideOutput, "cost">; tokens: number } {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      this.#fail(
        `returned malformed JSON: ${(e as Error).message} (body starts ${
          JSON.stringify(text.slice(0, 80))
        })`,
      );
    }
    const schema = this.#chat ? ChatResponse : CompletionResponse;
    const r = schema.safeParse(json);
    if (!r.success) {
      const i = r.error.issues[0];
      this.#fail(`returned an unexpected response: ${i.path.join(".") || "body"}: ${i.message}`);
    }
    let content: string, raw: RawToken[] | undefined, used: number | undefined;
    if (this.#chat) {
      const d = r.data as z.output<typeof ChatResponse>;
      content = d.choices[0].message.content ?? "";
      raw = d.choices[0].logprobs?.content?.map((e) => ({
        token: e.token,
        top: (e.top_logprobs ?? []).map((t) => [t.token, t.logprob] as [string, number]),
      }));
      used = d.usage?.completion_tokens;
    } else {
      const d = r.data as z.output<typeof CompletionResponse>;
      content = d.choices[0].text;
      const lp = d.choices[0].logprobs;
      raw = lp?.tokens?.map((token, i) => ({
        token,
        top: Object.entries(lp.top_logprobs?.[i] ?? {}),
      }));
      used = d.usage?.completion_tokens;
    }
    const mapped = this.#map(raw);
    const tokens = used ?? raw?.length ?? this.tokenizer?.encode(content).length ??
      content.length;
    this.#cost = addCost(this.#cost, { tokens, requests: 0, ms: 0 });
    return { output: { text: content, ...mapped }, tokens };
  }

  /** Map the endpoint's tokens to student ids when every one is exactly one student token. */
  #map(raw?: RawToken[]): { tokens?: number[]; top?: TopLogprobs[] } {
    const tok = this.tokenizer;
    if (!tok || !raw || raw.length === 0) return {};
    const one = (s: string) => {
      const ids = tok.encode(s);
      return ids.length === 1 && tok.decode(ids) === s ? ids[0] : undefined;
    };
    const ids = raw.map((r) => one(r.token));
    if (ids.some((x) => x === undefined)) return {};
    const hasTop = raw.some((r) => r.top.length > 0);
    if (!hasTop) return { tokens: ids as number[] };
    const top = raw.map((r) => {
      const t: TopLogprobs = { ids: [], logprobs: [] };
      for (const [s, lp] of r.top) {
        const id = one(s);
        if (id !== undefined && !t.ids.includes(id)) {
          t.ids.push(id);
          t.logprobs.push(lp);
        }
      }
      return t;
    });
    return { tokens: ids as number[], top };
  }

  /** Nothing to free. */
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** `: <the server's error message>` from an OpenAI-style error body (or its first bytes). */
function serverMessage(text: string): string {
  if (!text) return "";
  try {
    const j = JSON.parse(text);
    const m = j?.error?.message ?? j?.message;
    if (typeof m === "string") return `: ${m.slice(0, 200)}`;
  } catch { /* not JSON */ }
  return `: ${JSON.stringify(text.slice(0, 120))}`;
}
