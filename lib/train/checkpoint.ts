/**
 * Training checkpoints: every trainable part's tensors and their Adam moments, the step and the
 * history, written so that a complete, finite checkpoint always exists.
 *
 * Layout in the run folder:
 *
 * - `checkpoint.json`: step, history, config, options and `tensors`, the name of the tensor file;
 * - `checkpoint-{step}.safetensors`: flat f32 tensors named `{kind}.{name}` (a part's
 *   {@link TrainablePart.read}) and `{kind}.{tensor}.adam_m` / `.adam_v` (its moments);
 * - `checkpoint.prev.json` and its tensor file: the generation before (one kept back).
 *
 * A save writes the new tensor file (temporary name, fsync, rename), then copies the current
 * `checkpoint.json` to `checkpoint.prev.json`, then replaces `checkpoint.json` (temporary, fsync,
 * rename), then removes tensor files neither JSON names. A crash at any point leaves
 * `checkpoint.json` naming a complete tensor file. Non-finite tensors are never written, and a
 * load checks the JSON (zod), every tensor's length and finiteness, naming the file on error.
 *
 * Checkpoints of version 1 (`checkpoint.safetensors` with `s0`, `m`, `v`) still load, as the
 * part `state`.
 *
 * @module
 */
import { z } from "zod";
import type { RwkvConfig } from "../model/types.ts";
import { parseSafetensors, serializeSafetensors } from "../model/safetensors.ts";
import type { HistoryRow } from "./history.ts";

/** What a checkpoint holds. */
export interface Checkpoint {
  /** optimiser steps done */
  step: number;
  /** `{kind}.{name}` → values (parts' tensors and Adam moments) */
  tensors: Record<string, Float32Array>;
  history: HistoryRow[];
  config: RwkvConfig;
  options: Record<string, unknown>;
}

/** A checkpoint that is missing, unreadable or invalid; the message names the file. */
export class CheckpointError extends Error {
  constructor(message: string, readonly path: string) {
    super(message);
    this.name = "CheckpointError";
  }
}

/** The checkpoint's JSON file name. */
export const CHECKPOINT_JSON = "checkpoint.json";
/** The generation kept back. */
export const PREVIOUS_JSON = "checkpoint.prev.json";
const LEGACY_TENSORS = "checkpoint.safetensors";

const HistoryRowSchema = z.object({
  step: z.number().int().min(1),
  loss: z.number(),
  lr: z.number(),
  gradNorm: z.number(),
  tokensPerSecond: z.number(),
  elapsedMs: z.number(),
  valLoss: z.number().optional(),
}).catchall(z.number());

const MetaSchema = z.object({
  step: z.number().int().min(0),
  tensors: z.string().regex(/^checkpoint-\d+\.safetensors$/).optional(),
  history: z.array(HistoryRowSchema),
  config: z.object({ nLayer: z.number().int(), nHead: z.number().int() }).passthrough(),
  options: z.record(z.string(), z.unknown()),
});

/** Write `data` to `path` durably: a temporary file, fsync, rename over `path`. */
async function writeDurable(path: string, data: Uint8Array | string): Promise<void> {
  const tmp = `${path}.tmp-${Deno.pid}`;
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const f = await Deno.open(tmp, { write: true, create: true, truncate: true });
  try {
    let off = 0;
    while (off < bytes.length) off += await f.write(bytes.subarray(off));
    await f.sync();
  } finally {
    f.close();
  }
  await Deno.rename(tmp, path);
}

