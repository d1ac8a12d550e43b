/**
 * Host wrappers of `shaders/wkv7_chunked.wgsl` and `shaders/wkv7_chunked_backward.wgsl`: the
 * chunked WKV-7 (SPEC §2, chunks of 16 tokens; `lib/ref/wkv_chunked.ts` is the reference), with
 * the same `record` arguments as the sequential {@link Wkv7Kernel} and
 * {@link Wkv7BackwardKernel}, and {@link chooseWkvForm}, which picks the faster form per shape.
 *
 * Forward: `gamma` (decay products from each chunk start), `intra` (per chunk: P, Q, Pr, Qr and
 * the WY factors W, U, in parallel over chunks), `state_fwd` (one workgroup of 256 per (b, h)
 * passes the state from chunk to chunk and writes y). Backward: the same three (state_fwd
 * storing chunk-start states and sa), `state_bwd` (dS from chunk end to chunk start, the last
 * value is dS0) and `grads_*` (per-token gradients in four passes, parallel over chunks). Working states live in
 * the storage scratch, not workgroup memory: llvmpipe's LLVM spent minutes compiling the
 * zero-initialisation of 16 KiB workgroup arrays (a GPU-only variant could move S there).
 *
 * @module
 */
import { z } from "zod";
import type { Gpu } from "../gpu/device.ts";
import { isSoftwareAdapter } from "../gpu/software.ts";
import { createStorage } from "../gpu/buffers.ts";
import { getPipeline, shaderSource } from "../gpu/pipeline.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { checkDim, needElems, WORKGROUP } from "./common.ts";
import { splitGroups } from "../gpu/groups.ts";
import { checkWkvHeadSize } from "./wkv7.ts";
import type { Wkv7Args, Wkv7Kernel } from "./wkv7.ts";
import type { Wkv7BackwardArgs, Wkv7BackwardKernel } from "./wkv7_backward.ts";

/** Tokens per chunk (the shaders' `CH`). */
export const WKV_CHUNK = 16;

/** The two WKV formulations. */
export type WkvForm = "sequential" | "chunked";

/**
 * The thresholds of the "auto" rule on hardware adapters: chunked for T ≥ `minT` and
 * B·H·N ≤ `maxBHN` (defaults 64 and 8192, today's rule; a GPU run can set its own).
 */
export const WkvAutoRuleSchema = z.strictObject({
  minT: z.number().int().min(1).default(64),
  maxBHN: z.number().int().min(1).default(8192),
});
/** The thresholds of {@link chooseWkvForm} (all optional, see the schema). */
export type WkvAutoRule = z.input<typeof WkvAutoRuleSchema>;

/**
 * A form option: a fixed form, "auto" for {@link chooseWkvForm} with the default thresholds, or
 * `{ auto: { minT, maxBHN } }` for it with others.
 */
export const WkvFormOptionSchema = z.union([
  z.enum(["auto", "sequential", "chunked"]),
  z.strictObject({ auto: WkvAutoRuleSchema }),
]);
/** A form option: a fixed form, or "auto" (optionally with thresholds) for {@link chooseWkvForm}. */
export type WkvFormOption = z.input<typeof WkvFormOptionSchema>;

/** A WKV call's shape: B sequences of T tokens, H heads of size N. */
export interface WkvShape {
  B: number;
  T: number;
  H: number;
  N: number;
}

/**
 * Scratch regions in f32 elements: γ, W, U, SA (and dM) as (B, H, nC, 16, N), the per-chunk
 * matrices, two working states per (b, h); the backward adds chunk-start states, chunk-end dS
 * and the per-chunk scratch of `grads`. See the layout comment of shaders/wkv7_chunked.wgsl.
 */
function layout(s: WkvShape, backward: boolean) {
  const nC = Math.ceil(s.T / WKV_CHUNK), BH = s.B * s.H, NN = s.N * s.N;
  const nv = BH * nC * WKV_CHUNK * s.N; // one chunk-vector region
  const offW = nv, offU = 2 * nv, offSA = 3 * nv, offDM = 4 * nv;
  const offMat = (backward ? 5 : 4) * nv;
  const offWS = offMat + BH * nC * 1024;
  const offCkS = offWS + 2 * BH * NN;
  const offCkD = offCkS + (backward ? BH * (nC + 1) * NN : 0);
  const offG = offCkD + (backward ? BH * nC * NN : 0);
  const total = offG + (backward ? BH * nC * 3072 : 0);
  return { nC, offW, offU, offSA, offDM, offMat, offWS, offCkS, offCkD, offG, total };
}

