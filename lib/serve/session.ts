/**
 * Wrappers the server puts around a model session: prefill in slices that yield to the event
 * loop and stop once the client has gone, and a record of the logits each token came from.
 *
 * @module
 */
import type { LanguageModel } from "../generate/generate.ts";
import type { Tokenizer } from "../tokenizer/mod.ts";
import { type TokenLogprob, tokenLogprobs } from "./openai.ts";

/** Thrown inside a job whose client has gone. */
export class ClientGone extends Error {
  constructor() {
    super("the client closed the connection");
    this.name = "ClientGone";
  }
}

const nextTurn = () => new Promise<void>((r) => setTimeout(r, 0));

/** Least time between two heartbeats, in ms. */
export const HEARTBEAT_MS = 250;

/**
 * Feed long inputs in slices, yielding to the event loop and checking `signal` between.
 * `beat` is called at most every {@link HEARTBEAT_MS} while work goes on (between slices of a
 * long input; after every feed too when `everyFeed`): the server writes a byte of whitespace
 * (or an SSE comment) then, since Deno notices a client that has gone only when a write to it
 * fails.
 */
export function slicedFeed(
  session: LanguageModel,
  slice: number,
  signal: AbortSignal,
  beat: () => void = () => {},
  everyFeed = false,
): LanguageModel {
  let last = performance.now();
  const pulse = () => {
    const now = performance.now();
    if (now - last >= HEARTBEAT_MS) (last = now), beat();
  };
  return {
    vocabSize: session.vocabSize,
    feed: async (tokens) => {
      let logits: Float32Array | undefined;
      for (let i = 0; i < tokens.length; i += slice) {
        if (signal.aborted) throw new ClientGone();
        logits = await session.feed(tokens.slice(i, i + slice));
        const more = i + slice < tokens.length;
        if (more || everyFeed) pulse();
        if (more) await nextTurn();
      }
      if (signal.aborted) throw new ClientGone();
      return logits!;
    },
  };
}

/** A session wrapper recording the logits each generated token was drawn from. */
export function tracked(session: LanguageModel, tokenizer: Tokenizer, k: number) {
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
