/**
 * The texture path of the matmul kernels (`shaders/matmul_tex.wgsl`), used on software adapters:
 * weight matrices get a texture copy at upload ({@link uploadMatrixTextures}), and each product
 * copies its activations into a scratch rgba32float texture before the dispatch.
 *
 * Why: on Mesa's llvmpipe a storage-buffer load is a per-lane scalar loop with a bounds check,
 * about 30 ns a value, while a texel fetch is a vector gather, about 4 ns for four values. Both
 * matmul operands are loads in the inner loop, so the same register tile runs several times
 * faster from textures (64×768×768 on this 2-core machine: 2.3 → 10+ GFLOP/s, see
 * `deno task bench`). On GPUs storage loads are fast and the buffer kernels stay.
 *
 * A product takes this path only when its operands fit it: weight columns a multiple of 4, x rows
 * 256-byte aligned (copy rules of `copyBufferToTexture`), rows and K / 4 within the adapter's
 * texture size. Otherwise the caller falls back to the buffer kernels, so results never depend
 * on which path ran beyond f32 rounding order.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { getPipeline } from "../gpu/pipeline.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { createStorage } from "../gpu/buffers.ts";
import type { Tile } from "./tune.ts";
import type { Activation, GpuMatrix, MatmulArgs, MatrixTextures } from "./matmul_common.ts";
import { type Entry, expandTile, pickTile, rowTiles, tileTemplate } from "./matmul_common.ts";
export type { MatrixTextures } from "./matmul_common.ts";
import { needElems } from "./common.ts";

/**
 * Register tiles of the texture kernels. Measured on llvmpipe at 64×768×768 (2 cores, quiet):
 * 16×16 runs 9.1 / 9.4 GFLOP/s (linear / lowrank) but compiles for 17–20 s on a cold shader
 * cache; 16×8 runs 7.7 / 10.1 and compiles in 5–6 s; 8×8 runs 6.8 / 7.1 in 2 s. 16×8 is the
 * default.
 */
export const TEX_TILES: Readonly<Record<"linear" | "lowrank", Tile>> = {
  linear: { TR: 16, TC: 8, WG: 8 },
  lowrank: { TR: 16, TC: 2, WG: 8 },
};

/**
 * The smallest size ≥ n that is not a power of two. llvmpipe compiles a separate shader variant
 * for power-of-two and other texture sizes (its static sampler state has `pot_width` /
 * `pot_height`), each taking seconds for the large tiles, so every texture here is allocated at a
 * non-power-of-two size (the extra texels are never read) and one variant serves all shapes.
 */
export function npot(n: number): number {
  let m = n;
  while ((m & (m - 1)) === 0) m++;
  return m;
}

const ACT: Record<Activation, number> = { none: 0, tanh: 1, sigmoid: 2 };

/**
 * Upload texture copies of a row-major `rows × cols` matrix, or undefined when the matrix cannot
 * be a texture here (cols not a multiple of 4, or cols / 4 wider than the adapter allows).
 * Parts hold a multiple of 4 rows, so the low-rank kernel's 4-row steps never straddle two.
 */
