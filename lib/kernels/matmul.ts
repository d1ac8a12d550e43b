/**
 * Host wrapper of `shaders/matmul_vec4.wgsl` (register-tiled, used when the shapes are 4-aligned;
 * tiles chosen per adapter by `tune.ts`) and `shaders/matmul.wgsl` (any shape): `x · Wᵀ` (Linear,
 * W [out, in]) and `x · M` (low-rank, M [in, out]), plus {@link GpuMatrix}, a weight matrix split
 * into row chunks so that no chunk exceeds one storage binding.
 *
 * Products with few rows (T = 1 generation) use the smallest compiled row tile (1, 2, 4 or 8 rows)
 * that covers M, so no work is spent on clamped rows.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { getPipeline, shaderSource } from "../gpu/pipeline.ts";
import { Recorder, splitGroups } from "../gpu/recorder.ts";
import { checkDim, needElems } from "./common.ts";
import { type MatmulTuning, type Tile, tuneMatmul, type TuneMode } from "./tune.ts";

export { defaultTuning, type MatmulTuning, type Tile, type TuneMode } from "./tune.ts";

/**
 * A row-major matrix (`rows` × `cols`) on the GPU, split into consecutive row chunks, each its own
 * buffer no larger than the device's `maxStorageBufferBindingSize`.
 *
 * Storage is f32 today (`dtype`); f16 storage would add a second `dtype` and shader variant here.
 */
export interface GpuMatrix {
  rows: number;
  cols: number;
  dtype: "f32";
  chunks: { buffer: GPUBuffer; rowStart: number; rows: number }[];
}

/** Activation applied to the finished sum. */
export type Activation = "none" | "tanh" | "sigmoid";
const ACT: Record<Activation, number> = { none: 0, tanh: 1, sigmoid: 2 };

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
}

const TRS = [1, 2, 4] as const;
/** Row tiles compiled besides the tuned one, for few-row products (T = 1 generation). */
const SMALL_ROWS = [1, 2, 4, 8] as const;

type Entry = "linear" | "lowrank";

/** Options of {@link MatmulKernel.create}. */
export interface MatmulOptions {
  /**
   * Tile choice: "auto" (default) uses a probe result remembered or cached for this adapter,
   * else {@link defaultTuning} (no start-up cost); "probe" probes once when nothing is cached
   * (`deno task bench` does); "off" uses the defaults; "force" re-probes. `tuning` wins.
   */
  tune?: TuneMode;
  /** Use these tiles (tests, benchmarks). */
  tuning?: MatmulTuning;
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

/** Pipelines of `matmul.wgsl` and the tiled `matmul_vec4.wgsl`; create once with {@link MatmulKernel.create}. */
export class MatmulKernel {
  private constructor(
    private readonly gpu: Gpu,
    private readonly pipes: Record<Entry, Map<number, GPUComputePipeline>>,
    private readonly tiled: Record<Entry, { tile: Tile; pipe: GPUComputePipeline }[]>,
    /** the tiles in use and where they came from */
    readonly tuning: MatmulTuning,
  ) {}

