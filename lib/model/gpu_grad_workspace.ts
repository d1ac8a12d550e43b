/**
 * What every part of the backward shares: the compiled backward kernels (and their factory), the
 * gradient workspace (reused by every layer), the per-layer inputs and outputs, the weight
 * gradient buffers and helpers (norm affines; the weight-gradient context, absent when off).
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { createStorage } from "../gpu/buffers.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { ChannelMixBackwardKernel } from "../kernels/channel_mix_backward.ts";
import type { MatmulKernel } from "../kernels/matmul.ts";
import { MatmulDwKernel } from "../kernels/matmul_dw.ts";
import { NormBackwardKernel } from "../kernels/norm_backward.ts";
import { TimeMixBackwardKernel } from "../kernels/time_mix_backward.ts";
import { TokenShiftBackwardKernel } from "../kernels/token_shift_backward.ts";
import { Wkv7BackwardKernel } from "../kernels/wkv7_backward.ts";
import { Wkv7ChunkedBackwardKernel } from "../kernels/wkv7_chunked_backward.ts";
import type { WkvFormOption } from "../kernels/wkv_form.ts";
import type { GpuLifted } from "./gpu_lifted.ts";
import type { GpuMatrix } from "../kernels/matmul.ts";
import {
  allBuffers,
  type GpuLayerWeights,
  type GpuWeights,
  type LayerVec,
  layerVec,
} from "./gpu_weights.ts";
import type { RwkvConfig } from "./types.ts";

/** The compiled backward kernels. */
export interface BackwardKernels {
  matmul: MatmulKernel;
  norm: NormBackwardKernel;
  timeMix: TimeMixBackwardKernel;
  channelMix: ChannelMixBackwardKernel;
  shift: TokenShiftBackwardKernel;
  wkv: Wkv7BackwardKernel;
  /** the chunked WKV backward, recorded where `wkvForm` ("auto" default) picks it */
  wkvChunked?: Wkv7ChunkedBackwardKernel;
  wkvForm?: WkvFormOption;
  /** present when weight gradients are on */
  dw?: MatmulDwKernel;
}

const GRAD_C = ["dxMid", "du", "dog", "dgn", "dyw", "dg", "dr", "dk", "dv", "dd", "dkk"] as const;

/** Gradient scratch of one layer's backward, reused by every layer (rows ≥ B·T). */
export type GradWorkspace =
  & Record<typeof GRAD_C[number] | "da" | "dvpre" | "tmp", GPUBuffer>
  & Record<"dmix" | "dF" | "dHidden" | "wkvScratch", GPUBuffer>
  & {
    rows: number;
    B: number;
    T: number;
    /** (2, rows, C): x̂ of a norm and dW products; allocated only with weight gradients */
    wScratch?: GPUBuffer;
  };

/** Allocate the gradient scratch for B sequences of T tokens (`weightGrads`: plus wScratch). */
export function createGradWorkspace(
  gpu: Gpu,
  cfg: RwkvConfig,
  wkv: Wkv7BackwardKernel,
  B: number,
  T: number,
  weightGrads = false,
): GradWorkspace {
  const rows = B * T, C = cfg.nEmbd;
  const D = Math.max(cfg.dimW, cfg.dimA, cfg.dimG, cfg.dimV, 1);
  const g: Record<string, GPUBuffer | number> = { rows, B, T };
  const buf = (name: string, width: number) => {
    g[name] = createStorage(gpu, `grad.${name}`, rows * width * 4);
  };
  for (const n of [...GRAD_C, "da", "dvpre", "tmp"]) buf(n, C);
  buf("dmix", 6 * C);
  buf("dF", cfg.dimFfn);
  buf("dHidden", D);
  if (weightGrads) buf("wScratch", 2 * C);
  g.wkvScratch = wkv.createScratch(B, T, cfg.nHead, cfg.headSize, "grad.wkvScratch");
  return g as GradWorkspace;
}