export function uploadMatrixTextures(
  gpu: Gpu,
  label: string,
  data: Float32Array,
  rows: number,
  cols: number,
  dtype: "f32" | "f16",
  maxRows: number = gpu.limits.maxTextureDimension2D,
): MatrixTextures | undefined {
  const max = gpu.limits.maxTextureDimension2D;
  if (cols % 4 !== 0 || npot(cols / 4) > max) return undefined;
  const per = Math.min(maxRows, max - 4) & ~3; // npot(per) ≤ max
  if (per < 4) throw new RangeError(`${label}: texture parts need at least 4 rows (${maxRows})`);
  const format = dtype === "f16" ? "rgba16float" : "rgba32float";
  const el = dtype === "f16" ? 2 : 4;
  const parts: MatrixTextures["parts"] = [];
  for (let rowStart = 0; rowStart < rows; rowStart += per) {
    const r = Math.min(per, rows - rowStart);
    const texture = gpu.device.createTexture({
      label: parts.length === 0 && r === rows ? `${label}.tex` : `${label}.tex[${rowStart}]`,
      size: [npot(cols / 4), npot(r)],
      format,
      usage: GPUTextureUsage.TEXTURE_BINDING | GPUTextureUsage.COPY_DST,
    });
    const part = data.subarray(rowStart * cols, (rowStart + r) * cols);
    gpu.device.queue.writeTexture(
      { texture },
      (dtype === "f16" ? new Float16Array(part) : part) as Float32Array<ArrayBuffer>,
      { bytesPerRow: cols * el, rowsPerImage: r }, // into the top-left corner
      [cols / 4, r],
    );
    parts.push({ texture, view: texture.createView(), rowStart, rows: r });
  }
  const bytes = parts.reduce((b, p) => b + npot(cols / 4) * npot(p.rows) * 4 * el, 0);
  return { format, parts, bytes };
}

type MatrixArgs = Omit<MatmulArgs, "w" | "wStride" | "Nc" | "K" | "addY" | "wDtype">;

/** Compiled texture kernels plus the scratch textures activations are copied into. */
export class MatmulTex {
  readonly #scratch = new Map<string, { texture: GPUTexture; view: GPUTextureView }>();
  readonly #dummy: GPUBuffer;

  private constructor(
    private readonly gpu: Gpu,
    private readonly tiled: Record<Entry, { tile: Tile; pipe: GPUComputePipeline }[]>,
  ) {
    this.#dummy = createStorage(gpu, "matmul_tex.nores", 16);
  }

  /** Compile the texture kernels for `tiles` (and the few-row variants). */
  static async create(gpu: Gpu, tiles = TEX_TILES): Promise<MatmulTex> {
    const tiled = { linear: [], lowrank: [] } as Record<
      Entry,
      { tile: Tile; pipe: GPUComputePipeline }[]
    >;
    const src = tileTemplate("matmul_tex");
    for (const entry of ["linear", "lowrank"] as const) {
      const t = tiles[entry];
      for (const tile of rowTiles(t)) {
        const code = expandTile(src, entry, tile.TR, tile.TC);
        const pipe = await getPipeline(gpu, {
          shader: `matmul_tex.${entry}.${tile.TR}x${tile.TC}`,
          entryPoint: entry,
          constants: { WG: tile.WG },
          code,
        });
        tiled[entry].push({ tile, pipe });
      }
    }
    return new MatmulTex(gpu, tiled);
  }

