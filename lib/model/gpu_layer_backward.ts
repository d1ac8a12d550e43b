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
import type { GpuWeights } from "./gpu_weights.ts";
import {
  type BackwardKernels,
  type GradWorkspace,
  type LayerBackwardIo,
  recordShiftNormBackward,
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
  const lw = w.layers[l], rows = g.rows, wg = wgrad(k, g, io);
  k.matmul.lowrankMatrix(rec, lw.ffn_value, { rows, x: io.dx, y: g.dF });
  wg?.dw.matrix(rec, rows, wg.dW.ffn_value, { buffer: io.dx }, { buffer: ws.ffnAct });
  k.channelMix.reluSq(rec, rows * F, ws.ffnPre, g.dF);
  wg?.dw.matrix(rec, rows, wg.dW.ffn_key, { buffer: g.dF }, { buffer: ws.ffnMix });
  k.matmul.lowrankMatrix(rec, lw.ffn_key, { rows, x: g.dF, y: g.dmix });
  recordShiftNormBackward(k, rec, l, lw, g, io, C, {
    nMix: 1,
    mixVec: "ffn_x_k",
    u: ws.ffnU,
    dshift: io.dShiftFfn,
    shift: "ffn",
    ln: "ln2",
    x: ws.xMid,
    residual: io.dx,
    dx: g.dxMid,
  });
}
