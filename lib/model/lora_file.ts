/**
 * LoRA files (docs/MATH.md §7): safetensors with `blocks.{l}.{att|ffn}.{name}.lora_A` (r, in) and
 * `.lora_B` (out, r) and `r`, `alpha` in the metadata; a `.pth` export with the same keys (a
 * PyTorch state dict has no metadata, so α is given when loading one); and the merged-checkpoint
 * export `W + (α/r) B A` into a full model file that `loadModel` reads.
 *
 * @module
 */
import { loraGradsRef, loraMergeRef, loraScale } from "../ref/lora.ts";
import type { RefWeightGrads } from "../ref/backward.ts";
import { detectFormat, tensorsFromWeights } from "./load.ts";
import {
  checkLoraAdapter,
  LORA_FIELDS,
  LORA_TARGETS,
  type LoraAdapter,
  LoraError,
  type LoraModule,
  type LoraTarget,
  loraTensorName,
} from "./lora.ts";
import { parsePthAsync, serializePth } from "./pth.ts";
import { parseSafetensors, serializeSafetensors } from "./safetensors.ts";
import type { DType, RwkvConfig, RwkvWeights, Tensor } from "./types.ts";

/** Adapter file formats. */
export type LoraFormat = "safetensors" | "pth";

/** The adapter's tensors by file name: A as (r, in), B as (out, r). */
export function loraTensors(adapter: LoraAdapter): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const m of adapter.modules) {
    out.set(loraTensorName(m.layer, m.target, "A"), { shape: [adapter.r, m.in], data: m.A });
    out.set(loraTensorName(m.layer, m.target, "B"), { shape: [m.out, adapter.r], data: m.B });
  }
  return out;
}

/**
 * Serialise an adapter (f32): safetensors with metadata `{ r, alpha }` (default) or `.pth`.
 *
 * @example
 * ```ts
 * import { parseLora, serializeLora } from "./lora_file.ts";
 * import { initLora } from "./lora.ts";
 * import { tinyConfig } from "./random.ts";
 * const a = initLora(tinyConfig(), { r: 2, targets: ["att.key"], layers: [0] });
 * const back = await parseLora(serializeLora(a));
 * console.assert(back.alpha === 16 && back.modules[0].A[3] === a.modules[0].A[3]);
 * ```
 */
export function serializeLora(
  adapter: LoraAdapter,
  format: LoraFormat = "safetensors",
): Uint8Array {
  const t = loraTensors(adapter);
  if (format === "pth") return serializePth(t, "f32", { archiveName: "lora" });
  return serializeSafetensors(t, "f32", { r: String(adapter.r), alpha: String(adapter.alpha) });
}

/** Save an adapter; a path ending in `.pth` gets the `.pth` export, anything else safetensors. */
export async function saveLora(path: string, adapter: LoraAdapter): Promise<void> {
  await Deno.writeFile(path, serializeLora(adapter, path.endsWith(".pth") ? "pth" : "safetensors"));
}

/** Options of {@link parseLora} and {@link loadLora}. */
export interface LoraLoadOptions {
  /** α for a `.pth` file (which has no metadata); a safetensors file's own α wins if both. */
  alpha?: number;
  /** check every shape against this model (recommended) */
  config?: RwkvConfig;
}

const NAME = /^blocks\.(\d+)\.((?:att|ffn)\.[a-z]+)\.lora_(A|B)$/;

/** One adapted matrix's A and B, as found in the file. */
type LoraPair = { layer: number; target: LoraTarget; A?: Tensor; B?: Tensor };

/** The file's tensors grouped into (layer, target) pairs; any other tensor is refused. */
function loraPairs(tensors: Map<string, Tensor>, source: string): Map<string, LoraPair> {
  const pairs = new Map<string, LoraPair>();
  for (const [name, t] of tensors) {
    const m = NAME.exec(name);
    if (!m || !(LORA_TARGETS as readonly string[]).includes(m[2])) {
      throw new LoraError(
        `${source}: tensor "${name}" is not a LoRA tensor; expected ` +
          `blocks.{l}.{${LORA_TARGETS.join("|")}}.lora_{A|B}`,
      );
    }
    const key = `${m[1]}.${m[2]}`;
    const p = pairs.get(key) ?? { layer: Number(m[1]), target: m[2] as LoraTarget };
    if (t.shape.length !== 2) {
      throw new LoraError(`${source}: ${name} has shape [${t.shape}]; expected a matrix`);
    }
    p[m[3] as "A" | "B"] = t;
    pairs.set(key, p);
  }
  return pairs;
}

/**
 * Parse adapter bytes (safetensors or `.pth`, by magic bytes).
 *
 * @param source a name for messages (the path)
 * @throws {LoraError} for an unknown key, a missing half of a pair, inconsistent ranks, a missing
 *   α, or (with `options.config`) a shape the model does not have
 */
