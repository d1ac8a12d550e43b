/**
 * What the chunked WKV-7 wrappers share (`wkv7_chunked.ts` forward, `wkv7_chunked_backward.ts`
 * backward), as `shaders/wkv7_chunked_common.wgsl` is what their shaders share: the chunk size,
 * the scratch layout, the parameter block, the pipelines of the forward passes and the recording
 * of `gamma` + `intra`.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { getPipeline, shaderSource } from "../gpu/pipeline.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { splitGroups } from "../gpu/groups.ts";
import { checkDim, WORKGROUP } from "./common.ts";
import { checkWkvHeadSize } from "./wkv7.ts";

/** Tokens per chunk (the shaders' `CH`). */
export const WKV_CHUNK = 16;

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
export function layout(s: WkvShape, backward: boolean) {
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

/** Check the shape and the scratch binding; returns the layout. */
export function plan(gpu: Gpu, name: string, s: WkvShape, backward: boolean) {
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

export type Layout = ReturnType<typeof layout>;

/** The u32 parameter block shared by every entry point (order of the shaders' `Params`). */
export function params(s: WkvShape, L: Layout, o: Partial<Record<string, number>>): number[] {
  return [
    ...[s.T, s.H, L.nC, o.nx ?? 0, L.offW, L.offU, L.offSA, L.offDM, L.offMat, L.offCkS],
    ...[L.offCkD, o.sOff ?? 0, o.sStride ?? 0, o.mode ?? 0, o.accumulate ?? 0, o.ds0Off ?? 0],
    ...[o.count ?? 0, L.offWS, L.offG, s.N],
  ];
}

/** The forward pipelines of one head size, shared by the forward and backward wrappers. */
export interface FwdPipes {
  gamma: GPUComputePipeline;
  intra: GPUComputePipeline;
  stateFwd: GPUComputePipeline;
}

/** `shaders/<name>.wgsl` with `wkv7_chunked_common.wgsl` (Params, sizes, index helpers) prepended. */
function chunkedSource(name: "wkv7_chunked" | "wkv7_chunked_backward"): string {
  return `${shaderSource("wkv7_chunked_common")}\n${shaderSource(name)}`;
}

/** The pipeline of one entry point of a chunked shader for head size N. */
export function chunkedPipe(
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

export async function fwdPipes(gpu: Gpu, N: number): Promise<FwdPipes> {
  const get = (entryPoint: string) => chunkedPipe(gpu, "wkv7_chunked", entryPoint, N);
  const [gamma, intra, stateFwd] = await Promise.all([
    get("gamma"),
    get("intra"),
    get("state_fwd"),
  ]);
  return { gamma, intra, stateFwd };
}

/** Record gamma and intra for (B, T, H, N) into `scratch`. */
export function recordIntra(
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
