/**
 * Host wrapper of `shaders/wkv7.wgsl`: the sequential WKV-7 recurrence, one workgroup per
 * (sequence, head), one invocation per value row, and the uniform-window staging that the WKV
 * kernels share.
 *
 * Per-token vectors that every invocation of a head reads (r, d, k, kk, a, …) are copied into
 * 64 KiB uniform windows before each dispatch: on Mesa's llvmpipe a storage or workgroup load
 * costs a scalar loop over the SIMD lanes (~20 ns a value) and a barrier an LLVM coroutine switch,
 * while a uniform load is one vector gather (~1 ns); on GPUs a uniform-indexed uniform read is the
 * broadcast path as well. Long inputs take several windows (one dispatch each), the state
 * carried between them in the state buffer.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { getPipeline } from "../gpu/pipeline.ts";
import type { Binding, Recorder } from "../gpu/recorder.ts";
import { checkDim, needElems } from "./common.ts";

/** The head size of every released RWKV-7 model. */
export const WKV_N = 64;

/** Bytes of one uniform window (the shaders declare `array<vec4<f32>, 4096>`). */
export const WKV_WINDOW_BYTES = 65536;

/** f32 elements of one uniform window. */
const WINDOW_ELEMS = WKV_WINDOW_BYTES / 4;

/**
 * Throw a RangeError unless N is a head size the WKV shaders support: a multiple of 4 in [4, 64]
 * (the state row lives in N / 4 vec4 registers).
 */
export function checkWkvHeadSize(kernel: string, N: number): void {
  if (!Number.isInteger(N) || N < 4 || N > 64 || N % 4 !== 0) {
    throw new RangeError(
      `${kernel}: head size N = ${N} is not supported; the kernel keeps a state row in N/4 vec4 ` +
        `registers, so N must be a multiple of 4 in [4, ${WKV_N}] (released models use ${WKV_N})`,
    );
  }
}

/**
 * Invocations per workgroup for head size N (the shaders' `RW` override; N / RW workgroups per
 * head). N: one workgroup per head. Measured on llvmpipe, 16 (four workgroups per head, so one
 * head spreads over several threads) made the column pass 2–3× slower, so N everywhere.
 */
export function wkvRowsPerGroup(_gpu: Gpu, N: number): number {
  return N;
}

/** One dispatch's share of the (B, T) rows: tokens [t0, t1) of sequences b0 … b0 + nb − 1. */
export interface WkvWindow {
  b0: number;
  nb: number;
  t0: number;
  t1: number;
  /** first flat row b0·T + t0 */
  r0: number;
  /** rows in the window, nb·(t1 − t0) (contiguous in a (B·T, C) buffer) */
  rows: number;
}

/**
 * Split (B, T) rows of width C into windows of at most 64 KiB per vector: whole sequences
 * grouped when T fits, otherwise token ranges of one sequence whose length is a multiple of
 * `align` (the backward's checkpoint stride).
 *
 * @throws {RangeError} when one row (C values) or `align` rows do not fit a window
 */
export function planWkvWindows(B: number, T: number, C: number, align = 1): WkvWindow[] {
  const maxRows = Math.floor(WINDOW_ELEMS / C);
  if (maxRows < align) {
    throw new RangeError(
      `wkv7: C = ${C} channels: ${align} token rows do not fit one ${WKV_WINDOW_BYTES}-byte ` +
        `uniform window; use fewer heads per layer`,
    );
  }
  const out: WkvWindow[] = [];
  if (T <= maxRows) {
    const per = Math.floor(maxRows / T);
    for (let b0 = 0; b0 < B; b0 += per) {
      const nb = Math.min(per, B - b0);
      out.push({ b0, nb, t0: 0, t1: T, r0: b0 * T, rows: nb * T });
    }
    return out;
  }
  const W = Math.floor(maxRows / align) * align;
  for (let b0 = 0; b0 < B; b0++) {
    for (let t0 = 0; t0 < T; t0 += W) {
      const t1 = Math.min(T, t0 + W);
      out.push({ b0, nb: 1, t0, t1, r0: b0 * T + t0, rows: t1 - t0 });
    }
  }
  return out;
}

/**
 * A buffer of uniform windows (slots) that (B·T, C) vectors are copied into before a dispatch.
 * Reusing it across dispatches of one submit is safe: WebGPU orders the copies and dispatches.
 */
