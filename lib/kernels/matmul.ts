/**
 * Host wrapper of `shaders/matmul.wgsl` (any shape) and the front of the matmul family: `x · Wᵀ`
 * (Linear, W [out, in]) and `x · M` (low-rank, M [in, out]) over {@link GpuMatrix}, a weight
 * matrix split into row chunks so that no chunk exceeds one storage binding. Each product goes
 * to the first kernel that takes it: the hardware kernels (`matmul_tiled.ts`), the texture
 * kernels (`matmul_tex.ts`), the register tiles of `matmul_vec4.ts` when the shapes are 4-aligned
 * (tiles chosen per adapter by `tune.ts`), else `matmul.wgsl`.
 *
 * Products with few rows (T = 1 generation) use the smallest compiled row tile (1, 2, 4 or 8 rows)
 * that covers the rows, so no work is spent on clamped rows.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { getPipeline, shaderSource } from "../gpu/pipeline.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { tilePipeline, timeTile } from "./matmul_vec4.ts";
import { checkDim, needElems } from "./common.ts";
import { type MatmulTuning, type Tile, tuneMatmul, type TuneMode } from "./tune.ts";
import { MatmulTex } from "./matmul_tex.ts";
import {
  type HardwareMatmulChoice,
  type HardwareMatmulOptions,
  MatmulHardware,
  resolveHardwareMatmul,
} from "./matmul_tiled.ts";

export { defaultTuning, type MatmulTuning, type Tile, type TuneMode } from "./tune.ts";
export type { HardwareMatmulChoice, HardwareMatmulOptions } from "./matmul_tiled.ts";
export * from "./matmul_common.ts";
import {
  ACT,
  type Entry,
  f16WeightSource,
  type GpuMatrix,
  type MatmulArgs,
  pickTile,
  rowTiles,
  TRS,
  type WeightDtype,
} from "./matmul_common.ts";

type Pipes = Record<Entry, Map<number, GPUComputePipeline>>;
type Tiled = Record<Entry, { tile: Tile; pipe: GPUComputePipeline }[]>;

/** Options of {@link MatmulKernel.create}. */
export interface MatmulOptions {
  /**
   * Tile choice: "auto" (default) uses a probe result remembered for this device or found in
   * `cacheFile`, else {@link defaultTuning} (no start-up cost); "probe" probes once when nothing
   * is found (`deno task bench` does); "off" uses the defaults; "force" re-probes. `tuning` wins.
   */
  tune?: TuneMode;
  /**
   * A JSON file where probe results are kept per adapter description (read, and written after a
   * probe); omitted (the default): no persistent cache, only this process's memory.
   */
  cacheFile?: string;
  /** Use these tiles (tests, benchmarks). */
  tuning?: MatmulTuning;
  /**
   * The hardware kernels (`matmul_tiled.ts`: workgroup-tiled product for T > 1, subgroup GEMV
   * for T = 1, f16 arithmetic); default "auto": chosen from the adapter's kind and features.
   */
  hardware?: HardwareMatmulOptions;
}

/** Pipelines of the matmul family; create once with {@link MatmulKernel.create}. */
export class MatmulKernel {
  readonly #sets = new Map<WeightDtype, { pipes: Pipes; tiled: Tiled }>();
  #tex?: MatmulTex;
  readonly #hw?: MatmulHardware;

  private constructor(
    private readonly gpu: Gpu,
    /** the tiles in use and where they came from */
    readonly tuning: MatmulTuning,
    /** the hardware kernels in use (`matmul_tiled.ts`) */
    readonly hardware: HardwareMatmulChoice,
  ) {
    this.#hw = MatmulHardware.create(gpu, hardware);
  }

