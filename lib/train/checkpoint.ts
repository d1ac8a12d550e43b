/**
 * Training checkpoints: the state, Adam's moments, the step and the history, written
 * atomically (temporary files, then renames; the JSON last, so a checkpoint is complete or
 * absent).
 *
 * Layout in the run folder: `checkpoint.safetensors` (tensors `s0`, `m`, `v`, flat f32) and
 * `checkpoint.json` (step, history, config, options).
 *
 * @module
 */
import type { RwkvConfig } from "../model/types.ts";
import { parseSafetensors, serializeSafetensors } from "../model/safetensors.ts";
import type { HistoryRow } from "./tune.ts";

/** What a checkpoint holds. */
export interface Checkpoint {
  /** optimiser steps done */
  step: number;
  s0: Float32Array;
  m: Float32Array;
  v: Float32Array;
  history: HistoryRow[];
  config: RwkvConfig;
  options: Record<string, unknown>;
}

const TENSORS = "checkpoint.safetensors";
const META = "checkpoint.json";

async function writeAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const tmp = `${path}.tmp-${Deno.pid}`;
  if (typeof data === "string") await Deno.writeTextFile(tmp, data);
  else await Deno.writeFile(tmp, data);
  await Deno.rename(tmp, path);
}

/** Write a checkpoint into `dir` (created if needed). */
export async function saveCheckpoint(dir: string, ck: Checkpoint): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const t = (data: Float32Array) => ({ shape: [data.length], data });
  const bytes = serializeSafetensors({ s0: t(ck.s0), m: t(ck.m), v: t(ck.v) }, "f32", {
    step: String(ck.step),
  });
  await writeAtomic(`${dir}/${TENSORS}`, bytes);
  const { s0: _a, m: _b, v: _c, ...meta } = ck;
  await writeAtomic(`${dir}/${META}`, JSON.stringify(meta, null, 1));
}

/**
 * Read the checkpoint in `dir`, or null when there is none.
 *
 * @param n expected number of state values (L·H·N·N)
 * @throws {Error} when the checkpoint belongs to a model of another size or is incomplete
 */
export async function loadCheckpoint(dir: string, n: number): Promise<Checkpoint | null> {
  let metaText: string;
  try {
    metaText = await Deno.readTextFile(`${dir}/${META}`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  const meta = JSON.parse(metaText) as Omit<Checkpoint, "s0" | "m" | "v">;
  const { tensors } = parseSafetensors(
    await Deno.readFile(`${dir}/${TENSORS}`),
    `${dir}/${TENSORS}`,
  );
  const get = (k: string) => {
    const t = tensors.get(k);
    if (!t || t.data.length !== n) {
      throw new Error(
        `${dir}/${TENSORS}: tensor "${k}" has ${t?.data.length ?? 0} values but this model's ` +
          `state has ${n}; the checkpoint belongs to another model (use a new --out folder)`,
      );
    }
    return t.data;
  };
  return { ...meta, s0: get("s0"), m: get("m"), v: get("v") };
}
