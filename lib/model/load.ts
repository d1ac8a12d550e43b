/**
 * Loading RWKV-7 ("x070") checkpoints: format detection, config inference from tensor shapes,
 * validation of every key and shape, and the inverse mapping for saving models.
 *
 * @module
 */
import type { DType, LayerWeights, RwkvConfig, RwkvWeights, Tensor, TensorFile } from "./types.ts";
import { parseSafetensors } from "./safetensors.ts";
import { parsePthAsync } from "./pth.ts";

/** Error for a file that is not a valid RWKV-7 checkpoint. */
export class CheckpointError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CheckpointError";
  }
}

/** Checkpoint file formats. */
export type CheckpointFormat = "pth" | "safetensors";

/**
 * Tell the format from the first bytes: a zip (`PK\x03\x04`) is a PyTorch checkpoint; a
 * little-endian u64 header length followed by `{` is safetensors (a length past the end of
 * the file is reported by the safetensors parser as truncation).
 *
 * @returns the format, or `null` when neither matches
 */
export function detectFormat(bytes: Uint8Array): CheckpointFormat | null {
  if (bytes.length >= 4 && bytes[0] === 0x50 && bytes[1] === 0x4b && bytes[2] === 3) {
    if (bytes[3] === 4) return "pth";
  }
  if (bytes.length >= 9 && bytes[8] === 0x7b) {
    // a header length past the end still means safetensors (truncated): its parser says so
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (dv.getBigUint64(0, true) < 2n ** 53n) return "safetensors";
  }
  return null;
}

/**
 * Read a checkpoint (PyTorch zip or safetensors, chosen by magic bytes) to f32 tensors.
 *
 * @throws {CheckpointError} when the file cannot be read or is neither format
 */
export async function readTensorFile(
  path: string,
): Promise<TensorFile & { format: CheckpointFormat; bytes: number }> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw new CheckpointError(`${path}: cannot read the checkpoint (${(e as Error).message})`);
  }
  return await tensorFileFromBytes(bytes, path);
}

/**
 * Parse checkpoint bytes (PyTorch zip or safetensors, by magic bytes) to f32 tensors; the
 * file-free core of {@link readTensorFile} (browsers, fetched files).
 *
 * @param source a name for messages (path or URL)
 * @throws {CheckpointError} when the bytes are neither format
 */
