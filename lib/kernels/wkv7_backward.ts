/**
 * Host wrapper of `shaders/wkv7_backward.wgsl`: the WKV-7 backward down to dL/dS0 (checkpoints
 * every 16 tokens, each chunk recomputed forward from its checkpoint), and the batch sum that
 * turns per-sequence dS0 into the gradient of one initial state shared by the batch.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { createStorage } from "../gpu/buffers.ts";
import { getPipeline } from "../gpu/pipeline.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { checkDim, flatGroups, needElems } from "./common.ts";

/** Tokens between state checkpoints (the shader's `CHUNK`). */
export const WKV_BWD_CHUNK = 16;

/** Arguments of {@link Wkv7BackwardKernel.record}. Every (B, T, H, N) buffer is (B·T, C). */
export interface Wkv7BackwardArgs {
  B: number;
  T: number;
  H: number;
  N: number;
  /** forward inputs (B, T, H, N): r, decay d, k (after the k_a update), v, kk, a */
  r: GPUBuffer;
  d: GPUBuffer;
  k: GPUBuffer;
  v: GPUBuffer;
  kk: GPUBuffer;
  a: GPUBuffer;
  /** (B, T, H, N) gradient of the WKV output y */
  dy: GPUBuffer;
  /** initial state (B, H, N, N), or (H, N, N) with `sharedS0`, starting at element `s0Off` */
  s0: GPUBuffer;
  s0Off?: number;
  /** one initial state for the whole batch (state tuning) */
  sharedS0?: boolean;
  /** outputs (B, T, H, N); dr, dk, dv accumulate when `accumulate` */
  dr: GPUBuffer;
  dd: GPUBuffer;
  dk: GPUBuffer;
  dv: GPUBuffer;
  dkk: GPUBuffer;
  da: GPUBuffer;
  accumulate?: boolean;
  /** (B, H, N, N) dL/dS0 per sequence, starting at element `ds0Off` */
  ds0: GPUBuffer;
  ds0Off?: number;
  /** from {@link Wkv7BackwardKernel.createScratch} for the same B, T, H, N */
  scratch: GPUBuffer;
}

/** WKV-7 backward pipelines; create once with {@link Wkv7BackwardKernel.create}. */
export class Wkv7BackwardKernel {
  private constructor(
    private readonly gpu: Gpu,
    private readonly pipes: Map<number, GPUComputePipeline>,
    private readonly sumPipe: GPUComputePipeline,
  ) {}

  /**
   * Fetch (compile) the pipelines for head sizes `headSizes` (default [64]).
   *
   * @example
   * ```ts ignore
   * const wkvBwd = await Wkv7BackwardKernel.create(gpu, [64]);
   * ```
   */
  static async create(gpu: Gpu, headSizes: number[] = [64]): Promise<Wkv7BackwardKernel> {
    const pipes = new Map<number, GPUComputePipeline>();
    for (const N of headSizes) {
      checkHeadSize(N);
      pipes.set(
        N,
        await getPipeline(gpu, { shader: "wkv7_backward", entryPoint: "main", constants: { N } }),
      );
    }
    const sumPipe = await getPipeline(gpu, { shader: "wkv7_backward", entryPoint: "sum_batch" });
    return new Wkv7BackwardKernel(gpu, pipes, sumPipe);
  }

  /** f32 elements of scratch one (b, h) pair needs for T tokens. */
  static slotElems(T: number, N: number): number {
    const nChunks = Math.ceil(T / WKV_BWD_CHUNK);
    return (nChunks + WKV_BWD_CHUNK) * N * N + WKV_BWD_CHUNK * N;
  }

  /** How many (b, h) pairs one dispatch handles so that its scratch fits one binding. */
  pairsPerDispatch(B: number, T: number, H: number, N: number): number {
    const slotBytes = Wkv7BackwardKernel.slotElems(T, N) * 4;
    const fit = Math.floor(this.gpu.limits.maxStorageBufferBindingSize / slotBytes);
    if (fit < 1) {
      throw new RangeError(
        `wkv7_backward: T = ${T} needs ${slotBytes} B of scratch per head, more than one storage ` +
          `binding (${this.gpu.limits.maxStorageBufferBindingSize} B); split the sequence`,
      );
    }
    return Math.min(B * H, fit);
  }

