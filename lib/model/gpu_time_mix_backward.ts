/**
 * The time mix's backward on the GPU, in two halves: from dxMid through Wo, the output gate and
 * bonus, GroupNorm, the WKV recurrence (and the lifted branch) and the key / decay gates
 * ({@link timeMixOutputBackward}); then from dr, dk0, dv, da, dz, dg back through the low-rank
 * paths, the projections, the token-shift mixes and ln1 ({@link timeMixInputBackward}). With
 * weight gradients each stage also records its dW products just before their inputs are
 * overwritten.
 *
 * @module
 */
import type { Recorder } from "../gpu/recorder.ts";
import type { GpuMatrix } from "../kernels/matmul.ts";
import type { KeyDecayArgs } from "../kernels/time_mix_backward.ts";
import { recordWkvBackward } from "../kernels/wkv_form.ts";
import type { LayerWorkspace } from "./gpu_layer.ts";
import { type GpuWeights, type LayerVec, layerVec } from "./gpu_weights.ts";
import {
  type BackwardKernels,
  type GradWorkspace,
  type LayerBackwardIo,
  recordNormAffine,
  recordShiftNormBackward,
  wgrad,
} from "./gpu_grad_workspace.ts";

/** One stage of the time-mix backward of layer l. */
type Stage = (
  k: BackwardKernels,
  w: GpuWeights,
  rec: Recorder,
  l: number,
  ws: LayerWorkspace,
  g: GradWorkspace,
  io: LayerBackwardIo,
) => void;

/** From dxMid through Wo, the gate, bonus, GroupNorm, WKV and the key / decay gates. */
export const timeMixOutputBackward: Stage = (k, w, rec, l, ws, g, io) => {
  outputGateBackward(k, w, rec, l, ws, g, io);
  wkvBackward(k, w, rec, l, ws, g, io);
  keyDecayBackward(k, w, rec, l, ws, g, io);
};

/** From dr, dk0, dv, da_pre, dz, dg back through the projections, the mixes and ln1. */
export const timeMixInputBackward: Stage = (k, w, rec, l, ws, g, io) => {
  lowRankBackward(k, w, rec, l, ws, g, io);
  valueAndProjectionsBackward(k, w, rec, l, ws, g, io);
  mixAndNormBackward(k, w, rec, l, ws, g, io);
};

/** dxMid → dog (Wo), the gate and bonus (dg, dr, dk, dv, dgn), GroupNorm → dyw. */
const outputGateBackward: Stage = (k, w, rec, l, ws, g, io) => {
  const { nEmbd: C, nHead: H, headSize: N } = w.config;
  const lw = w.layers[l], rows = g.rows, vecs = lw.vecs, wg = wgrad(k, g, io);
  k.matmul.lowrankMatrix(rec, lw.Wo, { rows, x: g.dxMid, y: g.dog });
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
};

/** dyw through the WKV recurrence (into dS0) and the lifted branch where the layer has one. */
const wkvBackward: Stage = (k, w, rec, l, ws, g, io) => {
  const { nHead: H, headSize: N } = w.config;
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
};