  /** Record `y = act(x · Wᵀ (+ res))` from W's textures; false (nothing recorded) if x does not fit. */
  linear(rec: Recorder, W: GpuMatrix, a: MatrixArgs): boolean {
    if (!W.tex || !this.#fits(a, W.cols)) return false;
    const xt = this.#copyX(rec, a, W.cols, W.cols);
    for (const part of W.tex.parts) {
      this.#dispatch(rec, "linear", xt, part.view, {
        rows: a.rows,
        K: W.cols,
        Nc: part.rows,
        yOff: (a.yOff ?? 0) + part.rowStart,
        yStride: a.yStride ?? W.rows,
        res: a.res,
        resOff: (a.resOff ?? 0) + part.rowStart,
        resStride: a.resStride ?? W.rows,
        y: a.y,
        mode: ACT[a.act ?? "none"] | (a.res ? 8 : 0),
      });
    }
    return true;
  }

  /**
   * Record `y = act(x · M (+ res))` from M's textures (parts split K: later parts accumulate);
   * false (nothing recorded) if x does not fit.
   */
  lowrank(rec: Recorder, Mx: GpuMatrix, a: MatrixArgs): boolean {
    if (!Mx.tex || Mx.rows % 4 !== 0 || !this.#fits(a, Mx.rows)) return false;
    const n = Mx.tex.parts.length;
    Mx.tex.parts.forEach((part, i) => {
      // each part reads its own K range of x, copied alone (keeps the texture narrow)
      const xt = this.#copyX(
        rec,
        { ...a, xOff: (a.xOff ?? 0) + part.rowStart },
        part.rows,
        Mx.rows,
      );
      const act = i === n - 1 ? ACT[a.act ?? "none"] : 0;
      const res = i === 0 ? a.res : undefined;
      this.#dispatch(rec, "lowrank", xt, part.view, {
        rows: a.rows,
        K: part.rows,
        Nc: Mx.cols,
        yOff: a.yOff ?? 0,
        yStride: a.yStride ?? Mx.cols,
        res,
        resOff: a.resOff ?? 0,
        resStride: a.resStride ?? Mx.cols,
        y: a.y,
        mode: act | (i > 0 ? 4 : 0) | (res ? 8 : 0),
      });
    });
    return true;
  }

  /** Whether x (rows × K, row stride `xStride`, default K) can be copied into textures. */
  #fits(a: MatrixArgs, K: number): boolean {
    const max = this.gpu.limits.maxTextureDimension2D;
    const xOff = a.xOff ?? 0, xStride = a.xStride ?? K;
    if (K % 4 !== 0 || a.rows < 1 || npot(Math.ceil(a.rows / 64) * 64) > max) return false;
    if (xOff % 4 !== 0 || (xStride * 4) % 256 !== 0) return false;
    return a.x.size >= (xOff + (a.rows - 1) * xStride + K) * 4; // else the buffer path names it
  }

  /**
   * Copy `K` columns of x (`rows` rows from element `xOff`, row stride `xStride`, default `rowLen`)
   * into a scratch texture (sizes rounded up to 64, then to a non-power of two; see {@link npot}).
   */
  #copyX(rec: Recorder, a: MatrixArgs, K: number, rowLen: number): GPUTextureView {
    const xOff = a.xOff ?? 0, xStride = a.xStride ?? rowLen;
    const w = npot(Math.ceil(K / 4 / 64) * 64), h = npot(Math.ceil(a.rows / 64) * 64);
    const key = `${w}x${h}`;
    let tex = this.#scratch.get(key);
    if (!tex) {
      const texture = this.gpu.device.createTexture({
        label: `matmul_tex.x.${key}`,
        size: [w, h],
        format: "rgba32float",
        usage: GPUTextureUsage.TEXTURE_BINDING | GPUTextureUsage.COPY_DST,
      });
      tex = { texture, view: texture.createView() };
      this.#scratch.set(key, tex);
    }
    rec.copyToTexture(a.x, xOff * 4, xStride * 4, tex.texture, [K / 4, a.rows]);
    return tex.view;
  }

  #dispatch(
    rec: Recorder,
    entry: Entry,
    xt: GPUTextureView,
    wt: GPUTextureView,
    d: {
      rows: number;
      K: number;
      Nc: number;
      yOff: number;
      yStride: number;
      res?: GPUBuffer;
      resOff: number;
      resStride: number;
      y: GPUBuffer;
      mode: number;
    },
  ): void {
    const name = `matmul.${entry}.tex`;
    needElems(name, "y (rows, Nc)", d.y, d.yOff + (d.rows - 1) * d.yStride + d.Nc);
    if (d.res) {
      needElems(name, "res (rows, Nc)", d.res, d.resOff + (d.rows - 1) * d.resStride + d.Nc);
    }
    if (d.res === d.y) throw new RangeError(`${name}: res must differ from y`);
    const { tile, pipe, groups: [gx, gy] } = pickTile(
      this.gpu,
      this.tiled[entry],
      entry,
      d.rows,
      d.Nc,
    );
    const params = [
      d.rows,
      d.K,
      d.Nc,
      0, // first texel column of x (each product copies its own x)
      0,
      d.yOff,
      d.yStride,
      d.resOff,
      d.resStride,
      d.mode,
      0,
      gx,
    ];
    const bufs = [xt, wt, d.res ?? this.#dummy, d.y];
    rec.dispatch(pipe, params, bufs, [gx, gy], `${name}.${tile.TR}x${tile.TC}`);
  }
}