export async function tensorFileFromBytes(
  bytes: Uint8Array,
  path = "checkpoint",
): Promise<TensorFile & { format: CheckpointFormat; bytes: number }> {
  const format = detectFormat(bytes);
  if (format === null) {
    const head = [...bytes.subarray(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join(" ");
    throw new CheckpointError(
      `${path}: not a checkpoint: first bytes are [${head}]; expected a PyTorch zip ` +
        `(50 4b 03 04 "PK\\x03\\x04") or safetensors (u64 header length, then "{")`,
    );
  }
  const file = format === "pth" ? await parsePthAsync(bytes, path) : parseSafetensors(bytes, path);
  return { ...file, format, bytes: bytes.length };
}

type Dims = RwkvConfig;
type LayerField = keyof LayerWeights;

/** One per-layer tensor: checkpoint suffix, field, expected shape; `vec` = `[1,1,C]` or `[C]`. */
interface Spec {
  key: string;
  field: LayerField;
  shape: (d: Dims) => number[];
  vec?: boolean;
}

const C = (d: Dims) => [d.nEmbd];
const V3 = (d: Dims) => [1, 1, d.nEmbd];
const CC = (d: Dims) => [d.nEmbd, d.nEmbd];

/** Per-layer keys in the official order (after `blocks.{l}.`). */
const LAYER_SPECS: Spec[] = [
  { key: "ln1.weight", field: "ln1_w", shape: C },
  { key: "ln1.bias", field: "ln1_b", shape: C },
  { key: "ln2.weight", field: "ln2_w", shape: C },
  { key: "ln2.bias", field: "ln2_b", shape: C },
  ...(["r", "w", "k", "v", "a", "g"] as const).map((m): Spec => ({
    key: `att.x_${m}`,
    field: `x_${m}`,
    shape: V3,
    vec: true,
  })),
  { key: "att.w0", field: "w0", shape: V3, vec: true },
  { key: "att.w1", field: "w1", shape: (d) => [d.nEmbd, d.dimW] },
  { key: "att.w2", field: "w2", shape: (d) => [d.dimW, d.nEmbd] },
  { key: "att.a0", field: "a0", shape: V3, vec: true },
  { key: "att.a1", field: "a1", shape: (d) => [d.nEmbd, d.dimA] },
  { key: "att.a2", field: "a2", shape: (d) => [d.dimA, d.nEmbd] },
  { key: "att.v0", field: "v0", shape: V3, vec: true },
  { key: "att.v1", field: "v1", shape: (d) => [d.nEmbd, d.dimV] },
  { key: "att.v2", field: "v2", shape: (d) => [d.dimV, d.nEmbd] },
  { key: "att.g1", field: "g1", shape: (d) => [d.nEmbd, d.dimG] },
  { key: "att.g2", field: "g2", shape: (d) => [d.dimG, d.nEmbd] },
  { key: "att.k_k", field: "k_k", shape: V3, vec: true },
  { key: "att.k_a", field: "k_a", shape: V3, vec: true },
  { key: "att.r_k", field: "r_k", shape: (d) => [d.nHead, d.headSize] },
  { key: "att.receptance.weight", field: "Wr", shape: CC },
  { key: "att.key.weight", field: "Wk", shape: CC },
  { key: "att.value.weight", field: "Wv", shape: CC },
  { key: "att.output.weight", field: "Wo", shape: CC },
  { key: "att.ln_x.weight", field: "lnx_w", shape: C },
  { key: "att.ln_x.bias", field: "lnx_b", shape: C },
  { key: "ffn.x_k", field: "ffn_x_k", shape: V3, vec: true },
  { key: "ffn.key.weight", field: "ffn_key", shape: (d) => [d.dimFfn, d.nEmbd] },
  { key: "ffn.value.weight", field: "ffn_value", shape: (d) => [d.nEmbd, d.dimFfn] },
];

/** The value-residual keys, absent (unused) in layer 0. */
const V_FIELDS = new Set<LayerField>(["v0", "v1", "v2"]);

const fmt = (s: number[]) => `[${s.join(", ")}]`;

/** Reads tensors by name with messages that name the key, the expected and found shapes. */
class Reader {
  constructor(readonly file: TensorFile, readonly source: string) {}

  missing(key: string): never {
    const legacy = [...this.file.tensors.keys()].some((k) => /time_(decay|mix_|first)/.test(k));
    throw new CheckpointError(
      `${this.source}: missing tensor "${key}"; ` +
        (legacy
          ? "this looks like an RWKV-4/5/6 checkpoint; only RWKV-7 (x070) is supported"
          : "the file is not an RWKV-7 x070 checkpoint or is incomplete"),
    );
  }

  shapeOf(key: string, rank: number): number[] {
    const t = this.file.tensors.get(key) ?? this.missing(key);
    if (t.shape.length !== rank) {
      throw new CheckpointError(
        `${this.source}: ${key}: expected ${rank} dimensions, found ${fmt(t.shape)}; ` +
          `the file is not an RWKV-7 x070 checkpoint or is corrupt`,
      );
    }
    return t.shape;
  }

  get(key: string, want: number[], vec = false): Float32Array {
    const t: Tensor = this.file.tensors.get(key) ?? this.missing(key);
    const ok = fmt(t.shape) === fmt(want) || (vec && fmt(t.shape) === fmt(want.slice(-1)));
    if (!ok || t.data.length !== want.reduce((a, b) => a * b, 1)) {
      throw new CheckpointError(
        `${this.source}: ${key}: expected ${fmt(want)}, found ${fmt(t.shape)}; ` +
          `the file is not an RWKV-7 x070 checkpoint or is corrupt`,
      );
    }
    checkFinite(key, t.data, this.source);
    return t.data;
  }
}

/** Refuse a weight holding NaN or ±Inf, naming the tensor and the first bad element. */
function checkFinite(key: string, data: Float32Array, source: string): void {
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (v - v !== 0) {
      throw new CheckpointError(
        `${source}: ${key}: element ${i} of ${data.length} is ${v}; a weight must be finite, ` +
          `the file is corrupt (or was saved from a diverged run)`,
      );
    }
  }
}

/** Infer every size from shapes: V, C from `emb.weight`, H, N from `att.r_k`, etc. */
function inferConfig(r: Reader): RwkvConfig {
  const [vocabSize, nEmbd] = r.shapeOf("emb.weight", 2);
  let nLayer = 0;
  for (const k of r.file.tensors.keys()) {
    const m = /^blocks\.(\d+)\./.exec(k);
    if (m) nLayer = Math.max(nLayer, Number(m[1]) + 1);
  }
  if (nLayer === 0) r.missing("blocks.0.ln1.weight");
  const [nHead, headSize] = r.shapeOf("blocks.0.att.r_k", 2);
  if (nHead * headSize !== nEmbd) {
    throw new CheckpointError(
      `${r.source}: blocks.0.att.r_k: expected [H, N] with H·N = C = ${nEmbd}, found ` +
        `[${nHead}, ${headSize}]; the file is not an RWKV-7 x070 checkpoint or is corrupt`,
    );
  }
  const vKey = `blocks.${nLayer > 1 ? 1 : 0}.att.v1`; // layer 0's is optional
  return {
    nLayer,
    nEmbd,
    headSize,
    nHead,
    vocabSize,
    dimW: r.shapeOf("blocks.0.att.w1", 2)[1],
    dimA: r.shapeOf("blocks.0.att.a1", 2)[1],
    dimV: nLayer > 1 || r.file.tensors.has(vKey) ? r.shapeOf(vKey, 2)[1] : 0,
    dimG: r.shapeOf("blocks.0.att.g1", 2)[1],
    dimFfn: r.shapeOf("blocks.0.ffn.key.weight", 2)[0],
  };
}

/**
 * Build validated model weights from checkpoint tensors (official x070 key names).
 * Every size comes from the shapes; layer-0 `v0/v1/v2` are ignored when present; `[1,1,C]`
 * vectors are kept flat (the arrays are shared with `file`, not copied).
 *
 * @param source a name for error messages (the path)
 * @throws {CheckpointError} naming the missing key, or the key with its expected and found shape
 */
export function weightsFromTensors(file: TensorFile, source = "checkpoint"): RwkvWeights {
  const r = new Reader(file, source);
  const d = inferConfig(r);
  const vecC = [d.nEmbd], vc = [d.vocabSize, d.nEmbd];
  const blocks: LayerWeights[] = [];
  for (let l = 0; l < d.nLayer; l++) {
    const layer: Partial<LayerWeights> = {};
    for (const s of LAYER_SPECS) {
      if (l === 0 && V_FIELDS.has(s.field)) continue;
      layer[s.field] = r.get(`blocks.${l}.${s.key}`, s.shape(d), s.vec);
    }
    blocks.push(layer as LayerWeights);
  }
  return {
    config: d,
    emb: r.get("emb.weight", vc),
    ln0_w: r.get("blocks.0.ln0.weight", vecC),
    ln0_b: r.get("blocks.0.ln0.bias", vecC),
    blocks,
    ln_out_w: r.get("ln_out.weight", vecC),
    ln_out_b: r.get("ln_out.bias", vecC),
    head: r.get("head.weight", vc),
  };
}

/**
 * The inverse of {@linkcode weightsFromTensors}: official key names, order and shapes
 * (`[1,1,C]` vectors), sharing the weight arrays. Layer 0 has no `v0/v1/v2`.
 */
export function tensorsFromWeights(weights: RwkvWeights): Map<string, Tensor> {
  const d = weights.config, C = d.nEmbd, vc = [d.vocabSize, C];
  const out = new Map<string, Tensor>();
  out.set("emb.weight", { shape: vc, data: weights.emb });
  weights.blocks.forEach((b, l) => {
    for (const s of LAYER_SPECS) {
      const data = b[s.field];
      if (!(l === 0 && V_FIELDS.has(s.field))) {
        if (!data) throw new RangeError(`weights: blocks.${l}.${s.key} (${s.field}) is missing`);
        out.set(`blocks.${l}.${s.key}`, { shape: s.shape(d), data });
      }
      if (l === 0 && s.field === "ln2_b") {
        out.set("blocks.0.ln0.weight", { shape: [C], data: weights.ln0_w });
        out.set("blocks.0.ln0.bias", { shape: [C], data: weights.ln0_b });
      }
    }
  });
  out.set("ln_out.weight", { shape: [C], data: weights.ln_out_w });
  out.set("ln_out.bias", { shape: [C], data: weights.ln_out_b });
  out.set("head.weight", { shape: vc, data: weights.head });
  return out;
}

/** Number of parameters (every weight array, layer-0 value-residual excluded). */
export function countParams(weights: RwkvWeights): number {
  let n = 0;
  for (const t of tensorsFromWeights(weights).values()) n += t.data.length;
  return n;
}

/** A loaded model with where it came from. */
export interface LoadedModel {
  weights: RwkvWeights;
  /** Storage dtype of the file. */
  dtype: DType;
  format: CheckpointFormat;
  path: string;
  /** File size in bytes. */
  bytes: number;
}

/**
 * Load an RWKV-7 checkpoint (`.pth` or `.safetensors`, by magic bytes) and validate it.
 *
 * @example
 * ```ts ignore
 * const { weights } = await loadModel("RWKV-x070-World-0.1B.pth");
 * console.log(weights.config.nLayer);
 * ```
 */
export async function loadModel(path: string): Promise<LoadedModel> {
  return modelFromTensorFile(await readTensorFile(path), path);
}

/**
 * {@link loadModel} from bytes already in memory (a fetched file in a browser).
 *
 * @param source a name for messages and `LoadedModel.path` (a URL or file name)
 */
export async function loadModelFromBytes(bytes: Uint8Array, source: string): Promise<LoadedModel> {
  return modelFromTensorFile(await tensorFileFromBytes(bytes, source), source);
}

function modelFromTensorFile(
  file: TensorFile & { format: CheckpointFormat; bytes: number },
  path: string,
): LoadedModel {
  const weights = weightsFromTensors(file, path);
  return { weights, dtype: file.dtype, format: file.format, path, bytes: file.bytes };
}
