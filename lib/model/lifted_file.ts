/**
 * The lifted-state file (docs/MATH.md §5): safetensors with, per lifted layer l,
 * `blocks.{l}.att.lifted_state` (H, N, M), `…lifted_R` (H, M, M), `…lifted_support` (H, M, N)
 * and `…lifted_gamma` (H) (Gaussian map only), `…lifted_gate` (H) (writes mode), and the
 * switches in the `lifted` metadata entry (JSON: `nLayer`, and per layer `M`, `featureMap`,
 * `headMeans`, `read`, `normalisedRead`, `writes`).
 *
 * Older files: without `read`, the read is `"normalised"` when `normalisedRead` is true and
 * `"raw"` otherwise (version 1); without `writes`, memory mode.
 *
 * @module
 */
import { z } from "zod";
import { readSafetensors, serializeSafetensors } from "./safetensors.ts";
import type { Tensor } from "./types.ts";
import { type LiftedLayers, liftedRead, type LiftedState } from "../ref/lifted_types.ts";

/** One layer's switches in the `lifted` metadata. */
const LayerMetaSchema = z.object({
  M: z.number().int().positive(),
  featureMap: z.enum(["gaussian", "identity"]),
  headMeans: z.boolean(),
  read: z.enum(["normalised", "raw"]).optional(),
  normalisedRead: z.boolean().optional(),
  writes: z.boolean().optional(),
});

/** The `lifted` metadata entry. */
const MetaSchema = z.object({
  nLayer: z.number().int().nonnegative(),
  layers: z.record(z.string().regex(/^\d+$/), LayerMetaSchema),
});

type LiftedMeta = z.infer<typeof MetaSchema>;

/**
 * Save lifted layers as safetensors (see the module doc).
 *
 * @param H heads, to give the tensors their shapes
 */
export async function saveLifted(path: string, lifted: LiftedLayers, H: number): Promise<void> {
  const t: Record<string, Tensor> = {};
  const meta: LiftedMeta = { nLayer: lifted.length, layers: {} };
  lifted.forEach((s, l) => {
    if (!s) return;
    const M = s.M, N = s.s0.length / (H * M), p = `blocks.${l}.att.lifted_`;
    t[`${p}state`] = { shape: [H, N, M], data: Float32Array.from(s.s0) };
    t[`${p}R`] = { shape: [H, M, M], data: Float32Array.from(s.R) };
    if (s.featureMap === "gaussian") {
      t[`${p}support`] = { shape: [H, M, N], data: Float32Array.from(s.support!) };
      t[`${p}gamma`] = { shape: [H], data: Float32Array.from(s.gamma!) };
    }
    if (s.writes) {
      t[`${p}gate`] = { shape: [H], data: Float32Array.from(s.gate ?? new Float32Array(H)) };
    }
    const read = liftedRead(s);
    meta.layers[l] = {
      ...{ M, featureMap: s.featureMap, headMeans: s.headMeans, read },
      normalisedRead: read === "normalised",
      writes: s.writes ?? false,
    };
  });
  await Deno.writeFile(path, serializeSafetensors(t, "f32", { lifted: JSON.stringify(meta) }));
}

/**
 * Load lifted layers written by {@link saveLifted} (or by version 1, see the module doc).
 *
 * @throws {RangeError} when the metadata is missing or malformed, or a tensor it names is missing
 */
export async function loadLifted(path: string): Promise<LiftedLayers> {
  const bytes = await Deno.readFile(path);
  const file = await readSafetensors(path);
  const raw = readMetadata(bytes).lifted;
  if (raw === undefined) {
    throw new RangeError(`${path}: no "lifted" metadata; not a lifted-state file`);
  }
  const parsed = MetaSchema.safeParse(JSON.parse(raw));
  if (!parsed.success) {
    throw new RangeError(`${path}: bad "lifted" metadata ${raw}: ${parsed.error.message}`);
  }
  const meta = parsed.data;
  const out: LiftedLayers = new Array(meta.nLayer).fill(undefined);
  for (const [ls, m] of Object.entries(meta.layers)) {
    const l = Number(ls), p = `blocks.${l}.att.lifted_`;
    const get = (n: string) => {
      const x = file.tensors.get(p + n);
      if (!x) throw new RangeError(`${path}: tensor ${p}${n} is missing`);
      return x.data;
    };
    const s: LiftedState = {
      ...{ M: m.M, featureMap: m.featureMap, headMeans: m.headMeans },
      read: m.read ?? (m.normalisedRead ? "normalised" : "raw"),
      writes: m.writes ?? false,
      s0: get("state"),
      R: get("R"),
    };
    if (s.featureMap === "gaussian") {
      s.support = get("support");
      s.gamma = get("gamma");
    }
    if (s.writes) s.gate = get("gate");
    out[l] = s;
  }
  return out;
}

/** The `__metadata__` string map of a safetensors file. */
function readMetadata(bytes: Uint8Array): Record<string, string> {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const head = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  return head.__metadata__ ?? {};
}