/** Free a gradient workspace. */
export function destroyGradWorkspace(g: GradWorkspace): void {
  for (const v of Object.values(g)) if (v instanceof GPUBuffer) v.destroy();
}

/** What one layer's backward reads and writes besides the workspaces. */
export interface LayerBackwardIo {
  /** residual entering the layer (B·T, C) (the saved forward input) */
  xIn: GPUBuffer;
  /** in: dL/d(layer output); out: dL/d(layer input) (B·T, C) */
  dx: GPUBuffer;
  /** layer 0's v (B·T, C) */
  vFirst: GPUBuffer;
  /** Σ over later layers of dL/dv_first (B·T, C); layers ≥ 1 add, layer 0 consumes */
  dvFirst: GPUBuffer;
  /** initial wkv state, (B, H, N, N) per sequence at `s0Off`, or (H, N, N) when shared */
  s0: GPUBuffer;
  s0Off: number;
  sharedS0: boolean;
  /** (L, B, H, N, N) dL/dS0 per sequence, written at layer l's block */
  dS0: GPUBuffer;
  /** (L, B, C) dL/d(incoming shift states), written at layer l's block */
  dShiftAtt: GPUBuffer;
  dShiftFfn: GPUBuffer;
  /** this layer's weight gradients (accumulated); omitted = no weight-gradient work */
  dW?: GpuLayerWeights;
  /** incoming shift states (·, B, C) at element `off` (read for the x_m gradients); omitted = 0 */
  shift0?: { att: GPUBuffer; ffn: GPUBuffer; off: number };
  /**
   * the lifted branch (docs/MATH.md §5) of layers of `set` that have one, from the set's shared Ŝ0:
   * its gradients join dr, dd, dkk, da and dL/dŜ0 (batch sum) goes to `dLifted` (the layout of
   * `set.s0`). The layer's lifted features must be the ones of the recomputed forward.
   */
  lifted?: { set: GpuLifted; dLifted: GPUBuffer; dLiftedGate: GPUBuffer };
}

/** Record norm affine gradients: `vecs[wOff] += Σ dy ⊙ x̂`, `vecs[bOff] += Σ dy` over rows. */
export function recordNormAffine(
  dw: MatmulDwKernel,
  rec: Recorder,
  rows: number,
  C: number,
  dy: GPUBuffer,
  xhat: GPUBuffer,
  vecs: GPUBuffer,
  wOff: number,
  bOff: number,
): void {
  dw.colsum(rec, rows, C, { buffer: dy }, { buffer: xhat }, { buffer: vecs, off: wOff });
  dw.colsum(rec, rows, C, { buffer: dy }, undefined, { buffer: vecs, off: bOff });
}

/** The weight-gradient context of a layer, or undefined when weight gradients are off. */
export function wgrad(k: BackwardKernels, g: GradWorkspace, io: LayerBackwardIo) {
  if (!io.dW) return undefined;
  if (!k.dw || !g.wScratch) {
    throw new RangeError("layer backward: weight gradients need the dw kernel and wScratch");
  }
  return { dw: k.dw, dW: io.dW, scratch: g.wScratch };
}

/** One half of a layer as {@link recordShiftNormBackward} closes it. */
export interface ShiftNormHalf {
  /** the token-shift mixes: 6 from `x_r` for the time mix, 1 (`ffn_x_k`) for the channel mix */
  nMix: number;
  mixVec: LayerVec;
  /** the mixes' saved shifted input */
  u: GPUBuffer;
  /** where dL/d(shift state) goes, and which initial shift state the weight gradient reads */
  dshift: GPUBuffer;
  shift: "att" | "ffn";
  /** the LayerNorm before the mixes and its input */
  ln: "ln1" | "ln2";
  x: GPUBuffer;
  /** the residual path's gradient, copied into `dx` before the norm adds its own */
  residual: GPUBuffer;
  dx: GPUBuffer;
}