export async function parseLora(
  bytes: Uint8Array,
  source = "LoRA file",
  options: LoraLoadOptions = {},
): Promise<LoraAdapter> {
  const format = detectFormat(bytes);
  if (!format) {
    throw new LoraError(`${source}: neither safetensors nor a PyTorch zip; not a LoRA adapter`);
  }
  const file = format === "pth"
    ? await parsePthAsync(bytes, source)
    : parseSafetensors(bytes, source);
  const meta = format === "safetensors" ? safetensorsMetadata(bytes) : {};
  const alpha = meta.alpha !== undefined ? Number(meta.alpha) : options.alpha;
  if (alpha === undefined || !(alpha > 0)) {
    throw new LoraError(
      `${source}: no valid LoRA alpha (${meta.alpha ?? alpha}); ` +
        (format === "pth"
          ? "a .pth adapter carries none: pass { alpha } (the α it was trained with)"
          : `write it in the safetensors metadata as "alpha"`),
    );
  }
  const pairs = loraPairs(file.tensors, source);
  const r = meta.r !== undefined ? Number(meta.r) : [...pairs.values()][0]?.A?.shape[0];
  const modules: LoraModule[] = [];
  for (const p of pairs.values()) {
    for (const w of ["A", "B"] as const) {
      if (!p[w]) {
        throw new LoraError(`${source}: ${loraTensorName(p.layer, p.target, w)} is missing`);
      }
    }
    const [rA, inp] = p.A!.shape, [out, rB] = p.B!.shape;
    if (rA !== r || rB !== r) {
      throw new LoraError(
        `${source}: ${loraTensorName(p.layer, p.target, "A")} [${p.A!.shape}] and ` +
          `${loraTensorName(p.layer, p.target, "B")} [${p.B!.shape}] do not have rank r = ${r}`,
      );
    }
    modules.push({ layer: p.layer, target: p.target, out, in: inp, A: p.A!.data, B: p.B!.data });
  }
  const order = (m: LoraModule) => m.layer * LORA_TARGETS.length + LORA_TARGETS.indexOf(m.target);
  modules.sort((a, b) => order(a) - order(b));
  const adapter = { r: r ?? 0, alpha, modules };
  if (options.config) checkLoraAdapter(adapter, options.config, source);
  else if (modules.length === 0) throw new LoraError(`${source}: the file holds no LoRA tensor`);
  return adapter;
}

/** Load an adapter written by {@link saveLora} (or RWKV-PEFT-style `.pth` with `{ alpha }`). */
export async function loadLora(path: string, options: LoraLoadOptions = {}): Promise<LoraAdapter> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw new LoraError(`${path}: cannot read the LoRA adapter (${(e as Error).message})`);
  }
  return await parseLora(bytes, path, options);
}

/** The `__metadata__` string map of a safetensors file (empty when absent). */
function safetensorsMetadata(bytes: Uint8Array): Record<string, string> {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const head = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  return head.__metadata__ ?? {};
}

/**
 * The model with every adapted Linear replaced by `W + (α/r) B A` (computed in float64, stored
 * f32); the other arrays are shared with `weights`.
 *
 * @throws {LoraError} when the adapter does not fit the model
 */
export function mergeLoraWeights(weights: RwkvWeights, adapter: LoraAdapter): RwkvWeights {
  checkLoraAdapter(adapter, weights.config);
  const s = loraScale(adapter.r, adapter.alpha);
  const blocks = weights.blocks.map((b) => ({ ...b }));
  for (const m of adapter.modules) {
    const f = LORA_FIELDS[m.target];
    const W = weights.blocks[m.layer][f];
    blocks[m.layer][f] = Float32Array.from(
      loraMergeRef(W, m.A, m.B, { out: m.out, in: m.in, r: adapter.r }, s),
    );
  }
  return { ...weights, blocks };
}

/**
 * The merged-checkpoint export: the full model with the adapter merged in, as bytes in the
 * official key layout (`loadModel` reads them back).
 *
 * @param format "safetensors" (default) or "pth"
 * @param dtype storage of every tensor (default "f32")
 */
export function serializeMergedModel(
  weights: RwkvWeights,
  adapter: LoraAdapter,
  format: LoraFormat = "safetensors",
  dtype: DType = "f32",
): Uint8Array {
  const t = tensorsFromWeights(mergeLoraWeights(weights, adapter));
  return format === "pth" ? serializePth(t, dtype) : serializeSafetensors(t, dtype);
}

/** Save the merged model ({@link serializeMergedModel}); `.pth` paths get a PyTorch zip. */
export async function saveMergedModel(
  path: string,
  weights: RwkvWeights,
  adapter: LoraAdapter,
  dtype: DType = "f32",
): Promise<void> {
  const format = path.endsWith(".pth") ? "pth" : "safetensors";
  await Deno.writeFile(path, serializeMergedModel(weights, adapter, format, dtype));
}

/**
 * The adapter's gradients from the reference weight gradients (CPU checks, `state-grad`): by
 * tensor name, dA (r, in) and dB (out, r), float64.
 *
 * @param dWeights `refLossAndGrad(mergeLoraWeights(w, adapter), …, { weightGrads: true })`
 */
export function loraGradsFromRef(
  adapter: LoraAdapter,
  dWeights: RefWeightGrads,
): Record<string, Float64Array> {
  const s = loraScale(adapter.r, adapter.alpha), out: Record<string, Float64Array> = {};
  for (const m of adapter.modules) {
    const dW = dWeights.blocks[m.layer][LORA_FIELDS[m.target]];
    const g = loraGradsRef(dW, m.A, m.B, { out: m.out, in: m.in, r: adapter.r }, s);
    out[loraTensorName(m.layer, m.target, "A")] = g.dA;
    out[loraTensorName(m.layer, m.target, "B")] = g.dB;
  }
  return out;
}
