/**
 * Model weights on the GPU (f32), with every matrix split into row chunks that fit one storage
 * binding, and each layer's C-length vectors packed into one buffer (fewer bindings per kernel).
 *
 * f16 seam: {@link GpuMatrix.dtype} is `"f32"` today; f16 storage adds a dtype, an upload path
 * here and a shader variant in `matmul.wgsl`, and nothing else changes.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { createStorage, writeStorage } from "../gpu/buffers.ts";
import type { GpuMatrix } from "../kernels/matmul.ts";
import type { RwkvConfig, RwkvWeights } from "./types.ts";

/** Order of the C-length vectors in a layer's packed `vecs` buffer (r_k is [H, N] = C). */
export const LAYER_VECS = [
  "ln1_w",
  "ln1_b",
  "ln2_w",
  "ln2_b",
  "x_r",
  "x_w",
  "x_k",
  "x_v",
  "x_a",
  "x_g",
  "w0",
  "a0",
  "v0",
  "k_k",
  "k_a",
  "lnx_w",
  "lnx_b",
  "ffn_x_k",
  "r_k",
] as const;

/** Name of a packed layer vector. */
export type LayerVec = typeof LAYER_VECS[number];

/** Order of the model-level vectors in {@link GpuWeights.vecs}. */
export const MODEL_VECS = ["ln0_w", "ln0_b", "ln_out_w", "ln_out_b"] as const;

/** Element offset of layer vector `name` in a packed layer buffer of width C. */
export function layerVec(name: LayerVec, C: number): number {
  return LAYER_VECS.indexOf(name) * C;
}

/** Element offset of model vector `name` in {@link GpuWeights.vecs}. */
export function modelVec(name: typeof MODEL_VECS[number], C: number): number {
  return MODEL_VECS.indexOf(name) * C;
}

/** One layer's weights on the GPU, named after the checkpoint keys. */
export interface GpuLayerWeights {
  /** packed vectors, {@link LAYER_VECS} order, each C long */
  vecs: GPUBuffer;
  Wr: GpuMatrix;
  Wk: GpuMatrix;
  Wv: GpuMatrix;
  Wo: GpuMatrix;
  w1: GpuMatrix;
  w2: GpuMatrix;
  a1: GpuMatrix;
  a2: GpuMatrix;
  /** absent in layer 0 */
  v1?: GpuMatrix;
  v2?: GpuMatrix;
  g1: GpuMatrix;
  g2: GpuMatrix;
  ffn_key: GpuMatrix;
  ffn_value: GpuMatrix;
}

/** The whole model's weights on the GPU. */
export interface GpuWeights {
  config: RwkvConfig;
  /** [V, C] */
  emb: GpuMatrix;
  /** [V, C] */
  head: GpuMatrix;
  /** {@link MODEL_VECS}, each C long */
  vecs: GPUBuffer;
  layers: GpuLayerWeights[];
  /** bytes held on the GPU */
  bytes: number;
}

/** Options of {@link uploadWeights}. */
export interface UploadOptions {
  /** Largest chunk in bytes (default: the device's `maxStorageBufferBindingSize`). */
  maxChunkBytes?: number;
}

/**
 * Upload a row-major `rows × cols` f32 matrix as row chunks of at most `maxChunkBytes` each.
 *
 * @throws {RangeError} when `data` is not `rows · cols` long or one row exceeds the chunk size
 */
export function uploadMatrix(
  gpu: Gpu,
  label: string,
  data: Float32Array,
  rows: number,
  cols: number,
  maxChunkBytes: number = gpu.limits.maxStorageBufferBindingSize,
): GpuMatrix {
  if (data.length !== rows * cols) {
    throw new RangeError(`${label}: ${data.length} values, expected rows ${rows} × cols ${cols}`);
  }
  const limit = Math.min(maxChunkBytes, gpu.limits.maxStorageBufferBindingSize);
  const perChunk = Math.floor(limit / (cols * 4));
  if (perChunk < 1) {
    throw new RangeError(`${label}: one row of ${cols} f32 exceeds the ${limit}-byte chunk limit`);
  }
  const chunks: GpuMatrix["chunks"] = [];
  const n = Math.ceil(rows / perChunk);
  for (let i = 0; i < n; i++) {
    const rowStart = i * perChunk;
    const r = Math.min(perChunk, rows - rowStart);
    const name = n === 1 ? label : `${label}[${rowStart}:${rowStart + r}]`;
    const buffer = createStorage(gpu, name, r * cols * 4);
    writeStorage(gpu, buffer, data.subarray(rowStart * cols, (rowStart + r) * cols));
    chunks.push({ buffer, rowStart, rows: r });
  }
  return { rows, cols, dtype: "f32", chunks };
}

