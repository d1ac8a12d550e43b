/**
 * Host wrapper of `shaders/wkv7_chunked.wgsl`: the chunked WKV-7 forward (docs/MATH.md §3, chunks of 16
 * tokens; `lib/ref/wkv7_chunked.ts` is the reference), with the same `record` arguments as the
 * sequential `Wkv7Kernel`. The backward is `wkv7_chunked_backward.ts`, the choice between
 * the forms `wkv_form.ts`, what both chunked wrappers share `wkv7_chunked_common.ts`.
 *
 * Forward: `gamma` (decay products from each chunk start), `intra` (per chunk: P, Q, Pr, Qr and
 * the WY factors W, U, in parallel over chunks), `state_fwd` (one workgroup of 256 per (b, h)
 * passes the state from chunk to chunk and writes y). Working states live in the storage
 * scratch, not workgroup memory: llvmpipe's LLVM spent minutes compiling the zero-initialisation
 * of 16 KiB workgroup arrays (a GPU-only variant could move S there).
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { createStorage } from "../gpu/buffers.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { needElems } from "./common.ts";
import { checkWkvHeadSize } from "./wkv7.ts";
import type { Wkv7Args } from "./wkv7.ts";
import { type FwdPipes, fwdPipes, params, plan, recordIntra } from "./wkv7_chunked_common.ts";

/** The chunked WKV-7 forward for one head size N; `record` takes {@link Wkv7Args}. */
export class Wkv7ChunkedKernel {
  #scratch: GPUBuffer[] = [];

  private constructor(
    private readonly gpu: Gpu,
    private readonly p: FwdPipes,
    readonly N: number,
  ) {}

  /**
   * Fetch the pipelines for head size `N`.
   *
   * @throws {RangeError} when N is not a multiple of 4 in [4, 64]
   * @example
   * ```ts ignore
   * const wkv = await Wkv7ChunkedKernel.create(gpu, 64);
   * ```
   */
  static async create(gpu: Gpu, N: number): Promise<Wkv7ChunkedKernel> {
    checkWkvHeadSize("wkv7_chunked", N);
    return new Wkv7ChunkedKernel(gpu, await fwdPipes(gpu, N), N);
  }

  /** A scratch buffer of at least `elems` f32 (grown on demand, kept until {@link destroy}). */
  private scratch(elems: number): GPUBuffer {
    const last = this.#scratch.at(-1);
    if (last && last.size >= elems * 4) return last;
    // earlier buffers may still be referenced by unsubmitted recordings: keep them
    const buf = createStorage(this.gpu, "wkv7_chunked.scratch", elems * 4);
    this.#scratch.push(buf);
    return buf;
  }

  /** Free the scratch buffers. */
  destroy(): void {
    for (const b of this.#scratch) b.destroy();
    this.#scratch = [];
  }

  /** Record the recurrence over T tokens for every sequence and head (same as `Wkv7Kernel`). */
  record(rec: Recorder, a: Wkv7Args): void {
    const name = "wkv7_chunked";
    const s = { B: a.B, T: a.T, H: a.H, N: this.N };
    const L = plan(rec.gpu, name, s, false);
    const n = a.B * a.T * a.H * this.N, NN = a.H * this.N * this.N;
    const vecs = { r: a.r, d: a.d, k: a.k, v: a.v, kk: a.kk, a: a.a, y: a.y };
    for (const [key, b] of Object.entries(vecs)) needElems(name, `${key} (B, T, H, N)`, b, n);
    needElems(name, "state (L, B, H, N, N)", a.state, a.stateOff + a.B * NN);
    const sc = this.scratch(L.total);
    recordIntra(rec, this.p, s, L, a, sc, name);
    const binds = [a.r, a.k, a.v, a.kk, a.a, a.state, a.y, sc];
    const prm = params(s, L, { sOff: a.stateOff, sStride: NN, mode: 0 });
    rec.dispatch(this.p.stateFwd, prm, binds, [a.B * a.H], `${name}.state_fwd`);
  }
}
