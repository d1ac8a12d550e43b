/**
 * What the matmul kernels share (buffer path `matmul.ts`, texture path `matmul_tex.ts`,
 * hardware path `matmul_tiled.ts`): the weight-matrix record, the product arguments, the tile
 * lists and the shader code generation, so the three wrappers do not import each other.
 *
 * Code generation (all of it lives here): a tile template (`shaders/matmul_vec4.wgsl`,
 * `shaders/matmul_tex.wgsl`) is written for one output row and column with `$i`/`$j` placeholders
 * inside `//@rows` … `//@end` blocks; {@link expandTile} unrolls each block for TR×TC outputs and
 * picks the entry point; {@link f16WeightSource} then rewrites weight reads for packed f16.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { shaderSource } from "../gpu/pipeline.ts";
import { splitGroups } from "../gpu/groups.ts";
import type { Tile } from "./tune.ts";

/** Texture copies of a matrix: row parts of at most `maxTextureDimension2D` rows. */
export interface MatrixTextures {
  /** rgba32float for f32 weights, rgba16float for f16 ones (fetches convert to f32) */
  format: "rgba32float" | "rgba16float";
  /** consecutive row ranges; each texture is cols / 4 texels wide and `rows` high */
  parts: { texture: GPUTexture; view: GPUTextureView; rowStart: number; rows: number }[];
  /** bytes held by the textures */
  bytes: number;
}

/**
 * A row-major matrix (`rows` × `cols`) on the GPU, split into consecutive row chunks, each its own
 * buffer no larger than the device's `maxStorageBufferBindingSize`.
 *
 * `dtype` "f16" stores IEEE half floats packed two per u32 (row-major, so `cols` is even); the
 * kernels unpack them with `unpack2x16float` and accumulate in f32, so no `shader-f16` feature is
 * needed.
 */
export interface GpuMatrix {
  rows: number;
  cols: number;
  dtype: WeightDtype;
  chunks: { buffer: GPUBuffer; rowStart: number; rows: number }[];
  /** texture copies read by the texture kernels (software adapters), see `matmul_tex.ts` */
  tex?: MatrixTextures;
}

/** How a weight matrix is stored: f32, or IEEE half floats packed two per u32. */
export type WeightDtype = "f32" | "f16";

/** Activation applied to the finished sum. */
export type Activation = "none" | "tanh" | "sigmoid";
export const ACT: Record<Activation, number> = { none: 0, tanh: 1, sigmoid: 2 };

/** Arguments of one product over a single weight buffer. */
export interface MatmulArgs {
  /** rows of x and y (B · T) */
  M: number;
  /** inner dimension */
  K: number;
  /** output columns */
  Nc: number;
  /** (M, K) input, row stride `xStride` (default K) starting at element `xOff` */
  x: GPUBuffer;
  xOff?: number;
  xStride?: number;
  /** linear: (Nc, K); lowrank: (K, Nc); row stride `wStride` (default K resp. Nc) */
  w: GPUBuffer;
  wStride?: number;
  /** (M, ·) output, row stride `yStride` (default Nc) starting at element `yOff` */
  y: GPUBuffer;
  yOff?: number;
  yStride?: number;
  /** optional (M, Nc) addend (the residual stream) */
  res?: GPUBuffer;
  resOff?: number;
  resStride?: number;
  /** add the old y (accumulate) */
  addY?: boolean;
  act?: Activation;
  /** storage of `w` (default "f32"; "f16": packed halves, see {@link GpuMatrix}) */
  wDtype?: WeightDtype;
}

export const TRS = [1, 2, 4] as const;
/** Row tiles compiled besides the tuned one, for few-row products (T = 1 generation). */
const SMALL_ROWS = [1, 2, 4, 8] as const;

/** The two product layouts. */
export type Entry = "linear" | "lowrank";