function packVecs(gpu: Gpu, label: string, vs: (Float32Array | undefined)[], C: number): GPUBuffer {
  const data = new Float32Array(vs.length * C);
  vs.forEach((v, i) => {
    if (v === undefined) return; // v0 of layer 0: unused, left zero
    if (v.length !== C) throw new RangeError(`${label}[${i}]: length ${v.length}, expected C ${C}`);
    data.set(v, i * C);
  });
  const buf = createStorage(gpu, label, data.byteLength);
  writeStorage(gpu, buf, data);
  return buf;
}

/**
 * Upload every weight of `weights` (f32).
 *
 * @throws {RangeError} when a layer ≥ 1 lacks v1/v2, or a shape disagrees with the config
 */
export function uploadWeights(
  gpu: Gpu,
  weights: RwkvWeights,
  options: UploadOptions = {},
): GpuWeights {
  const cfg = weights.config;
  const { nEmbd: C, vocabSize: V, dimFfn: F } = cfg;
  const mx = (label: string, d: Float32Array, rows: number, cols: number) =>
    uploadMatrix(gpu, label, d, rows, cols, options.maxChunkBytes);
  const layers = weights.blocks.map((w, l): GpuLayerWeights => {
    const p = `blocks.${l}.`;
    if (l > 0 && (!w.v1 || !w.v2 || !w.v0)) {
      throw new RangeError(`layer ${l} lacks att.v0/v1/v2 (needed in every layer ≥ 1)`);
    }
    return {
      vecs: packVecs(
        gpu,
        `${p}vecs`,
        LAYER_VECS.map((k) => l === 0 && k === "v0" ? undefined : w[k]),
        C,
      ),
      Wr: mx(`${p}att.receptance.weight`, w.Wr, C, C),
      Wk: mx(`${p}att.key.weight`, w.Wk, C, C),
      Wv: mx(`${p}att.value.weight`, w.Wv, C, C),
      Wo: mx(`${p}att.output.weight`, w.Wo, C, C),
      w1: mx(`${p}att.w1`, w.w1, C, cfg.dimW),
      w2: mx(`${p}att.w2`, w.w2, cfg.dimW, C),
      a1: mx(`${p}att.a1`, w.a1, C, cfg.dimA),
      a2: mx(`${p}att.a2`, w.a2, cfg.dimA, C),
      v1: l > 0 ? mx(`${p}att.v1`, w.v1!, C, cfg.dimV) : undefined,
      v2: l > 0 ? mx(`${p}att.v2`, w.v2!, cfg.dimV, C) : undefined,
      g1: mx(`${p}att.g1`, w.g1, C, cfg.dimG),
      g2: mx(`${p}att.g2`, w.g2, cfg.dimG, C),
      ffn_key: mx(`${p}ffn.key.weight`, w.ffn_key, F, C),
      ffn_value: mx(`${p}ffn.value.weight`, w.ffn_value, C, F),
    };
  });
  const vecs = packVecs(gpu, "model.vecs", [
    weights.ln0_w,
    weights.ln0_b,
    weights.ln_out_w,
    weights.ln_out_b,
  ], C);
  const out: GpuWeights = {
    config: cfg,
    emb: mx("emb.weight", weights.emb, V, C),
    head: mx("head.weight", weights.head, V, C),
    vecs,
    layers,
    bytes: 0,
  };
  out.bytes = allBuffers(out).reduce((s, b) => s + b.size, 0);
  return out;
}

/** Every GPU buffer held by `w`. */
export function allBuffers(w: GpuWeights): GPUBuffer[] {
  const bufs: GPUBuffer[] = [w.vecs];
  const add = (m?: GpuMatrix) => m?.chunks.forEach((c) => bufs.push(c.buffer));
  add(w.emb);
  add(w.head);
  for (const lw of w.layers) {
    bufs.push(lw.vecs);
    for (const m of [lw.Wr, lw.Wk, lw.Wv, lw.Wo, lw.w1, lw.w2, lw.a1, lw.a2, lw.v1, lw.v2]) add(m);
    for (const m of [lw.g1, lw.g2, lw.ffn_key, lw.ffn_value]) add(m);
  }
  return bufs;
}

/** Free every buffer of `w`. */
export function destroyWeights(w: GpuWeights): void {
  for (const b of allBuffers(w)) b.destroy();
}