/** f32 elements of scratch the chunked forward (`backward` false) or backward needs. */
export function wkvChunkedScratchElems(s: WkvShape, backward: boolean): number {
  return layout(s, backward).total;
}

/**
 * Whether the chunked form can run shape `s` on `gpu`: its backward scratch is one storage
 * binding, and its per-chunk workgroups fit one dispatch dimension.
 */
export function chunkedFits(gpu: Gpu, s: WkvShape): boolean {
  const groups = s.B * s.H * Math.ceil(s.T / WKV_CHUNK);
  return wkvChunkedScratchElems(s, true) * 4 <= gpu.limits.maxStorageBufferBindingSize &&
    groups <= gpu.limits.maxComputeWorkgroupsPerDimension && s.N <= 64;
}

/**
 * The faster WKV form for shape `s` on this adapter.
 *
 * Measured on Mesa llvmpipe (2 cores, `deno run -A tmp/wkv_form_bench.ts`, N = 64, H = 12;
 * ms per call, sequential / chunked): B1 T64 forward 27 / 790, backward 141 / 2214; B1 T512
 * forward 94 / 5099, backward 955 / 17311; B16 T16 forward 66 / 3132, backward 282 / 8095. The
 * sequential form wins by 18–50×: it reads per-token vectors from uniform windows and has no
 * barriers, while every storage load of the chunked form is a scalar loop over the SIMD lanes
 * there and its state passes serialise one 256-invocation workgroup per head behind barriers.
 * So software adapters always get "sequential".
 *
 * On GPUs (no GPU was available to measure; a heuristic to revisit with this bench): the
 * sequential form runs B·H·N invocations, each a chain of ~4N dependent FMAs per token; the
 * chunked one runs 4× the invocations per head with a ~4× shorter serial chain per chunk and
 * moves the rest into work parallel over chunks. It should win when B·H·N is far below the
 * GPU's resident thread count and T spans several chunks: chunked for T ≥ 64 and B·H·N ≤ 8192,
 * when its scratch fits one storage binding.
 */
export function chooseWkvForm(gpu: Gpu, s: WkvShape, rule: WkvAutoRule = {}): WkvForm {
  if (isSoftwareAdapter(gpu) || !chunkedFits(gpu, s)) return "sequential";
  const r = WkvAutoRuleSchema.parse(rule);
  return s.T >= r.minT && s.B * s.H * s.N <= r.maxBHN ? "chunked" : "sequential";
}

/**
 * Whether `option` can ever pick the chunked form on `gpu` for head size `N` (so its kernel is
 * worth compiling).
 */
export function mayChooseChunked(gpu: Gpu, option: WkvFormOption | undefined, N: number): boolean {
  const o = WkvFormOptionSchema.parse(option ?? "auto");
  return o === "chunked" || (o !== "sequential" && !isSoftwareAdapter(gpu) && N <= 64);
}

/** `option` resolved for shape `s`: a fixed form as is, "auto" (the default) by {@link chooseWkvForm}. */
export function resolveWkvForm(
  gpu: Gpu,
  option: WkvFormOption | undefined,
  s: WkvShape,
): WkvForm {
  const o = WkvFormOptionSchema.parse(option ?? "auto");
  if (o === "auto") return chooseWkvForm(gpu, s);
  return typeof o === "object" ? chooseWkvForm(gpu, s, o.auto) : o;
}

