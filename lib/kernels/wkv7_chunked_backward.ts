/**
 * Host wrapper of `shaders/wkv7_chunked_backward.wgsl`: the chunked WKV-7 backward
 * (`lib/ref/wkv7_chunked_backward.ts` is the reference), with the same `record` arguments as the
 * sequential `Wkv7BackwardKernel`.
 *
 * Passes: the forward's `gamma`, `intra` and `state_fwd` (storing chunk-start states and sa),
 * `state_bwd` (dS from chunk end to chunk start, the last value is dS0) and `grads_*` (per-token
 * gradients in four passes, parallel over chunks, each within the default 8 storage buffers).
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { createStorage } from "../gpu/buffers.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { needElems } from "./common.ts";
import { checkWkvHeadSize } from "./wkv7.ts";
import type { Wkv7BackwardArgs } from "./wkv7_backward.ts";
import {
  chunkedPipe,
  type FwdPipes,
  fwdPipes,
  type Layout,
  params,
  plan,
  recordIntra,
  type WkvShape,
} from "./wkv7_chunked_common.ts";

/** The four passes of the chunked per-token gradients (`shaders/wkv7_chunked_backward.wgsl`). */
interface GradPipes {
  beta: GPUComputePipeline;
  r: GPUComputePipeline;
  k: GPUComputePipeline;
  decay: GPUComputePipeline;
}

/** The chunked WKV-7 backward; `record` takes {@link Wkv7BackwardArgs}. */
export class Wkv7ChunkedBackwardKernel {
  #scratch: GPUBuffer[] = [];

  private constructor(
    private readonly gpu: Gpu,
    private readonly pipes: Map<
      number,
      FwdPipes & { stateBwd: GPUComputePipeline; grads: GradPipes }
    >,
  ) {}

  /**
   * Fetch (compile) the pipelines for head sizes `headSizes` (default [64]).
   *
   * @example
   * ```ts ignore
   * const wkvBwd = await Wkv7ChunkedBackwardKernel.create(gpu, [64]);
   * ```
   */
  static async create(gpu: Gpu, headSizes: number[] = [64]): Promise<Wkv7ChunkedBackwardKernel> {
    const pipes = new Map();
    for (const N of headSizes) {
      checkWkvHeadSize("wkv7_chunked_backward", N);
      const g = (e: string) => chunkedPipe(gpu, "wkv7_chunked_backward", `grads_${e}`, N);
      const [fwd, stateBwd, beta, r, k, decay] = await Promise.all([
        fwdPipes(gpu, N),
        chunkedPipe(gpu, "wkv7_chunked", "state_bwd", N),
        g("beta"),
        g("r"),
        g("k"),
        g("decay"),
      ]);
      pipes.set(N, { ...fwd, stateBwd, grads: { beta, r, k, decay } });
    }
    return new Wkv7ChunkedBackwardKernel(gpu, pipes);
  }

  /**
   * Allocate the scratch for (B, T, H, N).
   *
   * @throws {RangeError} when it exceeds one storage binding
   */
  createScratch(B: number, T: number, H: number, N: number, label = "wkv7_chunked.scratch") {
    const L = plan(this.gpu, "wkv7_chunked_backward", { B, T, H, N }, true);
    return createStorage(this.gpu, label, L.total * 4);
  }

  /**
   * A kernel-owned scratch for (B, T, H, N), grown on demand and reused (so a caller that holds
   * the sequential form's scratch can record this form too); kept until {@link destroy}.
   */
  ensureScratch(B: number, T: number, H: number, N: number): GPUBuffer {
    const elems = plan(this.gpu, "wkv7_chunked_backward", { B, T, H, N }, true).total;
    const last = this.#scratch.at(-1);
    if (last && last.size >= elems * 4) return last;
    const buf = createStorage(this.gpu, "wkv7_chunked.ownScratch", elems * 4);
    this.#scratch.push(buf);
    return buf;
  }