export class WkvStage {
  readonly buffer: GPUBuffer;
  constructor(gpu: Gpu, readonly slots: number, label: string) {
    this.buffer = gpu.device.createBuffer({
      label,
      size: slots * WKV_WINDOW_BYTES,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
  }

  /**
   * Record copies of rows [r0, r0 + rows) of each source (width C, starting at element
   * `srcOff`) into slots `first`, `first + 1`, ….
   */
  fill(rec: Recorder, srcs: GPUBuffer[], w: WkvWindow, C: number, first = 0, srcOff = 0): void {
    srcs.forEach((src, s) => {
      const dst = (first + s) * WKV_WINDOW_BYTES;
      rec.copy(src, (srcOff + w.r0 * C) * 4, this.buffer, dst, w.rows * C * 4);
    });
  }

  /** Bindings of the given slots, in order. */
  bindings(slots: number[]): Binding[] {
    return slots.map((s) => ({
      buffer: this.buffer,
      offset: s * WKV_WINDOW_BYTES,
      size: WKV_WINDOW_BYTES,
    }));
  }
}

/** Arguments of {@link Wkv7Kernel.record}; vectors are (B, T, H, N). */
export interface Wkv7Args {
  B: number;
  T: number;
  H: number;
  r: GPUBuffer;
  d: GPUBuffer;
  k: GPUBuffer;
  v: GPUBuffer;
  kk: GPUBuffer;
  a: GPUBuffer;
  /** (L, B, H, N, N) state, [value][key]; this layer's block at element `stateOff`; updated */
  state: GPUBuffer;
  stateOff: number;
  y: GPUBuffer;
}

/** The WKV-7 forward for one head size N. */
export class Wkv7Kernel {
  private constructor(
    private readonly pipe: GPUComputePipeline,
    private readonly stage: WkvStage,
    readonly N: number,
    private readonly groupsPerHead: number,
  ) {}

  /**
   * Fetch the pipeline for head size `N`.
   *
   * @throws {RangeError} when N is not a multiple of 4 in [4, 64]
   */
  static async create(gpu: Gpu, N: number): Promise<Wkv7Kernel> {
    checkWkvHeadSize("wkv7", N);
    if (N > gpu.limits.maxComputeWorkgroupSizeX) {
      throw new RangeError(`wkv7: N = ${N} exceeds maxComputeWorkgroupSizeX`);
    }
    const RW = wkvRowsPerGroup(gpu, N);
    const pipe = await getPipeline(gpu, { shader: "wkv7", constants: { N, RW } });
    return new Wkv7Kernel(pipe, new WkvStage(gpu, 6, "wkv7.stage"), N, N / RW);
  }

  /** Record the recurrence over T tokens for every sequence and head. */
  record(rec: Recorder, a: Wkv7Args): void {
    const name = "wkv7";
    checkDim(name, "B", a.B);
    checkDim(name, "T", a.T);
    checkDim(name, "H", a.H);
    const C = a.H * this.N, n = a.B * a.T * C;
    const vecs = { r: a.r, d: a.d, k: a.k, v: a.v, kk: a.kk, a: a.a, y: a.y };
    for (const [key, b] of Object.entries(vecs)) needElems(name, `${key} (B, T, H, N)`, b, n);
    needElems(name, "state (L, B, H, N, N)", a.state, a.stateOff + a.B * a.H * this.N * this.N);
    if (a.stateOff % 4 !== 0) {
      throw new RangeError(`${name}: stateOff ${a.stateOff} not a multiple of 4`);
    }
    for (const w of planWkvWindows(a.B, a.T, C)) {
      const groups = w.nb * a.H * this.groupsPerHead;
      if (groups > rec.gpu.limits.maxComputeWorkgroupsPerDimension) {
        throw new RangeError(`${name}: ${groups} workgroups exceed the per-dimension limit`);
      }
      this.stage.fill(rec, [a.r, a.d, a.k, a.kk, a.a, a.v], w, C);
      const params = [a.T, a.H, w.b0, w.t0, w.t1, a.stateOff];
      const binds = [...this.stage.bindings([0, 1, 2, 3, 4, 5]), a.state, a.y];
      rec.dispatch(this.pipe, params, binds, [groups], name);
    }
  }
}