/** Check the shape and the scratch binding; returns the layout. */
function plan(gpu: Gpu, name: string, s: WkvShape, backward: boolean) {
  for (const [n, v] of [["B", s.B], ["T", s.T], ["H", s.H]] as const) checkDim(name, n, v);
  checkWkvHeadSize(name, s.N);
  const L = layout(s, backward);
  const groups = s.B * s.H * L.nC;
  if (groups > gpu.limits.maxComputeWorkgroupsPerDimension) {
    throw new RangeError(
      `${name}: B·H·ceil(T/16) = ${groups} chunk workgroups exceed the per-dimension limit ` +
        `${gpu.limits.maxComputeWorkgroupsPerDimension}; use the sequential form or a smaller batch`,
    );
  }
  if (L.total * 4 > gpu.limits.maxStorageBufferBindingSize) {
    throw new RangeError(
      `${name}: B = ${s.B}, T = ${s.T}, H = ${s.H}, N = ${s.N} needs ${L.total * 4} bytes of ` +
        `scratch, more than one storage binding (${gpu.limits.maxStorageBufferBindingSize}); ` +
        `use the sequential form (chooseWkvForm does) or a smaller batch`,
    );
  }
  return L;
}

type Layout = ReturnType<typeof layout>;

/** The u32 parameter block shared by every entry point (order of the shaders' `Params`). */
function params(s: WkvShape, L: Layout, o: Partial<Record<string, number>>): number[] {
  return [
    ...[s.T, s.H, L.nC, o.nx ?? 0, L.offW, L.offU, L.offSA, L.offDM, L.offMat, L.offCkS],
    ...[L.offCkD, o.sOff ?? 0, o.sStride ?? 0, o.mode ?? 0, o.accumulate ?? 0, o.ds0Off ?? 0],
    ...[o.count ?? 0, L.offWS, L.offG, s.N],
  ];
}

/** The forward pipelines of one head size, shared by the forward and backward wrappers. */
interface FwdPipes {
  gamma: GPUComputePipeline;
  intra: GPUComputePipeline;
  stateFwd: GPUComputePipeline;
}

/** The four passes of the chunked per-token gradients (`shaders/wkv7_chunked_backward.wgsl`). */
interface GradPipes {
  beta: GPUComputePipeline;
  r: GPUComputePipeline;
  k: GPUComputePipeline;
  decay: GPUComputePipeline;
}

/** `shaders/<name>.wgsl` with `wkv7_chunked_common.wgsl` (Params, sizes, index helpers) prepended. */
function chunkedSource(name: "wkv7_chunked" | "wkv7_chunked_backward"): string {
  return `${shaderSource("wkv7_chunked_common")}\n${shaderSource(name)}`;
}

/** The pipeline of one entry point of a chunked shader for head size N. */
function chunkedPipe(
  gpu: Gpu,
  name: "wkv7_chunked" | "wkv7_chunked_backward",
  entryPoint: string,
  N: number,
): Promise<GPUComputePipeline> {
  return getPipeline(gpu, {
    shader: name,
    entryPoint,
    constants: { N },
    code: chunkedSource(name),
  });
}

async function fwdPipes(gpu: Gpu, N: number): Promise<FwdPipes> {
  const get = (entryPoint: string) => chunkedPipe(gpu, "wkv7_chunked", entryPoint, N);
  const [gamma, intra, stateFwd] = await Promise.all([
    get("gamma"),
    get("intra"),
    get("state_fwd"),
  ]);
  return { gamma, intra, stateFwd };
}

