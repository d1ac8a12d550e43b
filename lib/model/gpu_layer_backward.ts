/**
 * One RWKV-7 layer's backward on the GPU (gradients of activations and of the initial state;
 * with {@link LayerBackwardIo.dW} also every weight gradient of the layer, accumulated),
 * recorded into a {@link Recorder}. The layer's forward intermediates must already be in the
 * workspace (the caller recomputes the layer first).
 *
 * Weight gradients (only recorded when `io.dW` is set; the state-tuning path records exactly the
 * same dispatches as without them): Linear W [out, in] gets dyᵀ · x, low-rank M [in, out] gets
 * xᵀ · dy ({@link MatmulDwKernel.matrix}); biases and norm affines are column sums; x_m, r_k,
 * k_k, k_a are column sums of per-element products written into `GradWorkspace.wScratch` by
 * dedicated `dw_*` entry points just before the state path overwrites their inputs.
 *
 * Residual structure: `xMid = x + att(x)`, `xOut = xMid + ffn(xMid)`, so
 * `dxMid = dxOut + ffnBackward(dxOut)` and `dx = dxMid + attBackward(dxMid)`.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { createStorage } from "../gpu/buffers.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { ChannelMixBackwardKernel } from "../kernels/channel_mix_backward.ts";
import type { GpuMatrix, MatmulKernel } from "../kernels/matmul.ts";
import type { MatmulDwKernel } from "../kernels/matmul_dw.ts";
import type { NormBackwardKernel } from "../kernels/norm_backward.ts";
import type { KeyDecayArgs, TimeMixBackwardKernel } from "../kernels/time_mix_backward.ts";
import type { TokenShiftBackwardKernel } from "../kernels/token_shift_backward.ts";
import type { Wkv7BackwardKernel } from "../kernels/wkv7_backward.ts";
import { recordWkvBackward } from "../kernels/wkv7_chunked.ts";
import type { Wkv7ChunkedBackwardKernel, WkvFormOption } from "../kernels/wkv7_chunked.ts";
import type { LayerWorkspace } from "./gpu_layer.ts";
import type { GpuLifted } from "./gpu_lifted.ts";
import { type GpuLayerWeights, type GpuWeights, type LayerVec, layerVec } from "./gpu_weights.ts";
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
   * the lifted branch (SPEC §6) of layers of `set` that have one, from the set's shared Ŝ0:
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
function wgrad(k: BackwardKernels, g: GradWorkspace, io: LayerBackwardIo) {
  if (!io.dW) return undefined;
  if (!k.dw || !g.wScratch) {
    throw new RangeError("layer backward: weight gradients need the dw kernel and wScratch");
  }
  return { dw: k.dw, dW: io.dW, scratch: g.wScratch };
}

/** Record layer l's backward: `io.dx` goes from dL/dxOut to dL/dxIn; dS0 and dShift written. */
export function recordLayerBackward(
  k: BackwardKernels,
  w: GpuWeights,
  rec: Recorder,
  l: number,
  ws: LayerWorkspace,
  g: GradWorkspace,
  io: LayerBackwardIo,
): void {
  channelMixBackward(k, w, rec, l, ws, g, io);
  timeMixOutputBackward(k, w, rec, l, ws, g, io);
  timeMixInputBackward(k, w, rec, l, ws, g, io);
}