  /** Allocate the scratch buffer for (B, T, H, N). */
  createScratch(B: number, T: number, H: number, N: number, label = "wkv7_backward.scratch") {
    const pairs = this.pairsPerDispatch(B, T, H, N);
    return createStorage(this.gpu, label, pairs * Wkv7BackwardKernel.slotElems(T, N) * 4);
  }

  /** Record the backward for every (b, h): dr, dd, dk, dv, dkk, da and ds0. */
  record(rec: Recorder, a: Wkv7BackwardArgs): void {
    const name = "wkv7_backward";
    for (const [n, v] of [["B", a.B], ["T", a.T], ["H", a.H]] as const) checkDim(name, n, v);
    checkHeadSize(a.N);
    const pipe = this.pipes.get(a.N);
    if (!pipe) throw new RangeError(`${name}: no pipeline for N = ${a.N}; pass it to create()`);
    const n = a.B * a.T * a.H * a.N;
    const ins = { r: a.r, d: a.d, k: a.k, v: a.v, kk: a.kk, a: a.a, dy: a.dy };
    const outs = { dr: a.dr, dd: a.dd, dk: a.dk, dv: a.dv, dkk: a.dkk, da: a.da };
    for (const [key, buf] of Object.entries({ ...ins, ...outs })) {
      needElems(name, `${key} (B, T, H, N)`, buf, n);
    }
    const NN = a.H * a.N * a.N;
    const s0Off = a.s0Off ?? 0;
    needElems(name, "s0", a.s0, s0Off + (a.sharedS0 ? 1 : a.B) * NN);
    needElems(name, "ds0 (B, H, N, N)", a.ds0, (a.ds0Off ?? 0) + a.B * NN);
    const pairs = this.pairsPerDispatch(a.B, a.T, a.H, a.N);
    needElems(name, "scratch", a.scratch, pairs * Wkv7BackwardKernel.slotElems(a.T, a.N));
    const nChunks = Math.ceil(a.T / WKV_BWD_CHUNK);
    const bindings = [a.r, a.d, a.k, a.v, a.kk, a.a, a.dy, a.s0];
    bindings.push(a.dr, a.dd, a.dk, a.dv, a.dkk, a.da, a.ds0, a.scratch);
    for (let bh0 = 0; bh0 < a.B * a.H; bh0 += pairs) {
      const count = Math.min(pairs, a.B * a.H - bh0);
      const params = [a.B, a.T, a.H, nChunks, bh0, s0Off, a.sharedS0 ? 0 : NN];
      params.push(a.accumulate ? 1 : 0, a.ds0Off ?? 0);
      rec.dispatch(pipe, params, bindings, [count], name);
    }
  }

  /**
   * Record `dst[outOff + e] (+)= Σ_b src[b, e]` for e < n: the gradient of a state shared by
   * the batch from per-sequence gradients `src` (B, n).
   */
  sumBatch(
    rec: Recorder,
    a: {
      B: number;
      n: number;
      src: GPUBuffer;
      srcOff?: number;
      dst: GPUBuffer;
      outOff?: number;
      accumulate?: boolean;
    },
  ): void {
    const name = "wkv7_backward.sum_batch";
    checkDim(name, "B", a.B);
    checkDim(name, "n", a.n);
    const outOff = a.outOff ?? 0;
    const srcOff = a.srcOff ?? 0;
    needElems(name, "src (B, n)", a.src, srcOff + a.B * a.n);
    needElems(name, "dst", a.dst, outOff + a.n);
    const { groups, nx } = flatGroups(a.n);
    const params = [a.n, a.B, outOff, a.accumulate ? 1 : 0, nx, srcOff];
    rec.dispatch(this.sumPipe, params, [a.src, a.dst], groups, name);
  }
}

function checkHeadSize(N: number): void {
  if (!Number.isInteger(N) || N < 1 || N > 64) {
    throw new RangeError(`wkv7_backward: head size N = ${N}; expected an integer in [1, 64]`);
  }
}