  /** Free the buffers of {@link ensureScratch}. */
  destroy(): void {
    for (const b of this.#scratch) b.destroy();
    this.#scratch = [];
  }

  /** Record the backward for every (b, h): dr, dd, dk, dv, dkk, da and ds0 (as the sequential form). */
  record(rec: Recorder, a: Wkv7BackwardArgs): void {
    const name = "wkv7_chunked_backward";
    const s = { B: a.B, T: a.T, H: a.H, N: a.N };
    const L = plan(rec.gpu, name, s, true);
    const pipe = this.pipes.get(a.N);
    if (!pipe) throw new RangeError(`${name}: no pipeline for N = ${a.N}; pass it to create()`);
    checkBuffers(name, a, L);
    const s0Off = a.s0Off ?? 0, ds0Off = a.ds0Off ?? 0, NN = a.H * a.N * a.N;
    const sc = a.scratch, BH = a.B * a.H;
    recordIntra(rec, pipe, s, L, a, sc, name);
    const fwd = params(s, L, { sOff: s0Off, sStride: a.sharedS0 ? 0 : NN, mode: 1 });
    // y is not written in mode 1: dr stands in for the binding
    rec.dispatch(
      pipe.stateFwd,
      fwd,
      [a.r, a.k, a.v, a.kk, a.a, a.s0, a.dr, sc],
      [BH],
      `${name}.state_fwd`,
    );
    const bwdBinds = [a.r, a.kk, a.a, a.dy, a.ds0, sc];
    rec.dispatch(pipe.stateBwd, params(s, L, { ds0Off }), bwdBinds, [BH], `${name}.state_bwd`);
    recordGrads(rec, pipe.grads, s, L, a, name);
  }
}

/** Throw a RangeError unless every buffer of `a` holds what (B, T, H, N) and layout `L` need. */
function checkBuffers(name: string, a: Wkv7BackwardArgs, L: Layout): void {
  const n = a.B * a.T * a.H * a.N, NN = a.H * a.N * a.N;
  const ins = { r: a.r, d: a.d, k: a.k, v: a.v, kk: a.kk, a: a.a, dy: a.dy };
  const outs = { dr: a.dr, dd: a.dd, dk: a.dk, dv: a.dv, dkk: a.dkk, da: a.da };
  for (const [key, buf] of Object.entries({ ...ins, ...outs })) {
    needElems(name, `${key} (B, T, H, N)`, buf, n);
  }
  needElems(name, "s0", a.s0, (a.s0Off ?? 0) + (a.sharedS0 ? 1 : a.B) * NN);
  needElems(name, "ds0 (B, H, N, N)", a.ds0, (a.ds0Off ?? 0) + a.B * NN);
  needElems(name, `scratch (createScratch(${a.B}, ${a.T}, ${a.H}, ${a.N}))`, a.scratch, L.total);
}

/**
 * Record the per-token gradients in four passes (each within the default 8 storage buffers);
 * dkk holds dβ between the first two.
 */
function recordGrads(
  rec: Recorder,
  g: GradPipes,
  s: WkvShape,
  L: Layout,
  a: Wkv7BackwardArgs,
  name: string,
): void {
  const gp = params(s, L, { accumulate: a.accumulate ? 1 : 0 }), sc = a.scratch;
  const passes: [GPUComputePipeline, GPUBuffer[], string][] = [
    [g.beta, [sc, a.v, a.dy, a.r, a.kk, a.a, a.dkk, a.da], "beta"],
    [g.r, [sc, a.dy, a.kk, a.a, a.k, a.r, a.dr, a.dkk], "r"],
    [g.k, [sc, a.v, a.r, a.kk, a.k, a.dy, a.dk, a.dv], "k"],
    [g.decay, [sc, a.d, a.dd], "decay"],
  ];
  for (const [pl, binds, e] of passes) {
    rec.dispatch(pl, gp, binds, [s.B * s.H * L.nC], `${name}.grads_${e}`);
  }
}