  /**
   * Compile the pipelines for weights stored as `dtype` (f32 ones come with {@link create});
   * call before recording products over f16 matrices.
   */
  async prepare(dtype: WeightDtype): Promise<void> {
    if (this.#sets.has(dtype)) return;
    const gpu = this.gpu;
    const variant = (name: string) => {
      const src = shaderSource(name);
      return dtype === "f16"
        ? { shader: `${name}.f16`, code: f16WeightSource(src) }
        : { shader: name };
    };
    const pipes = { linear: new Map(), lowrank: new Map() } as Pipes;
    for (const entry of ["linear", "lowrank"] as const) {
      for (const TR of TRS) {
        pipes[entry].set(
          TR,
          await getPipeline(gpu, { ...variant("matmul"), entryPoint: entry, constants: { TR } }),
        );
      }
    }
    const tiled = { linear: [], lowrank: [] } as Tiled;
    for (const entry of ["linear", "lowrank"] as const) {
      const t = this.tuning[entry];
      for (const tile of rowTiles(t)) {
        tiled[entry].push({ tile, pipe: await tilePipeline(gpu, entry, tile, dtype) });
      }
    }
    await this.#hw?.prepare(dtype);
    this.#sets.set(dtype, { pipes, tiled });
  }

  /**
   * Compile the texture kernels; from then on {@link linearMatrix} / {@link lowrankMatrix} read
   * matrices that carry texture copies (`GpuMatrix.tex`) through them.
   */
  async prepareTextures(): Promise<void> {
    this.#tex ??= await MatmulTex.create(this.gpu);
  }

  /**
   * Fetch (compile) the pipelines, choosing the tiles per adapter (see {@link MatmulOptions}).
   *
   * @example
   * ```ts ignore
   * const mm = await MatmulKernel.create(gpu, { tune: "off" });
   * ```
   */
  static async create(gpu: Gpu, options: MatmulOptions = {}): Promise<MatmulKernel> {
    const tuning = options.tuning ??
      await tuneMatmul(
        gpu,
        options.tune ?? "auto",
        (entry, tile, s) => timeTile(gpu, entry, tile, s),
        options.cacheFile,
      );
    const mm = new MatmulKernel(gpu, tuning, resolveHardwareMatmul(gpu, options.hardware));
    await mm.prepare("f32");
    return mm;
  }

  /** Record `y = act(x · Wᵀ (+ y) (+ res))` with W (Nc, K). */
  linear(rec: Recorder, a: MatmulArgs): void {
    this.#record(rec, "linear", a);
  }

  /** Record `y = act(x · M (+ y) (+ res))` with M (K, Nc). */
  lowrank(rec: Recorder, a: MatmulArgs): void {
    this.#record(rec, "lowrank", a);
  }

  /**
   * Record `y = act(x · Wᵀ (+ res))` for a chunked Linear weight W [out = Nc, in = K]: each chunk
   * of output rows of W fills its own range of y's columns.
   */
  linearMatrix(
    rec: Recorder,
    W: GpuMatrix,
    a: Omit<MatmulArgs, "w" | "wStride" | "Nc" | "K" | "addY">,
  ): void {
    if (W.tex && this.#tex?.linear(rec, W, a)) return;
    for (const ch of W.chunks) {
      this.#record(rec, "linear", {
        ...a,
        K: W.cols,
        Nc: ch.rows,
        w: ch.buffer,
        yOff: (a.yOff ?? 0) + ch.rowStart,
        yStride: a.yStride ?? W.rows,
        resOff: (a.resOff ?? 0) + ch.rowStart,
        resStride: a.resStride ?? W.rows,
        wDtype: W.dtype,
      });
    }
  }

