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
  const b = await loadModelState(modelPath, statePath);
  const cfg = b.model.weights.config;
  const tokenizer = await resolveTokenizer(modelPath, cfg.vocabSize, tokenizerFlag);
  return { ...b, tokenizer };
}

/** Load `--model` and apply `--state`, with no tokenizer (for tasks given token ids). */
export async function loadModelState(
  modelPath: string,
  statePath?: string,
): Promise<Omit<ModelBundle, "tokenizer">> {
  const model = await loadModel(modelPath);
  const cfg = model.weights.config;
  const state = zeroState(cfg);
  if (statePath) {
    const { states } = await loadState(statePath, cfg);
    states.forEach((s, l) => state[l].wkv.set(s));
  }
  return { model, state, statePath };
}

/**
 * A model, its state and the input ids of a task taking `--text` or `--tokens`: the tokenizer
 * is resolved only when `--text` or `--tokenizer` is given, so token ids need no vocabulary.
 *
 * @throws {UsageError} unless exactly one of text / tokens is given, or an id is ≥ V
 */
export async function loadForInput(a: {
  model: string;
  text?: string;
  tokens?: string;
  tokenizer?: string;
  state?: string;
}): Promise<Omit<ModelBundle, "tokenizer"> & { ids: number[]; tokenizer?: Tokenizer }> {
  if ((a.text === undefined) === (a.tokens === undefined)) {
    throw new UsageError("pass exactly one of --text or --tokens");
  }
  const b = await loadModelState(a.model, a.state);
  const V = b.model.weights.config.vocabSize;
  const tokenizer = a.text !== undefined || a.tokenizer !== undefined
    ? await resolveTokenizer(a.model, V, a.tokenizer)
    : undefined;
  const ids = a.tokens !== undefined ? parseTokenList(a.tokens) : tokenizer!.encode(a.text!);
  const bad = ids.find((t) => t >= V);
  if (bad !== undefined) throw new UsageError(`token ${bad} is outside the vocabulary [0, ${V})`);
  return { ...b, ids, ...(tokenizer ? { tokenizer } : {}) };
}

/**
 * Parse a part flag's `key=value,key=value` list (`on` = all defaults) with `schema`: values
 * `true` / `false` become booleans, numbers numbers, `a+b+c` arrays; other values stay strings.
 *
 * @throws {UsageError} quoting the flag and the bad entry
 * @example
 * ```ts ignore
 * parseKeyValues("--dbp", "lr=1e-3,kappa=0.5", DbpConfigSchema); // { enabled: true, lr: 0.001, … }
 * ```
 */
export function parseKeyValues<S extends z.ZodType>(
  flag: string,
  text: string,
  schema: S,
): z.output<S> {
  const out: Record<string, unknown> = {};
  const value = (v: string): unknown => {
    if (v === "true" || v === "false") return v === "true";
    if (v.includes("+")) return v.split("+").map(value);
    return v.trim() !== "" && Number.isFinite(Number(v)) ? Number(v) : v;
  };
  if (text.trim() !== "on") {
    for (const entry of text.split(",").map((x) => x.trim()).filter(Boolean)) {
      const eq = entry.indexOf("=");
      if (eq <= 0) {
        throw new UsageError(`${flag}: expected key=value entries, got "${entry}" in "${text}"`);
      }
      out[entry.slice(0, eq)] = value(entry.slice(eq + 1));
    }
  }
  const r = schema.safeParse(out);
  if (!r.success) {
    const why = r.error.issues.map((i) =>
      `${i.path.length ? `${i.path.join(".")}: ` : ""}${i.message}`
    );
    throw new UsageError(`${flag} "${text}": ${why.join("; ")}`);
  }
  return r.data;
}

/** Parse `1,2,3` into token ids. */
export function parseTokenList(s: string): number[] {
  const ids = s.split(",").map((x) => x.trim()).filter((x) => x !== "").map(Number);
  if (ids.length === 0 || ids.some((x) => !Number.isInteger(x) || x < 0)) {
    throw new UsageError(`--tokens must be comma-separated non-negative integers, got "${s}"`);
  }
  return ids;
}