function channelMixBackward(
  k: BackwardKernels,
  w: GpuWeights,
  rec: Recorder,
  l: number,
  ws: LayerWorkspace,
  g: GradWorkspace,
  io: LayerBackwardIo,
): void {
  const { nEmbd: C, dimFfn: F } = w.config;
  const lw = w.layers[l], rows = g.rows, { B, T } = g, wg = wgrad(k, g, io);
  k.matmul.lowrankMatrix(rec, lw.ffn_value, { M: rows, x: io.dx, y: g.dF });
  wg?.dw.matrix(rec, rows, wg.dW.ffn_value, { buffer: io.dx }, { buffer: ws.ffnAct });
  k.channelMix.reluSq(rec, rows * F, ws.ffnPre, g.dF);
  wg?.dw.matrix(rec, rows, wg.dW.ffn_key, { buffer: g.dF }, { buffer: ws.ffnMix });
  k.matmul.lowrankMatrix(rec, lw.ffn_key, { M: rows, x: g.dF, y: g.dmix });
  const shift = { B, T, C, nMix: 1, dmix: g.dmix };
  k.shift.record(rec, {
    ...shift,
    vecs: lw.vecs,
    xOff: layerVec("ffn_x_k", C),
    du: g.du,
    dshift: io.dShiftFfn,
    shiftOff: l * B * C,
  });
  if (wg) {
    const s0 = io.shift0;
    k.shift.mixWeights(rec, {
      ...shift,
      u: ws.ffnU,
      ...(s0 ? { shift: s0.ffn, shiftOff: s0.off } : {}),
      out: wg.dW.vecs,
      outOff: layerVec("ffn_x_k", C),
    });
  }
  rec.copy(io.dx, 0, g.dxMid, 0, rows * C * 4);
  k.norm.record(rec, {
    rows,
    G: 1,
    S: C,
    x: ws.xMid,
    dy: g.du,
    vecs: lw.vecs,
    wOff: layerVec("ln2_w", C),
    dx: g.dxMid,
    accumulate: true,
    xhat: wg?.scratch,
  });
  if (wg) {
    const [wOff, bOff] = [layerVec("ln2_w", C), layerVec("ln2_b", C)];
    recordNormAffine(wg.dw, rec, rows, C, g.du, wg.scratch, wg.dW.vecs, wOff, bOff);
  }
}

/** From dxMid through Wo, the gate, bonus, GroupNorm, WKV and the key / decay gates. */
function timeMixOutputBackward(
  k: BackwardKernels,
  w: GpuWeights,
  rec: Recorder,
  l: number,
  ws: LayerWorkspace,
  g: GradWorkspace,
  io: LayerBackwardIo,
): void {
  const { nEmbd: C, nHead: H, headSize: N } = w.config;
  const lw = w.layers[l], rows = g.rows, vecs = lw.vecs, wg = wgrad(k, g, io);
  k.matmul.lowrankMatrix(rec, lw.Wo, { M: rows, x: g.dxMid, y: g.dog });
  wg?.dw.matrix(rec, rows, wg.dW.Wo, { buffer: g.dxMid }, { buffer: ws.og });
  const fwd = { g: ws.g, r: ws.r, k: ws.k, v: ws.v };
  k.timeMix.gateBonus(rec, {
    rows,
    H,
    N,
    vecs,
    rkOff: layerVec("r_k", C),
    ...{ dog: g.dog, o: ws.o, ...fwd },
    ...{ dgn: g.dgn, dg: g.dg, dr: g.dr, dk: g.dk, dv: g.dv },
  });
  if (wg) {
    k.timeMix.rkProducts(rec, { rows, H, N, dog: g.dog, ...fwd }, wg.scratch);
    const out = { buffer: wg.dW.vecs, off: layerVec("r_k", C) };
    wg.dw.colsum(rec, rows, C, { buffer: wg.scratch }, undefined, out);
  }
  k.norm.record(rec, {
    rows,
    G: H,
    S: N,
    x: ws.y,
    dy: g.dgn,
    vecs,
    wOff: layerVec("lnx_w", C),
    dx: g.dyw,
    eps: N * 1e-5,
    xhat: wg?.scratch,
  });
  if (wg) {
    const [wOff, bOff] = [layerVec("lnx_w", C), layerVec("lnx_b", C)];
    recordNormAffine(wg.dw, rec, rows, C, g.dgn, wg.scratch, wg.dW.vecs, wOff, bOff);
  }
  recordWkvBackward(rec, k, {
    B: g.B,
    T: g.T,
    H,
    N,
    ...{ r: ws.r, d: ws.d, k: ws.k, v: ws.v, kk: ws.kk, a: ws.a, dy: g.dyw },
    ...{ s0: io.s0, s0Off: io.s0Off, sharedS0: io.sharedS0 },
    ...{ dr: g.dr, dd: g.dd, dk: g.dk, dv: g.dv, dkk: g.dkk, da: g.da, accumulate: true },
    ...{ ds0: io.dS0, ds0Off: l * g.B * H * N * N, scratch: g.wkvScratch },
  });
  if (io.lifted?.set.layers[l]) {
    io.lifted.set.recordBackward(rec, l, {
      ...{ B: g.B, T: g.T, kk: ws.kk, r: ws.r, d: ws.d, a: ws.a, k: ws.k, v: ws.v, dy: g.dyw },
      ...{ dkk: g.dkk, dr: g.dr, dd: g.dd, da: g.da, dk: g.dk, dv: g.dv },
      ...{ dLifted: io.lifted.dLifted, dLiftedGate: io.lifted.dLiftedGate },
    });
  }
  const kd: KeyDecayArgs = {
    rows,
    H,
    N,
    vecs,
    kkOff: layerVec("k_k", C),
    kaOff: layerVec("k_a", C),
    ...{ dkk: g.dkk, k0: ws.k0, kk: ws.kk, a: ws.a, z: ws.z, d: ws.d },
    ...{ dk: g.dk, da: g.da, dd: g.dd },
  };
  if (wg) {
    k.timeMix.keyProducts(rec, kd, wg.scratch);
    const vec = (name: "k_k" | "k_a") => ({ buffer: wg.dW.vecs, off: layerVec(name, C) });
    wg.dw.colsum(rec, rows, C, { buffer: wg.scratch }, undefined, vec("k_k"));
    wg.dw.colsum(rec, rows, C, { buffer: wg.scratch, off: rows * C }, undefined, vec("k_a"));
  }
  k.timeMix.keyDecay(rec, kd);
}