async function readTextOrNull(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

function tensorFileName(step: number): string {
  return `checkpoint-${String(step).padStart(7, "0")}.safetensors`;
}

/** The first non-finite tensor value as `name[i] = v`, or undefined. */
function firstNonFinite(tensors: Record<string, Float32Array>): string | undefined {
  for (const [k, a] of Object.entries(tensors)) {
    const i = a.findIndex((x) => !Number.isFinite(x));
    if (i >= 0) return `tensor "${k}" holds ${a[i]} at element ${i}`;
  }
  return undefined;
}

/**
 * Write a checkpoint into `dir` (created if needed), keeping the previous one as
 * `checkpoint.prev.json`.
 *
 * @throws {CheckpointError} when a tensor holds NaN or ±Inf (nothing is written)
 */
export async function saveCheckpoint(dir: string, ck: Checkpoint): Promise<void> {
  const bad = firstNonFinite(ck.tensors);
  if (bad) {
    throw new CheckpointError(
      `refusing to write a checkpoint to ${dir}: ${bad}; the previous checkpoint is kept`,
      dir,
    );
  }
  await Deno.mkdir(dir, { recursive: true });
  const file = tensorFileName(ck.step);
  const t = Object.fromEntries(
    Object.entries(ck.tensors).map(([k, data]) => [k, { shape: [data.length], data }]),
  );
  await writeDurable(
    `${dir}/${file}`,
    serializeSafetensors(t, "f32", { step: String(ck.step) }),
  );
  const { tensors: _t, ...rest } = ck;
  const json = JSON.stringify({ ...rest, tensors: file }, null, 1);
  const current = await readTextOrNull(`${dir}/${CHECKPOINT_JSON}`);
  if (current !== null && tensorsNamed(current) !== file) {
    await writeDurable(`${dir}/${PREVIOUS_JSON}`, current);
  }
  await writeDurable(`${dir}/${CHECKPOINT_JSON}`, json);
  await removeUnreferenced(dir);
}

/** The tensor file a checkpoint JSON names (undefined if unreadable). */
function tensorsNamed(json: string): string | undefined {
  try {
    const x = JSON.parse(json);
    return typeof x?.tensors === "string" ? x.tensors : LEGACY_TENSORS;
  } catch {
    return undefined;
  }
}

async function removeUnreferenced(dir: string): Promise<void> {
  const keep = new Set<string>();
  for (const j of [CHECKPOINT_JSON, PREVIOUS_JSON]) {
    const text = await readTextOrNull(`${dir}/${j}`);
    const name = text === null ? undefined : tensorsNamed(text);
    if (name) keep.add(name);
  }
  for await (const e of Deno.readDir(dir)) {
    const ours = /^checkpoint-\d+\.safetensors(\.tmp-\d+)?$/.test(e.name);
    if (e.isFile && ours && !keep.has(e.name)) await Deno.remove(`${dir}/${e.name}`);
  }
}

/** Whether `dir` holds a checkpoint (its `checkpoint.json` exists). */
export async function hasCheckpoint(dir: string): Promise<boolean> {
  try {
    return (await Deno.stat(`${dir}/${CHECKPOINT_JSON}`)).isFile;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return false;
    throw e;
  }
}

/**
 * Read and validate the checkpoint in `dir` (`which`: the current one or the generation kept
 * back).
 *
 * @throws {CheckpointError} when it is missing, not valid JSON, fails the schema, its tensor
 *   file is missing or corrupt, or a tensor is not finite; the message names the file and, when
 *   there is one, the previous generation to fall back on
 */
export async function loadCheckpoint(
  dir: string,
  which: "current" | "previous" = "current",
): Promise<Checkpoint> {
  const path = `${dir}/${which === "current" ? CHECKPOINT_JSON : PREVIOUS_JSON}`;
  const fail = async (msg: string, file = path): Promise<never> => {
    const prev = which === "current" ? await previousHint(dir) : "";
    throw new CheckpointError(`${file}: ${msg}${prev}`, file);
  };
  const text = await readTextOrNull(path);
  if (text === null) {
    throw new CheckpointError(
      `no checkpoint to resume: ${path} does not exist. Check --out (it must be the folder of ` +
        `the interrupted run), or start without --resume.`,
      path,
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    return fail(`not valid JSON (${(e as Error).message})`);
  }
  const r = MetaSchema.safeParse(raw);
  if (!r.success) {
    const why = r.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`);
    return fail(`not a valid checkpoint: ${why.slice(0, 3).join("; ")}`);
  }
  const meta = r.data;
  const tpath = `${dir}/${meta.tensors ?? LEGACY_TENSORS}`;
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(tpath);
  } catch (e) {
    return fail(`its tensor file is unreadable (${(e as Error).message})`, tpath);
  }
  let tensors: Record<string, Float32Array>;
  try {
    const file = parseSafetensors(bytes, tpath);
    tensors = Object.fromEntries([...file.tensors].map(([k, t]) => [k, Float32Array.from(t.data)]));
  } catch (e) {
    return fail(`corrupt tensor file (${(e as Error).message})`, tpath);
  }
  if (!meta.tensors) tensors = legacyNames(tensors);
  const bad = firstNonFinite(tensors);
  if (bad) return fail(`${bad}; a checkpoint must be finite`, tpath);
  return {
    step: meta.step,
    tensors,
    history: meta.history as HistoryRow[],
    config: meta.config as unknown as RwkvConfig,
    options: meta.options,
  };
}

async function previousHint(dir: string): Promise<string> {
  const text = await readTextOrNull(`${dir}/${PREVIOUS_JSON}`);
  if (text === null) return "";
  let step = "?";
  try {
    step = String(JSON.parse(text).step);
  } catch { /* named anyway */ }
  return `. The previous checkpoint (step ${step}) is ${dir}/${PREVIOUS_JSON}: move it to ` +
    `${dir}/${CHECKPOINT_JSON} to resume from it.`;
}

/** Version-1 names (`s0`, `m`, `v`) as the `state` part's. */
function legacyNames(t: Record<string, Float32Array>): Record<string, Float32Array> {
  const map: Record<string, string> = {
    s0: "state.s0",
    m: "state.s0.adam_m",
    v: "state.s0.adam_v",
  };
  return Object.fromEntries(Object.entries(t).map(([k, v]) => [map[k] ?? k, v]));
}

/**
 * Make sure `dir` is a folder this process can write into (created with its parents when
 * absent), before any work is done.
 *
 * @param what how to name the folder in errors (e.g. `--out`)
 * @throws {Error} naming `dir` when it is a file, lies under a file, or is not writable
 */
export async function prepareOutDir(dir: string, what = "the output folder"): Promise<void> {
  try {
    const st = await Deno.stat(dir);
    if (!st.isDirectory) {
      throw new Error(`${what} ${dir} exists and is a file, not a folder: pick another path`);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) {
      if (e instanceof Deno.errors.NotADirectory) {
        throw new Error(`${what} ${dir} cannot be created: part of its path is a file`);
      }
      throw e;
    }
    try {
      await Deno.mkdir(dir, { recursive: true });
    } catch (e2) {
      throw new Error(`${what} ${dir} cannot be created (${(e2 as Error).message})`);
    }
  }
  const probe = `${dir}/.write-test-${Deno.pid}`;
  try {
    await Deno.writeTextFile(probe, "");
    await Deno.remove(probe);
  } catch (e) {
    throw new Error(`${what} ${dir} is not writable (${(e as Error).message})`);
  }
}