/** dkk through the key normalisation and the decay gate into dk0, da, dz (and dk_k, dk_a). */
const keyDecayBackward: Stage = (k, w, rec, l, ws, g, io) => {
  const { nEmbd: C, nHead: H, headSize: N } = w.config;
  const rows = g.rows, wg = wgrad(k, g, io);
  const kd: KeyDecayArgs = {
    rows,
    H,
    N,
    vecs: w.layers[l].vecs,
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
};

/** The row count, slots of dmix / mix and the dW helpers of a low-rank pair (a stage's scope). */
function inputScope(
  k: BackwardKernels,
  w: GpuWeights,
  rec: Recorder,
  l: number,
  ws: LayerWorkspace,
  g: GradWorkspace,
  io: LayerBackwardIo,
) {
  const { nEmbd: C } = w.config;
  const lw = w.layers[l], rows = g.rows, n = rows * C, wg = wgrad(k, g, io);
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
  return { C, lw, rows, n, wg, dW: io.dW, slot, mix, second, first };
}

/** The decay, in-context-rate and output-gate low-rank paths back into their dmix slots. */
const lowRankBackward: Stage = (k, w, rec, l, ws, g, io) => {
  const { lw, rows, dW, slot, second, first } = inputScope(k, w, rec, l, ws, g, io);
  const mm = k.matmul, tm = k.timeMix;
  // decay path: z = w0 + tanh(mix_w · w1) · w2
  second(dW?.w2, ws.wHidden, g.dd, "w0");
  mm.linearMatrix(rec, lw.w2, { rows, x: g.dd, y: g.dHidden });
  tm.act(rec, "tanh", rows * w.config.dimW, ws.wHidden, g.dHidden);
  first(dW?.w1, 1);
  mm.linearMatrix(rec, lw.w1, { rows, x: g.dHidden, ...slot(1) });
  // in-context rate: a = σ(a0 + (mix_a · a1) · a2)
  second(dW?.a2, ws.aHidden, g.da, "a0");
  mm.linearMatrix(rec, lw.a2, { rows, x: g.da, y: g.dHidden });
  first(dW?.a1, 4);
  mm.linearMatrix(rec, lw.a1, { rows, x: g.dHidden, ...slot(4) });
  // output gate: g = σ(mix_g · g1) · g2
  second(dW?.g2, ws.gHidden, g.dg);
  mm.linearMatrix(rec, lw.g2, { rows, x: g.dg, y: g.dHidden });
  tm.act(rec, "sigmoid", rows * w.config.dimG, ws.gHidden, g.dHidden);
  first(dW?.g1, 5);
  mm.linearMatrix(rec, lw.g1, { rows, x: g.dHidden, ...slot(5) });
};

/** The value residual (layers ≥ 1), then v0 = Wv · mix_v, r = Wr · mix_r, k0 = Wk · mix_k. */
const valueAndProjectionsBackward: Stage = (k, w, rec, l, ws, g, io) => {
  const { lw, rows, n, wg, dW, slot, mix, second, first } = inputScope(k, w, rec, l, ws, g, io);
  const mm = k.matmul, tm = k.timeMix;
  if (l === 0) {
    tm.value(rec, { n, dv: g.dv, dvFirst: io.dvFirst });
    mm.lowrankMatrix(rec, lw.Wv, { rows, x: g.dv, ...slot(3) });
  } else {
    tm.value(rec, {
      n,
      ...{ dv: g.dv, dvFirst: io.dvFirst, vGate: ws.vGate, vFirst: io.vFirst },
      ...{ v0: ws.v0, dvpre: g.dvpre },
    });
    second(dW?.v2, ws.vHidden, g.dvpre, "v0");
    mm.linearMatrix(rec, lw.v2!, { rows, x: g.dvpre, y: g.dHidden });
    first(dW?.v1, 3);
    mm.linearMatrix(rec, lw.v1!, { rows, x: g.dHidden, y: g.tmp });
    mm.lowrankMatrix(rec, lw.Wv, { rows, x: g.dv, res: g.tmp, ...slot(3) });
  }
  mm.lowrankMatrix(rec, lw.Wr, { rows, x: g.dr, ...slot(0) });
  mm.lowrankMatrix(rec, lw.Wk, { rows, x: g.dk, ...slot(2) });
  if (wg) {
    // Linear projections: dW = dyᵀ · mix
    wg.dw.matrix(rec, rows, wg.dW.Wv, { buffer: g.dv }, mix(3));
    wg.dw.matrix(rec, rows, wg.dW.Wr, { buffer: g.dr }, mix(0));
    wg.dw.matrix(rec, rows, wg.dW.Wk, { buffer: g.dk }, mix(2));
  }
};

/** dmix through the six token-shift mixes (and the shift state), then ln1 into dx. */
const mixAndNormBackward: Stage = (k, w, rec, l, ws, g, io) => {
  recordShiftNormBackward(k, rec, l, w.layers[l], g, io, w.config.nEmbd, {
    nMix: 6,
    mixVec: "x_r",
    u: ws.u,
    dshift: io.dShiftAtt,
    shift: "att",
    ln: "ln1",
    x: io.xIn,
    residual: g.dxMid,
    dx: io.dx,
  });
};