/** Record gamma and intra for (B, T, H, N) into `scratch`. */
function recordIntra(
  rec: Recorder,
  p: FwdPipes,
  s: WkvShape,
  L: Layout,
  v: { r: GPUBuffer; d: GPUBuffer; k: GPUBuffer; v: GPUBuffer; kk: GPUBuffer; a: GPUBuffer },
  scratch: GPUBuffer,
  name: string,
): void {
  const count = s.B * s.H * L.nC * s.N;
  const fg = splitGroups(count, {
    perGroup: WORKGROUP,
    maxPerDim: rec.gpu.limits.maxComputeWorkgroupsPerDimension,
  });
  rec.dispatch(
    p.gamma,
    params(s, L, { nx: fg.nx, count }),
    [v.d, scratch],
    fg.groups,
    `${name}.gamma`,
  );
  const binds = [v.r, v.k, v.v, v.kk, v.a, scratch];
  rec.dispatch(p.intra, params(s, L, {}), binds, [s.B * s.H * L.nC], `${name}.intra`);
}

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

  /** Record the recurrence over T tokens for every sequence and head (same as {@link Wkv7Kernel}). */
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
    const n = a.B * a.T * a.H * a.N, NN = a.H * a.N * a.N;
    const ins = { r: a.r, d: a.d, k: a.k, v: a.v, kk: a.kk, a: a.a, dy: a.dy };
    const outs = { dr: a.dr, dd: a.dd, dk: a.dk, dv: a.dv, dkk: a.dkk, da: a.da };
    for (const [key, buf] of Object.entries({ ...ins, ...outs })) {
      needElems(name, `${key} (B, T, H, N)`, buf, n);
    }
    const s0Off = a.s0Off ?? 0, ds0Off = a.ds0Off ?? 0;
    needElems(name, "s0", a.s0, s0Off + (a.sharedS0 ? 1 : a.B) * NN);
    needElems(name, "ds0 (B, H, N, N)", a.ds0, ds0Off + a.B * NN);
    needElems(name, `scratch (createScratch(${a.B}, ${a.T}, ${a.H}, ${a.N}))`, a.scratch, L.total);
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
    // four passes (each within the default 8 storage buffers); dkk holds dβ between the first two
    const gp = params(s, L, { accumulate: a.accumulate ? 1 : 0 }), g = pipe.grads;
    const passes: [GPUComputePipeline, GPUBuffer[], string][] = [
      [g.beta, [sc, a.v, a.dy, a.r, a.kk, a.a, a.dkk, a.da], "beta"],
      [g.r, [sc, a.dy, a.kk, a.a, a.k, a.r, a.dr, a.dkk], "r"],
      [g.k, [sc, a.v, a.r, a.kk, a.k, a.dy, a.dk, a.dv], "k"],
      [g.decay, [sc, a.d, a.dd], "decay"],
    ];
    for (const [pl, binds, e] of passes) {
      rec.dispatch(pl, gp, binds, [BH * L.nC], `${name}.grads_${e}`);
    }
  }
}

/** Which form {@link recordWkvForward} / {@link recordWkvBackward} record. */
export interface WkvForms<S, C> {
  /** the sequential kernel (the default) */
  wkv: S;
  /** the chunked kernel; omitted: always sequential (unless `wkvForm` is "chunked": an error) */
  wkvChunked?: C;
  /** "auto" (default): {@link chooseWkvForm}; or force one form */
  wkvForm?: WkvFormOption;
}

function pick(gpu: Gpu, f: WkvForms<unknown, unknown>, s: WkvShape, what: string): WkvForm {
  if (!f.wkvChunked && f.wkvForm !== "chunked") return "sequential";
  const form = resolveWkvForm(gpu, f.wkvForm, s);
  if (form === "chunked" && !f.wkvChunked) {
    throw new Error(`wkvForm "chunked" needs the chunked kernel: pass ${what}.create(gpu, …)`);
  }
  return form;
}

/**
 * Record the WKV forward in the form `f` selects (sequential when no chunked kernel is given).
 *
 * @returns the form recorded
 */
export function recordWkvForward(
  rec: Recorder,
  f: WkvForms<Wkv7Kernel, Wkv7ChunkedKernel>,
  a: Wkv7Args,
): WkvForm {
  const form = pick(rec.gpu, f, { B: a.B, T: a.T, H: a.H, N: f.wkv.N }, "Wkv7ChunkedKernel");
  (form === "chunked" ? f.wkvChunked! : f.wkv).record(rec, a);
  return form;
}

/**
 * Record the WKV backward in the form `f` selects; the chunked form uses its own scratch
 * ({@link Wkv7ChunkedBackwardKernel.ensureScratch}), so `a.scratch` is the sequential one's.
 *
 * @returns the form recorded
 */
export function recordWkvBackward(
  rec: Recorder,
  f: WkvForms<Wkv7BackwardKernel, Wkv7ChunkedBackwardKernel>,
  a: Wkv7BackwardArgs,
): WkvForm {
  const form = pick(rec.gpu, f, a, "Wkv7ChunkedBackwardKernel");
  if (form === "sequential") f.wkv.record(rec, a);
  else {f.wkvChunked!.record(rec, {
      ...a,
      scratch: f.wkvChunked!.ensureScratch(a.B, a.T, a.H, a.N),
    });}
  return form;
}
