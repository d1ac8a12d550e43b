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
 * The kernels, gradient workspace and layer io are in `gpu_grad_workspace.ts`; the time mix's
 * backward is in `gpu_time_mix_backward.ts`.
 *
 * Residual structure: `xMid = x + att(x)`, `xOut = xMid + ffn(xMid)`, so
 * `dxMid = dxOut + ffnBackward(dxOut)` and `dx = dxMid + attBackward(dxMid)`.
 *
 * @module
 */
import type { Recorder } from "../gpu/recorder.ts";
import type { LayerWorkspace } from "./gpu_layer.ts";
import { type GpuWeights, layerVec } from "./gpu_weights.ts";
import {
  type BackwardKernels,
  type GradWorkspace,
  type LayerBackwardIo,
  recordNormAffine,
  wgrad,
} from "./gpu_grad_workspace.ts";
import { timeMixInputBackward, timeMixOutputBackward } from "./gpu_time_mix_backward.ts";

export {
  type BackwardKernels,
  backwardKernels,
  createGradWeights,
  createGradWorkspace,
  destroyGradWorkspace,
  type GradWorkspace,
  type LayerBackwardIo,
  recordNormAffine,
} from "./gpu_grad_workspace.ts";

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

/** From dxOut through the channel mix and ln2 into dxMid (dxOut + ffn backward). */
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
  k.matmul.lowrankMatrix(rec, lw.ffn_value, { rows, x: io.dx, y: g.dF });
  wg?.dw.matrix(rec, rows, wg.dW.ffn_value, { buffer: io.dx }, { buffer: ws.ffnAct });
  k.channelMix.reluSq(rec, rows * F, ws.ffnPre, g.dF);
  wg?.dw.matrix(rec, rows, wg.dW.ffn_key, { buffer: g.dF }, { buffer: ws.ffnMix });
  k.matmul.lowrankMatrix(rec, lw.ffn_key, { rows, x: g.dF, y: g.dmix });
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