  /**
   * Fetch (compile) the pipelines, choosing the tiles per adapter (see {@link MatmulOptions}).
   *
   * @example
   * ```ts ignore
   * const mm = await MatmulKernel.create(gpu, { tune: "off" });
   * ```
   */
  static async create(gpu: Gpu, options: MatmulOptions = {}): Promise<MatmulKernel> {
    const pipes = { linear: new Map(), lowrank: new Map() } as Record<
      Entry,
      Map<number, GPUComputePipeline>
    >;
    for (const entry of ["linear", "lowrank"] as const) {
      for (const TR of TRS) {
        pipes[entry].set(
          TR,
          await getPipeline(gpu, { shader: "matmul", entryPoint: entry, constants: { TR } }),
        );
      }
    }
    const tuning = options.tuning ??
      await tuneMatmul(
        gpu,
        options.tune ?? "auto",
        (entry, tile, s) => timeTile(gpu, entry, tile, s),
      );
    const tiled = { linear: [], lowrank: [] } as Record<
      Entry,
      { tile: Tile; pipe: GPUComputePipeline }[]
    >;
    for (const entry of ["linear", "lowrank"] as const) {
      const t = tuning[entry];
      const tiles = [...SMALL_ROWS.filter((r) => r < t.TR).map((TR) => ({ ...t, TR })), t];
      for (const tile of tiles) {
        tiled[entry].push({ tile, pipe: await tilePipeline(gpu, entry, tile) });
      }
    }
    return new MatmulKernel(gpu, pipes, tiled, tuning);
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
      });
    });
  }

  #record(rec: Recorder, entry: "linear" | "lowrank", a: MatmulArgs): void {
    const name = `matmul.${entry}`;
    checkDim(name, "M", a.M);
    checkDim(name, "K", a.K);
    checkDim(name, "Nc", a.Nc);
    const xOff = a.xOff ?? 0, xStride = a.xStride ?? a.K;
    const yOff = a.yOff ?? 0, yStride = a.yStride ?? a.Nc;
    const resOff = a.resOff ?? 0, resStride = a.resStride ?? a.Nc;
    const wStride = a.wStride ?? (entry === "linear" ? a.K : a.Nc);
    if (xStride < a.K) throw new RangeError(`${name}: xStride ${xStride} < K ${a.K}`);
    if (yStride < a.Nc) throw new RangeError(`${name}: yStride ${yStride} < Nc ${a.Nc}`);
    needElems(name, "x (M, K)", a.x, xOff + (a.M - 1) * xStride + a.K);
    const wRows = entry === "linear" ? a.Nc : a.K;
    const wCols = entry === "linear" ? a.K : a.Nc;
    needElems(
      name,
      `w (${entry === "linear" ? "Nc, K" : "K, Nc"})`,
      a.w,
      (wRows - 1) * wStride + wCols,
    );
    needElems(name, "y (M, Nc)", a.y, yOff + (a.M - 1) * yStride + a.Nc);
    if (a.res) needElems(name, "res (M, Nc)", a.res, resOff + (a.M - 1) * resStride + a.Nc);
    if (a.res === a.y) throw new RangeError(`${name}: res must differ from y (use addY)`);
    const mode = ACT[a.act ?? "none"] | (a.addY ? 4 : 0) | (a.res ? 8 : 0);
    const params = [a.M, a.K, a.Nc, xOff, xStride, yOff, yStride, resOff, resStride, mode, wStride];
    const bufs = [a.x, a.w, a.res ?? a.x, a.y];
    // the tiled kernel views w (and linear's x) as vec4: whole vec4s, 4-aligned rows
    const aligned = entry === "linear"
      ? a.K % 4 === 0 && xOff % 4 === 0 && xStride % 4 === 0 && wStride % 4 === 0 &&
        a.x.size % 16 === 0 && a.w.size % 16 === 0
      : a.Nc % 4 === 0 && wStride % 4 === 0 && a.w.size % 16 === 0;
    if (aligned) {
      // the smallest compiled row tile that covers M, else the tuned one
      const cands = this.tiled[entry];
      const { tile, pipe } = cands.find((c) => c.tile.TR >= a.M) ?? cands[cands.length - 1];
      const cols = entry === "linear" ? tile.TC : 4 * tile.TC;
      const tiles = Math.ceil(a.M / tile.TR) * Math.ceil(a.Nc / cols);
      const [gx, gy] = splitGroups(
        Math.ceil(tiles / tile.WG),
        this.gpu.limits.maxComputeWorkgroupsPerDimension,
      );
      params.push(gx);
      rec.dispatch(pipe, params, bufs, [gx, gy], `${name}.${tile.TR}x${tile.TC}`);
      return;
    }
    const TR = a.M >= 4 ? 4 : a.M >= 2 ? 2 : 1;
    const groups = [Math.ceil(a.Nc / 4 / 64), Math.ceil(a.M / TR)] as const;
    rec.dispatch(this.pipes[entry].get(TR)!, params, bufs, groups, name);
  }
}

const tileSource = new Map<string, string>();

/** The compiled pipeline of one template expansion (cached by the pipeline cache). */
function tilePipeline(gpu: Gpu, entry: Entry, tile: Tile): Promise<GPUComputePipeline> {
  const id = `${entry}.${tile.TR}x${tile.TC}`;
  let code = tileSource.get(id);
  if (code === undefined) {
    code = expandTile(shaderSource("matmul_vec4"), entry, tile.TR, tile.TC);
    tileSource.set(id, code);
  }
  return getPipeline(gpu, {
    shader: `matmul_vec4.${id}`,
    entryPoint: entry,
    constants: { WG: tile.WG },
    code,
  });
}

/** Seconds per dispatch of one tile on one shape (wall time over 8 dispatches in one submit). */
async function timeTile(
  gpu: Gpu,
  entry: Entry,
  tile: Tile,
  s: { M: number; K: number; N: number; x: GPUBuffer; w: GPUBuffer; y: GPUBuffer },
): Promise<number> {
  const pipe = await tilePipeline(gpu, entry, tile);
  const cols = entry === "linear" ? tile.TC : 4 * tile.TC;
  const tiles = Math.ceil(s.M / tile.TR) * Math.ceil(s.N / cols);
  const [gx, gy] = splitGroups(Math.ceil(tiles / tile.WG));
  const wStride = entry === "linear" ? s.K : s.N;
  const params = [s.M, s.K, s.N, 0, s.K, 0, s.N, 0, s.N, 0, wStride, gx];
  const rec = new Recorder(gpu, "matmul.tune");
  const n = 8;
  for (let i = 0; i < n; i++) rec.dispatch(pipe, params, [s.x, s.w, s.x, s.y], [gx, gy]);
  const t0 = performance.now();
  await rec.flush();
  return (performance.now() - t0) / 1000 / n;
}
