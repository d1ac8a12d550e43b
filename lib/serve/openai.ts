/**
 * The OpenAI-compatible API's request schemas (zod; unknown fields are ignored, as OpenAI
 * does), the RWKV chat template, and per-token log-probabilities.
 *
 * @module
 */
import { z } from "zod";
import type { Tokenizer } from "../tokenizer/mod.ts";

const stop = z.union([z.string().min(1), z.array(z.string().min(1)).max(4)]).optional()
  .transform((s) => (s === undefined ? [] : typeof s === "string" ? [s] : s));

const common = {
  model: z.string().optional(),
  max_tokens: z.number().int().min(0).max(8192).optional(),
  temperature: z.number().min(0).max(2).default(1),
  top_p: z.number().gt(0).max(1).default(1),
  presence_penalty: z.number().min(-2).max(2).default(0),
  frequency_penalty: z.number().min(-2).max(2).default(0),
  seed: z.number().int().min(0).max(2 ** 32 - 1).optional(),
  stop,
  stream: z.boolean().default(false),
  n: z.literal(1, { error: "n must be 1 (one choice per request)" }).optional(),
};

/** `POST /v1/completions` body. */
export const CompletionRequestSchema = z.object({
  ...common,
  prompt: z.union([z.string(), z.array(z.string()).length(1, "prompt arrays must hold one string")])
    .transform((p) => (Array.isArray(p) ? p[0] : p)),
  logprobs: z.number().int().min(0).max(5).nullable().optional(),
  echo: z.literal(false, { error: "echo is not supported" }).optional(),
});

/** A parsed completion request. */
export type CompletionRequest = z.output<typeof CompletionRequestSchema>;

/** `POST /v1/chat/completions` body. */
export const ChatRequestSchema = z.object({
  ...common,
  max_completion_tokens: z.number().int().min(0).max(8192).optional(),
  messages: z.array(z.object({
    role: z.enum(["system", "user", "assistant"]),
    content: z.string(),
  })).min(1),
  logprobs: z.boolean().default(false),
  top_logprobs: z.number().int().min(0).max(20).optional(),
});

/** A parsed chat request. */
export type ChatRequest = z.output<typeof ChatRequestSchema>;

const ROLE = { system: "System", user: "User", assistant: "Assistant" } as const;

/**
 * The RWKV chat template: `User: …\n\nAssistant: …\n\n…Assistant:` (a system message becomes
 * `System: …`). Inside a message, blank lines are collapsed to one newline, since "\n\n" ends a
 * turn.
 *
 * @example
 * ```ts
 * import { chatPrompt } from "./openai.ts";
 * console.assert(chatPrompt([{ role: "user", content: "Hi" }]) === "User: Hi\n\nAssistant:");
 * ```
 */
export function chatPrompt(messages: ChatRequest["messages"]): string {
  return messages.map((m) =>
    `${ROLE[m.role]}: ${m.content.replace(/\r\n/g, "\n").replace(/\n\n+/g, "\n").trim()}\n\n`
  ).join("") + "Assistant:";
}

/** One token's log-probability and the most likely alternatives. */
export interface TokenLogprob {
  token: string;
  id: number;
  bytes: number[];
  logprob: number;
  top: { token: string; bytes: number[]; logprob: number }[];
}

/**
 * Log-softmax over the tokenizer's vocabulary at `token`, and the `k` most likely tokens.
 */
export function tokenLogprobs(
  logits: Float32Array,
  token: number,
  k: number,
  tokenizer: Tokenizer,
): TokenLogprob {
  const V = Math.min(logits.length, tokenizer.vocabSize);
  let max = -Infinity;
  for (let i = 0; i < V; i++) if (logits[i] > max) max = logits[i];
  let sum = 0;
  for (let i = 0; i < V; i++) sum += Math.exp(logits[i] - max);
  const lse = max + Math.log(sum);
  const describe = (id: number) => ({
    token: tokenizer.decode([id]),
    bytes: [...tokenizer.decodeBytes([id])],
    logprob: logits[id] - lse,
  });
  const top: number[] = [];
  if (k > 0) {
    for (let i = 0; i < V; i++) {
      if (top.length < k || logits[i] > logits[top[top.length - 1]]) {
        top.push(i);
        top.sort((a, b) => logits[b] - logits[a]);
        if (top.length > k) top.pop();
      }
    }
  }
  return { ...describe(token), id: token, top: top.map(describe) };
}
