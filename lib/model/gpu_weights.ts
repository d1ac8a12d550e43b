/**
 * Model weights on the GPU, with every matrix split into row chunks that fit one storage binding,
 * and each layer's C-length vectors packed into one buffer (fewer bindings per kernel).
 *
 * The matrices the matmul kernels read are f32 or, with `weightDtype: "f16"`, IEEE halves packed
 * two per u32 ({@link GpuMatrix.dtype}); the matmul shaders have an f16 variant that unpacks
 * and accumulates in f32. Everything else stays f32.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { isSoftwareAdapter } from "../gpu/software.ts";
import { createStorage, writeStorage } from "../gpu/buffers.ts";
import type { GpuMatrix, WeightDtype } from "../kernels/matmul.ts";
import { uploadMatrixTextures } from "../kernels/matmul_tex.ts";
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
  /**
   * Storage of the matrices that go through the matmul kernels (every Linear, the low-rank
   * factors and the head): "f32" (default) or "f16" (IEEE halves packed two per u32, rounded to
   * nearest even; the kernels accumulate in f32). The embedding, gathered row by row, and the
   * per-channel vectors stay f32. f16 halves the weights' memory; the logits then differ from f32
   * by the weights' rounding (relative ≈ 1e-3).
   */
  weightDtype?: WeightDtype;
  /**
   * Also upload texture copies of the matrices, read by the texture matmul kernels
   * (`lib/kernels/matmul_tex.ts`): "auto" (default) on software adapters (llvmpipe, where they
   * run several times faster) and off on GPUs; true/false to force. They add the matrices' size
   * again (in `weightDtype`). Only this option decides (no environment variable); CLIs map
   * a flag to it (`deno task bench --textures auto|on|off`).
   */
  textures?: boolean | "auto";
}

/** Whether {@link UploadOptions.textures} resolves to texture copies on this adapter. */
export function useWeightTextures(
  gpu: Pick<Gpu, "isFallback" | "description">,
  option: boolean | "auto" = "auto",
): boolean {
  if (option !== "auto") return option;
  return isSoftwareAdapter(gpu);
}

/**
 * Upload a row-major `rows × cols` f32 matrix as row chunks of at most `maxChunkBytes` each,
 * stored as `dtype` (f16: rounded to nearest even, packed two per u32).
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
  dtype: WeightDtype = "f32",
): GpuMatrix {
  if (data.length !== rows * cols) {
    throw new RangeError(`${label}: ${data.length} values, expected rows ${rows} × cols ${cols}`);
  }
  if (dtype !== "f32" && dtype !== "f16") {
    throw new RangeError(`${label}: weight dtype "${dtype}" is not supported; use "f32" or "f16"`);
  }
  const limit = Math.min(maxChunkBytes, gpu.limits.maxStorageBufferBindingSize);
  const el = dtype === "f16" ? 2 : 4;
  // f16 chunks start on a whole u32: an even number of rows when cols is odd
  let perChunk = Math.floor(limit / (cols * el));
  if (dtype === "f16" && cols % 2 === 1 && perChunk > 1) perChunk -= perChunk % 2;
  if (perChunk < 1) {
    throw new RangeError(
      `${label}: one row of ${cols} ${dtype} exceeds the ${limit}-byte chunk limit`,
    );
  }
  const chunks: GpuMatrix["chunks"] = [];
  const n = Math.ceil(rows / perChunk);
  for (let i = 0; i < n; i++) {
    const rowStart = i * perChunk;
    const r = Math.min(perChunk, rows - rowStart);
    const name = n === 1 ? label : `${label}[${rowStart}:${rowStart + r}]`;
    const part = data.subarray(rowStart * cols, (rowStart + r) * cols);
    const buffer = createStorage(gpu, name, r * cols * el);
    writeStorage(gpu, buffer, dtype === "f16" ? toF16Words(part) : part);
    chunks.push({ buffer, rowStart, rows: r });
  }
  return { rows, cols, dtype, chunks };
}

/** f32 values rounded to IEEE halves (nearest even), packed two per u32 (low half first). */
export function toF16Words(data: Float32Array): Uint32Array {
  const h = new Float16Array(data.length + (data.length & 1));
  h.set(data);
  return new Uint32Array(h.buffer);
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
  const dtype = options.weightDtype ?? "f32";
  const tex = useWeightTextures(gpu, options.textures);
  const mx = (label: string, d: Float32Array, rows: number, cols: number): GpuMatrix => {
    const m = uploadMatrix(gpu, label, d, rows, cols, options.maxChunkBytes, dtype);
    if (tex) m.tex = uploadMatrixTextures(gpu, label, d, rows, cols, dtype);
    return m;
  };
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
    emb: uploadMatrix(gpu, "emb.weight", weights.emb, V, C, options.maxChunkBytes),
    head: mx("head.weight", weights.head, V, C),
    vecs,
    layers,
    bytes: 0,
  };
  out.bytes = allBuffers(out).reduce((s, b) => s + b.size, 0) +
    allMatrices(out).reduce((s, m) => s + (m.tex?.bytes ?? 0), 0);
  return out;
}

/** Every GPU buffer held by `w`. */
export function allBuffers(w: GpuWeights): GPUBuffer[] {
  const bufs: GPUBuffer[] = [w.vecs, ...w.layers.map((lw) => lw.vecs)];
  for (const m of allMatrices(w)) for (const c of m.chunks) bufs.push(c.buffer);
  return bufs;
}

/** Every matrix of `w`: emb, head, then each layer's. */
export function allMatrices(w: GpuWeights): GpuMatrix[] {
  const out = [w.emb, w.head];
  for (const lw of w.layers) {
    for (const m of [lw.Wr, lw.Wk, lw.Wv, lw.Wo, lw.w1, lw.w2, lw.a1, lw.a2, lw.v1, lw.v2]) {
      if (m) out.push(m);
    }
    out.push(lw.g1, lw.g2, lw.ffn_key, lw.ffn_value);
  }
  return out;
}

/** Free every buffer and texture of `w`. */
export function destroyWeights(w: GpuWeights): void {
  for (const b of allBuffers(w)) b.destroy();
  for (const m of allMatrices(w)) m.tex?.parts.forEach((p) => p.texture.destroy());
}
