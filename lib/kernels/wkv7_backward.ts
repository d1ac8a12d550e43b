/**
 * Host wrapper of `shaders/wkv7_backward.wgsl`: the WKV-7 backward down to dL/dS0 in three
 * barrier-free passes (forward rows storing sa and state checkpoints every K tokens, backward
 * rows for dS, dv and dsa, backward columns for dr, dk, dd, dkk, da), and the batch sum that turns
 * per-sequence dS0 into the gradient of one initial state shared by the batch.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { createStorage } from "../gpu/buffers.ts";
import { getPipeline } from "../gpu/pipeline.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { SumBatchKernel } from "./sum_batch.ts";
import { checkDim, needElems } from "./common.ts";
import { checkWkvHeadSize, planWkvWindows, wkvRowsPerGroup, WkvStage } from "./wkv7.ts";
import type { WkvWindow } from "./wkv7.ts";

/**
 * Tokens between the fine state checkpoints that the column pass inverts from: f32 rounding is
 * amplified by at most (1/0.545)^4 ≈ 11 (16 tokens: 1.6e4, measured errRatio 2e-4 with d ≈ 0.55).
 */
export const WKV_BWD_CHUNK = 4;

/**
 * Scratch layout for (B, T, H, N), in f32 elements: sa and dsa (B, T, H, N), then the `ck`
 * region of the shader (coarse window-start states, the G carry, one window's fine checkpoints).
 */
function scratchLayout(B: number, T: number, H: number, N: number) {
  const n = B * T * H * N, C = H * N, NN = N * N;
  const K = WKV_BWD_CHUNK;
  const wins = planWkvWindows(B, T, C, K);
  const W = wins[0].t1 - wins[0].t0; // tokens per window (T when whole sequences fit)
  const nWs = Math.ceil(T / W) - 1; // window starts after the first, per sequence
  const maxNb = Math.max(...wins.map((w) => w.nb));
  const nKw = Math.ceil(W / K);
  const dsaOff = Math.ceil(n / 64) * 64;
  const ckOff = 2 * dsaOff;
  const gcOff = B * H * nWs * NN;
  const fineOff = gcOff + B * H * NN;
  const ckElems = fineOff + maxNb * H * nKw * NN;
  return {
    n,
    K,
    wins,
    W,
    nWs,
    nKw,
    dsaOff,
    ckOff,
    gcOff,
    fineOff,
    ckElems,
    total: ckOff + ckElems,
  };
}

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

/** The three pipelines of one head size. */
interface Passes {
  fwdRows: GPUComputePipeline;
  bwdRows: GPUComputePipeline;
  bwdCols: GPUComputePipeline;
  groupsPerHead: number;
}

/** WKV-7 backward pipelines; create once with {@link Wkv7BackwardKernel.create}. */
export class Wkv7BackwardKernel {
  private constructor(
    private readonly gpu: Gpu,
    private readonly pipes: Map<number, Passes>,
    private readonly sum: SumBatchKernel,
    private readonly stage: WkvStage,
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
    const pipes = new Map<number, Passes>();
    for (const N of headSizes) {
      checkWkvHeadSize("wkv7_backward", N);
      const RW = wkvRowsPerGroup(gpu, N);
      const get = (entryPoint: string) =>
        getPipeline(gpu, { shader: "wkv7_backward", entryPoint, constants: { N, RW } });
      const [fwdRows, bwdRows, bwdCols] = await Promise.all([
        get("forward_rows"),
        get("backward_rows"),
        get("backward_cols"),
      ]);
      pipes.set(N, { fwdRows, bwdRows, bwdCols, groupsPerHead: N / RW });
    }
    const sum = await SumBatchKernel.create(gpu);
    return new Wkv7BackwardKernel(gpu, pipes, sum, new WkvStage(gpu, 9, "wkv7_backward.stage"));
  }

  /** f32 elements of scratch for (B = 1, T, H = 1, N) (see {@link createScratch}). */
  static slotElems(T: number, N: number): number {
    return scratchLayout(1, T, 1, N).total;
  }

  /** Kept for compatibility: every (b, h) pair is handled by the windowed dispatches. */
  pairsPerDispatch(B: number, _T: number, H: number, _N: number): number {
    return B * H;
  }

  /**
   * Allocate the scratch buffer for (B, T, H, N): sa and dsa (2·B·T·H·N), the state at each
   * 64 KiB window start of a sequence, and one window's fine checkpoints.
   *
   * @throws {RangeError} when a region exceeds one storage binding
   */
  createScratch(B: number, T: number, H: number, N: number, label = "wkv7_backward.scratch") {
    const L = scratchLayout(B, T, H, N);
    const max = this.gpu.limits.maxStorageBufferBindingSize;
    if (L.ckOff * 4 > max || L.ckElems * 4 > max) {
      throw new RangeError(
        `wkv7_backward: B = ${B}, T = ${T}, H = ${H}, N = ${N} needs more scratch per binding ` +
          `than ${max} B; use a smaller batch or shorter sequences`,
      );
    }
    return createStorage(this.gpu, label, L.total * 4);
  }

