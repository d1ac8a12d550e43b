/**
 * The serving entry point (`@rwkv7/state-tuning/serve`): an OpenAI-compatible HTTP server
 * (`/v1/completions`, `/v1/chat/completions`, streaming) over a model, a tokenizer and an
 * optional tuned state, with body and prompt caps, a Host check and an optional API key.
 *
 * ```ts ignore
 * import { startServer } from "@rwkv7/state-tuning/serve";
 * const server = await startServer({ model, tokenizer, port: 8000, state });
 * console.log(`serving on http://127.0.0.1:${server.port}/v1`);
 * await server.close();
 * ```
 *
 * @module
 */
export {
  bindWarning,
  DEFAULT_MAX_BODY_BYTES,
  DEFAULT_MAX_PROMPT_TOKENS,
  DEFAULT_PREFILL_SLICE,
  type RunningServer,
  type ServedModel,
  type ServedSession,
  ServerLimitsSchema,
  type ServerOptions,
  startServer,
} from "./server.ts";
export {
  chatPrompt,
  type ChatRequest,
  ChatRequestSchema,
  type CompletionRequest,
  CompletionRequestSchema,
  type TokenLogprob,
} from "./openai.ts";