/**
 * dmix (in `g.dmix`) back through the token-shift mixes (and the shift state) to `g.du`, then
 * through the half's LayerNorm into `dx` = residual gradient + norm gradient; with weight
 * gradients also the mixes' and the norm's vectors.
 */
export function recordShiftNormBackward(
  k: BackwardKernels,
  rec: Recorder,
  l: number,
  lw: GpuLayerWeights,
  g: GradWorkspace,
  io: LayerBackwardIo,
  C: number,
  h: ShiftNormHalf,
): void {
  const rows = g.rows, wg = wgrad(k, g, io);
  const shift = { B: g.B, T: g.T, C, nMix: h.nMix, dmix: g.dmix };
  const xOff = layerVec(h.mixVec, C);
  k.shift.record(rec, {
    ...shift,
    vecs: lw.vecs,
    xOff,
    du: g.du,
    dshift: h.dshift,
    shiftOff: l * g.B * C,
  });
  const s0 = io.shift0;
  if (wg) {
    k.shift.mixWeights(rec, {
      ...shift,
      u: h.u,
      ...(s0 ? { shift: s0[h.shift], shiftOff: s0.off } : {}),
      out: wg.dW.vecs,
      outOff: xOff,
    });
  }
  rec.copy(h.residual, 0, h.dx, 0, rows * C * 4);
  const [wOff, bOff] = [layerVec(`${h.ln}_w`, C), layerVec(`${h.ln}_b`, C)];
  k.norm.record(rec, {
    rows,
    G: 1,
    S: C,
    x: h.x,
    dy: g.du,
    vecs: lw.vecs,
    wOff,
    dx: h.dx,
    accumulate: true,
    xhat: wg?.scratch,
  });
  if (wg) recordNormAffine(wg.dw, rec, rows, C, g.du, wg.scratch, wg.dW.vecs, wOff, bOff);
}

/**
 * Zeroed gradient buffers shaped like `w` (same matrices, chunks and packed vectors; labels
 * prefixed `dW.`).
 */
export function createGradWeights(gpu: Gpu, w: GpuWeights): GpuWeights {
  const like = (b: GPUBuffer) => createStorage(gpu, `dW.${b.label}`, b.size);
  const mx = (m: GpuMatrix): GpuMatrix => ({
    ...m,
    chunks: m.chunks.map((c) => ({ rowStart: c.rowStart, rows: c.rows, buffer: like(c.buffer) })),
  });
  const layers = w.layers.map((lw): GpuLayerWeights => {
    const out = { vecs: like(lw.vecs) } as GpuLayerWeights;
    for (const [k, v] of Object.entries(lw)) {
      if (k !== "vecs" && v) (out as unknown as Record<string, GpuMatrix>)[k] = mx(v as GpuMatrix);
    }
    return out;
  });
  const out: GpuWeights = {
    config: w.config,
    emb: mx(w.emb),
    head: mx(w.head),
    vecs: like(w.vecs),
    layers,
    bytes: 0,
  };
  out.bytes = allBuffers(out).reduce((s, b) => s + b.size, 0);
  return out;
}

/** The backward's own kernels (all but the model's matmul). */
export async function backwardKernels(
  gpu: Gpu,
  N: number,
  options: { weightGrads?: boolean },
  chunked: boolean,
): Promise<Omit<BackwardKernels, "matmul" | "wkvForm">> {
  const dw = options.weightGrads ? await MatmulDwKernel.create(gpu) : undefined;
  return {
    norm: await NormBackwardKernel.create(gpu),
    timeMix: await TimeMixBackwardKernel.create(gpu, dw !== undefined),
    channelMix: await ChannelMixBackwardKernel.create(gpu),
    shift: await TokenShiftBackwardKernel.create(gpu, dw !== undefined),
    wkv: await Wkv7BackwardKernel.create(gpu, [N]),
    ...(chunked ? { wkvChunked: await Wkv7ChunkedBackwardKernel.create(gpu, [N]) } : {}),
    ...(dw ? { dw } : {}),
  };
}