  /**
   * Record `y = act(x · M (+ res))` for a chunked low-rank M [in = K, out = Nc]: chunks split K,
   * so later chunks accumulate into y and the activation is applied by the last one.
   */
  lowrankMatrix(
    rec: Recorder,
    Mx: GpuMatrix,
    a: Omit<MatmulArgs, "w" | "wStride" | "Nc" | "K" | "addY">,
  ): void {
    if (Mx.tex && this.#tex?.lowrank(rec, Mx, a)) return;
    const n = Mx.chunks.length;
    Mx.chunks.forEach((ch, i) => {
      this.#record(rec, "lowrank", {
        ...a,
        K: ch.rows,
        Nc: Mx.cols,
        w: ch.buffer,
        xOff: (a.xOff ?? 0) + ch.rowStart,
        xStride: a.xStride ?? Mx.rows,
        res: i === 0 ? a.res : undefined,
        addY: i > 0,
        act: i === n - 1 ? a.act : "none",
        wDtype: Mx.dtype,
      });
    });
  }

  #record(rec: Recorder, entry: "linear" | "lowrank", a: MatmulArgs): void {
    const name = `matmul.${entry}`;
    const { xOff, xStride, wStride } = checkInputs(name, entry, a);
    const dtype = a.wDtype ?? "f32";
    const set = this.#sets.get(dtype);
    if (!set) {
      throw new Error(`${name}: ${dtype} weights need \`await matmul.prepare("${dtype}")\` first`);
    }
    const params = checkOutputs(name, entry, a, { xOff, xStride, wStride });
    const bufs = [a.x, a.w, a.res ?? a.x, a.y];
    if (this.#hw?.record(rec, { entry, rows: a.rows, Nc: a.Nc, dtype, params, bufs })) return;
    // the tiled kernel views w (and linear's x) as vec4: whole vec4s, 4-aligned rows
    const wVec = dtype === "f32" ? 16 : 8; // bytes of 4 weights
    const aligned = entry === "linear"
      ? a.K % 4 === 0 && xOff % 4 === 0 && xStride % 4 === 0 && wStride % 4 === 0 &&
        a.x.size % 16 === 0 && a.w.size % wVec === 0
      : a.Nc % 4 === 0 && wStride % 4 === 0 && a.w.size % wVec === 0;
    if (aligned) {
      const { tile, pipe, groups: [gx, gy] } = pickTile(
        this.gpu,
        set.tiled[entry],
        entry,
        a.rows,
        a.Nc,
      );
      params.push(gx);
      const tag = dtype === "f16" ? ".f16" : "";
      rec.dispatch(pipe, params, bufs, [gx, gy], `${name}.${tile.TR}x${tile.TC}${tag}`);
      return;
    }
    const TR = a.rows >= 4 ? 4 : a.rows >= 2 ? 2 : 1;
    const groups = [Math.ceil(a.Nc / 4 / 64), Math.ceil(a.rows / TR)] as const;
    rec.dispatch(set.pipes[entry].get(TR)!, params, bufs, groups, name);
  }
}

/** Check the dimensions, strides and x of one product; returns the defaulted x and w layout. */
function checkInputs(name: string, entry: Entry, a: MatmulArgs) {
  checkDim(name, "rows", a.rows);
  checkDim(name, "K", a.K);
  checkDim(name, "Nc", a.Nc);
  const xOff = a.xOff ?? 0, xStride = a.xStride ?? a.K;
  const wStride = a.wStride ?? (entry === "linear" ? a.K : a.Nc);
  if (xStride < a.K) throw new RangeError(`${name}: xStride ${xStride} < K ${a.K}`);
  const yStride = a.yStride ?? a.Nc;
  if (yStride < a.Nc) throw new RangeError(`${name}: yStride ${yStride} < Nc ${a.Nc}`);
  needElems(name, "x (rows, K)", a.x, xOff + (a.rows - 1) * xStride + a.K);
  return { xOff, xStride, wStride };
}

/** Check w, y and res of one product; returns the 11 Params words of `matmul.wgsl`. */
function checkOutputs(
  name: string,
  entry: Entry,
  a: MatmulArgs,
  l: { xOff: number; xStride: number; wStride: number },
): number[] {
  const yOff = a.yOff ?? 0, yStride = a.yStride ?? a.Nc;
  const resOff = a.resOff ?? 0, resStride = a.resStride ?? a.Nc;
  const wRows = entry === "linear" ? a.Nc : a.K;
  const wCols = entry === "linear" ? a.K : a.Nc;
  const wElems = (wRows - 1) * l.wStride + wCols;
  const wWhat = `w (${entry === "linear" ? "Nc, K" : "K, Nc"})`;
  if ((a.wDtype ?? "f32") === "f32") needElems(name, wWhat, a.w, wElems);
  else if (a.w.size < wElems * 2) {
    throw new RangeError(
      `${name}: buffer ${wWhat} ("${a.w.label}") has ${a.w.size / 2} f16 elements but the ` +
        `shapes need ${wElems}`,
    );
  }
  needElems(name, "y (rows, Nc)", a.y, yOff + (a.rows - 1) * yStride + a.Nc);
  if (a.res) needElems(name, "res (rows, Nc)", a.res, resOff + (a.rows - 1) * resStride + a.Nc);
  if (a.res === a.y) throw new RangeError(`${name}: res must differ from y (use addY)`);
  const mode = ACT[a.act ?? "none"] | (a.addY ? 4 : 0) | (a.res ? 8 : 0);
  return [a.rows, a.K, a.Nc, l.xOff, l.xStride, yOff, yStride, resOff, resStride, mode, l.wStride];
}
