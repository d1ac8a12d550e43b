/**
 * What the command-line scripts share: argument errors that print usage, loading a model with
 * its tokenizer and optional state file, and the default model path.
 *
 * @module
 */
import type { z } from "zod";
import { type LoadedModel, loadModel } from "../lib/model/load.ts";
import { resolveTokenizer, type Tokenizer } from "../lib/tokenizer/mod.ts";
import { loadState } from "../lib/train/state_file.ts";
import { type RwkvState, zeroState } from "../lib/model/types.ts";

/** The embedded default model, shipped in the repository. */
export const DEFAULT_MODEL = new URL("../models/default.safetensors", import.meta.url).pathname;

/** An error in the user's arguments: printed with the usage text, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Parse `values` with `schema`, turning zod issues into one {@link UsageError}. */
export function parseWith<S extends z.ZodType>(schema: S, values: unknown): z.output<S> {
  const r = schema.safeParse(values);
  if (!r.success) {
    throw new UsageError(
      r.error.issues.map((i) => `${i.path.length ? `--${i.path.join(".")}: ` : ""}${i.message}`)
        .join("\n"),
    );
  }
  return r.data;
}

/**
 * Run a script's main function: usage errors print the usage and exit 2, other errors print
 * their message (no stack) and exit 1.
 */
export async function runMain(usage: string, main: () => Promise<void>): Promise<void> {
  try {
    await main();
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`error: ${e.message}\n\n${usage}`);
      Deno.exit(2);
    }
    const err = e as Error;
    console.error(`error: ${err.message ?? String(e)}`);
    if (Deno.env.get("RWKV_DEBUG")) console.error(err.stack);
    Deno.exit(1);
  }
}

/** A model, its tokenizer and the initial state from `--state` (zero state without it). */
export interface ModelBundle {
  model: LoadedModel;
  tokenizer: Tokenizer;
  state: RwkvState;
  statePath?: string;
}

/** Load `--model`, resolve `--tokenizer`, apply `--state` (checked against the model). */
export async function loadBundle(
  modelPath: string,
  tokenizerFlag?: string,
  statePath?: string,
): Promise<ModelBundle> {
  const model = await loadModel(modelPath);
  const cfg = model.weights.config;
  const tokenizer = await resolveTokenizer(modelPath, cfg.vocabSize, tokenizerFlag);
  const state = zeroState(cfg);
  if (statePath) {
    const { states } = await loadState(statePath, cfg);
    states.forEach((s, l) => state[l].wkv.set(s));
  }
  return { model, tokenizer, state, statePath };
}

/** Parse `1,2,3` into token ids. */
export function parseTokenList(s: string): number[] {
  const ids = s.split(",").map((x) => x.trim()).filter((x) => x !== "").map(Number);
  if (ids.length === 0 || ids.some((x) => !Number.isInteger(x) || x < 0)) {
    throw new UsageError(`--tokens must be comma-separated non-negative integers, got "${s}"`);
  }
  return ids;
}
