/**
 * Host wrapper of `shaders/matmul.wgsl` and `shaders/matmul_vec4.wgsl` (used when the shapes are
 * 4-aligned): `x · Wᵀ` (Linear, W [out, in]) and `x · M` (low-rank, M [in, out]),
 * register-blocked, plus {@link GpuMatrix}, a weight matrix split into row chunks
 * so that no chunk exceeds one storage binding.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { getPipeline } from "../gpu/pipeline.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { checkDim, needElems } from "./common.ts";

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

/** Pipelines of `matmul.wgsl`; create once with {@link MatmulKernel.create}. */
export class MatmulKernel {
  private constructor(
    private readonly pipes: Record<"linear" | "lowrank", Map<number, GPUComputePipeline>>,
    private readonly vec4: Record<string, GPUComputePipeline>,
  ) {}

  /** Fetch (compile) the pipelines. */
  static async create(gpu: Gpu): Promise<MatmulKernel> {
    const pipes = { linear: new Map(), lowrank: new Map() } as Record<
      "linear" | "lowrank",
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
    const vec4: Record<string, GPUComputePipeline> = {};
    for (const entry of ["linear_r4", "linear_r1", "lowrank_r4", "lowrank_r1"]) {
      vec4[entry] = await getPipeline(gpu, { shader: "matmul_vec4", entryPoint: entry });
    }
    return new MatmulKernel(pipes, vec4);
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
    const whole16 = a.x.size % 16 === 0 && a.w.size % 16 === 0;
    const aligned = entry === "linear"
      ? a.K % 4 === 0 && xOff % 4 === 0 && xStride % 4 === 0 && wStride % 4 === 0
      : a.Nc % 4 === 0 && wStride % 4 === 0;
    if (whole16 && aligned) {
      // matmul_vec4.wgsl: 4×4 tiles (1×4 for fewer than 4 rows), vec4 loads
      const r4 = a.M >= 4;
      const groups = [Math.ceil(a.Nc / 4 / 64), r4 ? Math.ceil(a.M / 4) : a.M] as const;
      const pipe = this.vec4[`${entry}_${r4 ? "r4" : "r1"}`];
      rec.dispatch(pipe, params, bufs, groups, `${name}.vec4`);
      return;
    }
    const TR = a.M >= 4 ? 4 : a.M >= 2 ? 2 : 1;
    const groups = [Math.ceil(a.Nc / 4 / 64), Math.ceil(a.M / TR)] as const;
    rec.dispatch(this.pipes[entry].get(TR)!, params, bufs, groups, name);
  }
}