  /** Record the backward for every (b, h): dr, dd, dk, dv, dkk, da and ds0. */
  record(rec: Recorder, a: Wkv7BackwardArgs): void {
    const name = "wkv7_backward";
    const { pipe, L } = this.#check(name, a);
    const { T, H, N } = a;
    const C = H * N, NN = H * N * N;
    const s0Off = a.s0Off ?? 0, ds0Off = a.ds0Off ?? 0;
    const vecs = { buffer: a.scratch, offset: 0, size: L.ckOff * 4 };
    const ck = { buffer: a.scratch, offset: L.ckOff * 4, size: L.ckElems * 4 };
    const params = (w: WkvWindow, mode: number) => [
      ...[T, H, w.b0, w.t0, w.t1, L.K, mode, s0Off, a.sharedS0 ? 0 : NN, a.accumulate ? 1 : 0],
      ...[ds0Off, L.dsaOff, L.W, L.nWs, L.nKw, L.gcOff, L.fineOff],
    ];
    const st = this.stage; // slots: 0 r, 1 d, 2 k, 3 kk, 4 a, 5 v, 6 dy, 7 sa, 8 dsa
    const fwdBinds = [...st.bindings([1, 2, 3, 4, 5]), a.s0, vecs, ck];
    if (L.nWs > 0) { // coarse pass: the state at every window start
      for (const w of L.wins.filter((w) => w.t1 < T)) {
        st.fill(rec, [a.d, a.k, a.kk, a.a, a.v], w, C, 1);
        rec.dispatch(
          pipe.fwdRows,
          params(w, 0),
          fwdBinds,
          [w.nb * H * pipe.groupsPerHead],
          `${name}.forward_coarse`,
        );
      }
    }
    const rowBinds = [...st.bindings([0, 1, 2, 3, 4, 6]), a.dv, vecs, a.ds0];
    const colBinds = [...st.bindings([0, 1, 2, 3, 4, 5, 6, 7, 8]), ck];
    colBinds.push(a.dr, a.dd, a.dk, a.dkk, a.da);
    for (const w of L.wins.slice().reverse()) {
      const g: [number] = [w.nb * H * pipe.groupsPerHead];
      st.fill(rec, [a.r, a.d, a.k, a.kk, a.a, a.v, a.dy], w, C);
      rec.dispatch(pipe.fwdRows, params(w, 1), fwdBinds, g, `${name}.forward_rows`);
      rec.dispatch(pipe.bwdRows, params(w, 1), rowBinds, g, `${name}.backward_rows`);
      st.fill(rec, [a.scratch], w, C, 7, 0); // sa and dsa of this window
      st.fill(rec, [a.scratch], w, C, 8, L.dsaOff);
      rec.dispatch(pipe.bwdCols, params(w, 1), colBinds, g, `${name}.backward_cols`);
    }
  }

  /** Check the shapes, buffers and offsets of `a`; returns its pipelines and scratch layout. */
  #check(name: string, a: Wkv7BackwardArgs): { pipe: Passes; L: ReturnType<typeof scratchLayout> } {
    for (const [n, v] of [["B", a.B], ["T", a.T], ["H", a.H]] as const) checkDim(name, n, v);
    checkWkvHeadSize(name, a.N);
    const pipe = this.pipes.get(a.N);
    if (!pipe) throw new RangeError(`${name}: no pipeline for N = ${a.N}; pass it to create()`);
    const { B, T, H, N } = a;
    const L = scratchLayout(B, T, H, N);
    const ins = { r: a.r, d: a.d, k: a.k, v: a.v, kk: a.kk, a: a.a, dy: a.dy };
    const outs = { dr: a.dr, dd: a.dd, dk: a.dk, dv: a.dv, dkk: a.dkk, da: a.da };
    for (const [key, buf] of Object.entries({ ...ins, ...outs })) {
      needElems(name, `${key} (B, T, H, N)`, buf, L.n);
    }
    const NN = H * N * N;
    const s0Off = a.s0Off ?? 0, ds0Off = a.ds0Off ?? 0;
    needElems(name, "s0", a.s0, s0Off + (a.sharedS0 ? 1 : B) * NN);
    needElems(name, "ds0 (B, H, N, N)", a.ds0, ds0Off + B * NN);
    needElems(name, "scratch", a.scratch, L.total);
    if (s0Off % 4 !== 0 || ds0Off % 4 !== 0) {
      throw new RangeError(`${name}: s0Off ${s0Off} and ds0Off ${ds0Off} must be multiples of 4`);
    }
    return { pipe, L };
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
    const { outOff: dstOff, ...rest } = a;
    this.sum.record(rec, { ...rest, dstOff }, "wkv7_backward.sum_batch");
  }
}