/** The tiles compiled for one entry: the few-row variants below the tuned tile's TR, then it. */
export function rowTiles(t: Tile): Tile[] {
  return [...SMALL_ROWS.filter((r) => r < t.TR).map((TR) => ({ ...t, TR })), t];
}

/**
 * The smallest compiled row tile that covers M rows (else the largest) and its workgroup counts
 * for an (M, Nc) output (`linear`: TC columns per invocation; `lowrank`: TC groups of 4).
 */
export function pickTile(
  gpu: Gpu,
  cands: { tile: Tile; pipe: GPUComputePipeline }[],
  entry: Entry,
  M: number,
  Nc: number,
): { tile: Tile; pipe: GPUComputePipeline; groups: [number, number] } {
  const { tile, pipe } = cands.find((c) => c.tile.TR >= M) ?? cands[cands.length - 1];
  const cols = entry === "linear" ? tile.TC : 4 * tile.TC;
  const tiles = Math.ceil(M / tile.TR) * Math.ceil(Nc / cols);
  const { groups } = splitGroups(tiles, {
    perGroup: tile.WG,
    maxPerDim: gpu.limits.maxComputeWorkgroupsPerDimension,
  });
  return { tile, pipe, groups };
}

/** A register-tile template (`matmul_vec4` or `matmul_tex`) with `matmul_tile_common.wgsl` prepended. */
export function tileTemplate(name: "matmul_vec4" | "matmul_tex"): string {
  return `${shaderSource("matmul_tile_common")}\n${shaderSource(name)}`;
}

/**
 * Expand the `matmul_vec4.wgsl` template for one entry and tile: keep that entry's section,
 * repeat `//@rows` / `//@cols` lines and substitute `$i`, `$j`, `TRu`, `TCu`.
 */
export function expandTile(src: string, entry: Entry, TR: number, TC: number): string {
  const out: string[] = [];
  let skip = false;
  for (const line of src.split("\n")) {
    const sec = /^\/\/@(begin|end) (\w+)/.exec(line.trim());
    if (sec) {
      skip = sec[1] === "begin" && sec[2] !== entry;
      continue;
    }
    if (skip) continue;
    if (line.trim().startsWith("//")) {
      out.push(line); // comments (the header describes the tags) are kept once
      continue;
    }
    const rows = line.includes("//@rows"), cols = line.includes("//@cols");
    const body = line.replace(/\s*\/\/@(rows|cols)/g, "").replaceAll("TRu", `${TR}u`)
      .replaceAll("TCu", `${TC}u`);
    for (let i = 0; i < (rows ? TR : 1); i++) {
      for (let j = 0; j < (cols ? TC : 1); j++) {
        out.push(body.replaceAll("$i", String(i)).replaceAll("$j", String(j)));
      }
    }
  }
  return out.join("\n");
}

/**
 * The f16-weight variant of a matmul shader: `w` becomes packed halves (`array<u32>` for the
 * scalar shader, `array<vec2<u32>>` for the vec4 one) and every `w[i]` read unpacks to f32.
 */
export function f16WeightSource(src: string): string {
  const vec4 = /var<storage, read> w: array<vec4<f32>>/.test(src);
  const decl = vec4 ? "var<storage, read> w: array<vec2<u32>>" : "var<storage, read> w: array<u32>";
  const fn = vec4
    ? "fn ldw(i: u32) -> vec4<f32> {\n  let h = w[i];\n" +
      "  return vec4<f32>(unpack2x16float(h.x), unpack2x16float(h.y));\n}\n"
    : "fn ldw(i: u32) -> f32 {\n  return unpack2x16float(w[i >> 1u])[i & 1u];\n}\n";
  const out = src.replace(/var<storage, read> w: array<(vec4<f32>|f32)>/, decl)
    .replace(/\bw\[([^\]\[]+)\]/g, "ldw($1)");
  if (out === src || /\bw\[/.test(out)) throw new Error("f16WeightSource: unexpected shader text");
  return `${out}\n${fn}`; // module-scope order is free in WGSL
}