/** From dr, dk0, dv, da_pre, dz, dg back through the projections, the mixes and ln1. */
function timeMixInputBackward(
  k: BackwardKernels,
  w: GpuWeights,
  rec: Recorder,
  l: number,
  ws: LayerWorkspace,
  g: GradWorkspace,
  io: LayerBackwardIo,
): void {
  const { nEmbd: C } = w.config;
  const lw = w.layers[l], rows = g.rows, n = rows * C, mm = k.matmul, tm = k.timeMix;
  const wg = wgrad(k, g, io), dW = io.dW;
  const slot = (m: number) => ({ y: g.dmix, yOff: m * n });
  const mix = (m: number) => ({ buffer: ws.mix, off: m * n, stride: C });
  /** dW of a low-rank pair's second matrix and its bias (the gradient of `pre` is dPre) */
  const second = (m2?: GpuMatrix, hidden?: GPUBuffer, dPre?: GPUBuffer, bias?: LayerVec) => {
    if (!wg || !m2 || !hidden || !dPre) return;
    if (bias) {
      const out = { buffer: wg.dW.vecs, off: layerVec(bias, C) };
      wg.dw.colsum(rec, rows, C, { buffer: dPre }, undefined, out);
    }
    wg.dw.matrix(rec, rows, m2, { buffer: hidden }, { buffer: dPre });
  };
  const first = (m1: GpuMatrix | undefined, m: number) => {
    if (wg && m1) wg.dw.matrix(rec, rows, m1, mix(m), { buffer: g.dHidden });
  };
  // decay path: z = w0 + tanh(mix_w · w1) · w2
  second(dW?.w2, ws.wHidden, g.dd, "w0");
  mm.linearMatrix(rec, lw.w2, { M: rows, x: g.dd, y: g.dHidden });
  tm.act(rec, "tanh", rows * w.config.dimW, ws.wHidden, g.dHidden);
  first(dW?.w1, 1);
  mm.linearMatrix(rec, lw.w1, { M: rows, x: g.dHidden, ...slot(1) });
  // in-context rate: a = σ(a0 + (mix_a · a1) · a2)
  second(dW?.a2, ws.aHidden, g.da, "a0");
  mm.linearMatrix(rec, lw.a2, { M: rows, x: g.da, y: g.dHidden });
  first(dW?.a1, 4);
  mm.linearMatrix(rec, lw.a1, { M: rows, x: g.dHidden, ...slot(4) });
  // output gate: g = σ(mix_g · g1) · g2
  second(dW?.g2, ws.gHidden, g.dg);
  mm.linearMatrix(rec, lw.g2, { M: rows, x: g.dg, y: g.dHidden });
  tm.act(rec, "sigmoid", rows * w.config.dimG, ws.gHidden, g.dHidden);
  first(dW?.g1, 5);
  mm.linearMatrix(rec, lw.g1, { M: rows, x: g.dHidden, ...slot(5) });
  // value residual, then v0 = Wv · mix_v
  if (l === 0) {
    tm.value(rec, { n, dv: g.dv, dvFirst: io.dvFirst });
    mm.lowrankMatrix(rec, lw.Wv, { M: rows, x: g.dv, ...slot(3) });
  } else {
    tm.value(rec, {
      n,
      ...{ dv: g.dv, dvFirst: io.dvFirst, vGate: ws.vGate, vFirst: io.vFirst },
      ...{ v0: ws.v0, dvpre: g.dvpre },
    });
    second(dW?.v2, ws.vHidden, g.dvpre, "v0");
    mm.linearMatrix(rec, lw.v2!, { M: rows, x: g.dvpre, y: g.dHidden });
    first(dW?.v1, 3);
    mm.linearMatrix(rec, lw.v1!, { M: rows, x: g.dHidden, y: g.tmp });
    mm.lowrankMatrix(rec, lw.Wv, { M: rows, x: g.dv, res: g.tmp, ...slot(3) });
  }
  mm.lowrankMatrix(rec, lw.Wr, { M: rows, x: g.dr, ...slot(0) });
  mm.lowrankMatrix(rec, lw.Wk, { M: rows, x: g.dk, ...slot(2) });
  if (wg) {
    // Linear projections: dW = dyᵀ · mix
    wg.dw.matrix(rec, rows, wg.dW.Wv, { buffer: g.dv }, mix(3));
    wg.dw.matrix(rec, rows, wg.dW.Wr, { buffer: g.dr }, mix(0));
    wg.dw.matrix(rec, rows, wg.dW.Wk, { buffer: g.dk }, mix(2));
  }
  const shift = { B: g.B, T: g.T, C, nMix: 6, dmix: g.dmix };
  k.shift.record(rec, {
    ...shift,
    vecs: lw.vecs,
    xOff: layerVec("x_r", C),
    du: g.du,
    dshift: io.dShiftAtt,
    shiftOff: l * g.B * C,
  });
  if (wg) {
    const s0 = io.shift0;
    k.shift.mixWeights(rec, {
      ...shift,
      u: ws.u,
      ...(s0 ? { shift: s0.att, shiftOff: s0.off } : {}),
      out: wg.dW.vecs,
      outOff: layerVec("x_r", C),
    });
  }
  rec.copy(g.dxMid, 0, io.dx, 0, n * 4);
  k.norm.record(rec, {
    rows,
    G: 1,
    S: C,
    x: io.xIn,
    dy: g.du,
    vecs: lw.vecs,
    wOff: layerVec("ln1_w", C),
    dx: io.dx,
    accumulate: true,
    xhat: wg?.scratch,
  });
  if (wg) {
    const [wOff, bOff] = [layerVec("ln1_w", C), layerVec("ln1_b", C)];
    recordNormAffine(wg.dw, rec, rows, C, g.du, wg.scratch, wg.dW.vecs, wOff, bOff);
  }
}
