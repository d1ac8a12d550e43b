/**
 * One RWKV-7 layer's forward on the GPU, recorded into a {@link Recorder}, and the per-layer
 * workspace that holds its named intermediates (the same names as the reference's
 * `TimeMixCache` / `ChannelMixCache`, so the backward can recompute a layer and read them).
 *
 * Workspace layout (one set of buffers, reused by every layer; R = rows capacity ≥ B·T; every
 * activation is row-major (B·T, width) with row b·T + t):
 *
 * | buffer    | shape           | contents                                                   |
 * | --------- | --------------- | ---------------------------------------------------------- |
 * | `u`       | (R, C)          | ln1 output                                                 |
 * | `mix`     | (6, B·T, C)     | mix_r, mix_w, mix_k, mix_v, mix_a, mix_g, packed for B·T   |
 * | `r`       | (R, C)          | Wr · mix_r                                                 |
 * | `k0`, `k` | (R, C)          | Wk · mix_k; after the k_a update                           |
 * | `v0`, `v` | (R, C)          | Wv · mix_v; after the value residual                       |
 * | `wHidden` | (R, Dw)         | tanh(mix_w · w1)                                           |
 * | `z`, `d`  | (R, C)          | w0 + wHidden · w2; decay exp(−e^−½ σ(z))                   |
 * | `aHidden` | (R, Da)         | mix_a · a1                                                 |
 * | `a`       | (R, C)          | σ(a0 + aHidden · a2)                                       |
 * | `gHidden` | (R, Dg)         | σ(mix_g · g1)                                              |
 * | `g`       | (R, C)          | gHidden · g2                                               |
 * | `vHidden` | (R, Dv)         | mix_v · v1 (layers ≥ 1)                                    |
 * | `vGate`   | (R, C)          | σ(v0 + vHidden · v2) (layers ≥ 1)                          |
 * | `kk`      | (R, C)          | per-head normalised k0 ⊙ k_k                               |
 * | `y`       | (R, C)          | WKV output (plus the lifted branch's, docs/MATH.md §5, when given) |
 * | `o`, `og` | (R, C)          | GroupNorm(y) + bonus; o ⊙ g                                |
 * | `xMid`    | (R, C)          | residual after the time mix: x + Wo · og                   |
 * | `ffnU`    | (R, C)          | ln2 output                                                 |
 * | `ffnMix`  | (R, C)          | ffnU + (uPrev − ffnU) ⊙ ffn.x_k                            |
 * | `ffnPre`  | (R, F)          | ffn.key · ffnMix                                           |
 * | `ffnAct`  | (R, F)          | relu(ffnPre)²                                              |
 *
 * `v_first` (layer 0's v, (R, C)) lives outside the workspace because every layer reads it.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { createStorage } from "../gpu/buffers.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { Kernels } from "../kernels/kernels.ts";
import { recordWkvForward, type WkvFormOption } from "../kernels/wkv_form.ts";
import type { Wkv7ChunkedKernel } from "../kernels/wkv7_chunked.ts";
import type { GpuLifted, GpuLiftedState } from "./gpu_lifted.ts";
import type { GpuState } from "./gpu_state.ts";
import { type GpuWeights, layerVec } from "./gpu_weights.ts";
import type { RwkvConfig } from "./types.ts";

const C_WIDE = [
  "u",
  "r",
  "k0",
  "k",
  "v0",
  "v",
  "z",
  "d",
  "a",
  "g",
  "vGate",
  "kk",
  "y",
  "o",
  "og",
  "xMid",
  "ffnU",
  "ffnMix",
] as const;

/** The named intermediates of one layer's forward; see the module doc for the layout. */
export type LayerWorkspace =
  & Record<typeof C_WIDE[number], GPUBuffer>
  & Record<"mix" | "wHidden" | "aHidden" | "gHidden" | "vHidden" | "ffnPre" | "ffnAct", GPUBuffer>
  & { rows: number };

/**
 * Allocate a workspace for up to `rows` = B·T rows.
 *
 * @throws {RangeError} when one buffer would exceed a storage binding
 */
export function createLayerWorkspace(gpu: Gpu, cfg: RwkvConfig, rows: number): LayerWorkspace {
  const C = cfg.nEmbd;
  const widths: Record<string, number> = {
    mix: 6 * C,
    wHidden: cfg.dimW,
    aHidden: cfg.dimA,
    gHidden: cfg.dimG,
    vHidden: cfg.dimV,
    ffnPre: cfg.dimFfn,
    ffnAct: cfg.dimFfn,
  };
  for (const k of C_WIDE) widths[k] = C;
  const ws: Record<string, GPUBuffer | number> = { rows };
  for (const [name, width] of Object.entries(widths)) {
    const bytes = rows * width * 4;
    if (bytes > gpu.limits.maxStorageBufferBindingSize) {
      throw new RangeError(
        `workspace "${name}" needs ${bytes} bytes for B·T = ${rows} rows, more than one storage ` +
          `binding (${gpu.limits.maxStorageBufferBindingSize}); use fewer tokens per forward`,
      );
    }
    ws[name] = createStorage(gpu, `ws.${name}`, bytes);
  }
  return ws as LayerWorkspace;
}

/** Free a workspace's buffers. */
export function destroyLayerWorkspace(ws: LayerWorkspace): void {
  for (const v of Object.values(ws)) if (v instanceof GPUBuffer) v.destroy();
}

/** What {@link recordLayer} needs besides the layer's own buffers. */
export interface LayerContext {
  kernels: Kernels;
  weights: GpuWeights;
  /** the chunked WKV (docs/MATH.md §3), recorded where `wkvForm` picks it; omitted: sequential */
  wkvChunked?: Wkv7ChunkedKernel;
  /** "auto" (default: chooseWkvForm, sequential on software adapters) or a forced form */
  wkvForm?: WkvFormOption;
}

/** Buffers and sizes of one layer's forward. */
export interface LayerIo {
  B: number;
  T: number;
  /** residual entering the layer (B·T, C) */
  xIn: GPUBuffer;
  /** residual leaving the layer (B·T, C); must differ from xIn */
  xOut: GPUBuffer;
  /** layer 0's v (B·T, C): written by layer 0, read by the others */
  vFirst: GPUBuffer;
  /** carried state, updated in place */
  state: GpuState;
  /**
   * kernel-upscaled state (docs/MATH.md §5): layers of `set` that have a branch add it to the WKV
   * output; `state` (B sequences) is advanced in place. Omitted: no branch.
   */
  lifted?: { set: GpuLifted; state: GpuLiftedState };
}

/**
 * Record layer `l`'s forward: `xOut = layer(xIn)`, intermediates left in `ws`, state advanced.
 *
 * @example
 * ```ts ignore
 * recordLayer(ctx, rec, l, { B, T, xIn, xOut, vFirst, state }, ws);
 * ```
 */
export function recordLayer(
  ctx: LayerContext,
  rec: Recorder,
  l: number,
  io: LayerIo,
  ws: LayerWorkspace,
): void {
  const rows = io.B * io.T;
  if (rows > ws.rows) throw new RangeError(`layer ${l}: B·T = ${rows} > workspace rows ${ws.rows}`);
  if (io.xIn === io.xOut) throw new RangeError(`layer ${l}: xIn and xOut must differ`);
  if (io.state.B !== io.B) throw new RangeError(`layer ${l}: state B ${io.state.B} ≠ B ${io.B}`);
  recordTimeMix(ctx, rec, l, io, ws);
  recordChannelMix(ctx, rec, l, io, ws);
}

/** Record the time mix of layer l: `ws.xMid = xIn + Wo · (o ⊙ g)`. */
export function recordTimeMix(
  ctx: LayerContext,
  rec: Recorder,
  l: number,
  io: LayerIo,
  ws: LayerWorkspace,
): void {
  recordTimeMixProjections(ctx, rec, l, io, ws);
  recordGatesAndKeys(ctx, rec, l, io, ws);
  recordWkvAndBranch(ctx, rec, l, io, ws);
  recordTimeMixOutput(ctx, rec, l, io, ws);
}

type Stage = (
  ctx: LayerContext,
  rec: Recorder,
  l: number,
  io: LayerIo,
  ws: LayerWorkspace,
) => void;

/** The sizes, weights and vector offsets every time-mix stage of layer l uses. */
function timeMixScope(ctx: LayerContext, l: number, io: LayerIo) {
  const { nEmbd: C, nHead: H, headSize: N } = ctx.weights.config;
  const lw = ctx.weights.layers[l];
  const rows = io.B * io.T;
  const vo = (name: Parameters<typeof layerVec>[0]) => layerVec(name, C);
  return { k: ctx.kernels, C, H, N, lw, vecs: lw.vecs, rows, n: rows * C, vo };
}

/**
 * u = ln1(xIn), the six token-shift mixes, then r, k0, v0 (Linear) and the low-rank paths
 * z = w2·tanh(w1·x), a = a2·(a1·x), g = g2·σ(g1·x), vGate = v2·(v1·x) (layers ≥ 1).
 */
const recordTimeMixProjections: Stage = (ctx, rec, l, io, ws) => {
  const { k, C, lw, vecs, rows, n, vo } = timeMixScope(ctx, l, io);
  k.layerNorm.record(rec, {
    rows,
    C,
    x: io.xIn,
    vecs,
    wOff: vo("ln1_w"),
    bOff: vo("ln1_b"),
    out: ws.u,
  });
  const shift = {
    B: io.B,
    T: io.T,
    C,
    u: ws.u,
    shift: io.state.att,
    shiftOff: io.state.shiftOffset(l),
  };
  k.tokenShift.mix(rec, { ...shift, nMix: 6, vecs, xOff: vo("x_r"), out: ws.mix });
  k.tokenShift.store(rec, shift);
  const mm = k.matmul;
  const mix = (m: number) => ({ rows, x: ws.mix, xOff: m * n });
  mm.linearMatrix(rec, lw.Wr, { ...mix(0), y: ws.r });
  mm.linearMatrix(rec, lw.Wk, { ...mix(2), y: ws.k0 });
  mm.linearMatrix(rec, lw.Wv, { ...mix(3), y: ws.v0 });
  mm.lowrankMatrix(rec, lw.w1, { ...mix(1), y: ws.wHidden, act: "tanh" });
  mm.lowrankMatrix(rec, lw.w2, { rows, x: ws.wHidden, y: ws.z });
  mm.lowrankMatrix(rec, lw.a1, { ...mix(4), y: ws.aHidden });
  mm.lowrankMatrix(rec, lw.a2, { rows, x: ws.aHidden, y: ws.a });
  mm.lowrankMatrix(rec, lw.g1, { ...mix(5), y: ws.gHidden, act: "sigmoid" });
  mm.lowrankMatrix(rec, lw.g2, { rows, x: ws.gHidden, y: ws.g });
  if (l > 0) {
    mm.lowrankMatrix(rec, lw.v1!, { ...mix(3), y: ws.vHidden });
    mm.lowrankMatrix(rec, lw.v2!, { rows, x: ws.vHidden, y: ws.vGate });
  }
};

/** Decay, in-context rate and value gates (`gates`), then the normalised key (`keyNorm`). */
const recordGatesAndKeys: Stage = (ctx, rec, l, io, ws) => {
  const { k, C, H, N, vecs, rows, vo } = timeMixScope(ctx, l, io);
  k.gates.record(rec, {
    rows,
    C,
    vecs,
    w0Off: vo("w0"),
    a0Off: vo("a0"),
    v0Off: vo("v0"),
    layer0: l === 0,
    z: ws.z,
    d: ws.d,
    a: ws.a,
    vGate: ws.vGate,
    v0: ws.v0,
    v: ws.v,
    vFirst: io.vFirst,
  });
  k.keyNorm.record(rec, {
    rows,
    H,
    N,
    vecs,
    kkOff: vo("k_k"),
    kaOff: vo("k_a"),
    k0: ws.k0,
    a: ws.a,
    kk: ws.kk,
    k: ws.k,
  });
};

/** The WKV recurrence (sequential or chunked form), then the lifted branch where it has one. */
const recordWkvAndBranch: Stage = (ctx, rec, l, io, ws) => {
  const { k, H } = timeMixScope(ctx, l, io);
  recordWkvForward(rec, { wkv: k.wkv, wkvChunked: ctx.wkvChunked, wkvForm: ctx.wkvForm }, {
    B: io.B,
    T: io.T,
    H,
    r: ws.r,
    d: ws.d,
    k: ws.k,
    v: ws.v,
    kk: ws.kk,
    a: ws.a,
    state: io.state.wkv,
    stateOff: io.state.wkvOffset(l),
    y: ws.y,
  });
  const lifted = io.lifted;
  if (lifted?.set.layers[l]) {
    const v = { B: io.B, T: io.T, kk: ws.kk, r: ws.r, d: ws.d, a: ws.a, k: ws.k, v: ws.v };
    lifted.set.recordForward(rec, l, { ...v, y: ws.y, state: lifted.state });
  }
};

/** og = groupNorm(y) + bonus, gated by g; `ws.xMid = xIn + Wo · og`. */
const recordTimeMixOutput: Stage = (ctx, rec, l, io, ws) => {
  const { k, H, N, lw, vecs, rows, vo } = timeMixScope(ctx, l, io);
  k.groupNormBonus.record(rec, {
    rows,
    H,
    N,
    vecs,
    lnxW: vo("lnx_w"),
    lnxB: vo("lnx_b"),
    rkOff: vo("r_k"),
    y: ws.y,
    r: ws.r,
    k: ws.k,
    v: ws.v,
    g: ws.g,
    o: ws.o,
    og: ws.og,
  });
  k.matmul.linearMatrix(rec, lw.Wo, { rows, x: ws.og, res: io.xIn, y: ws.xMid });
};

/** Record the channel mix of layer l: `xOut = ws.xMid + ffn.value · relu(ffn.key · mix)²`. */
export function recordChannelMix(
  ctx: LayerContext,
  rec: Recorder,
  l: number,
  io: LayerIo,
  ws: LayerWorkspace,
): void {
  const { kernels: k, weights } = ctx;
  const { nEmbd: C, dimFfn: F } = weights.config;
  const lw = weights.layers[l];
  const rows = io.B * io.T;
  k.layerNorm.record(rec, {
    rows,
    C,
    x: ws.xMid,
    vecs: lw.vecs,
    wOff: layerVec("ln2_w", C),
    bOff: layerVec("ln2_b", C),
    out: ws.ffnU,
  });
  const shift = {
    B: io.B,
    T: io.T,
    C,
    u: ws.ffnU,
    shift: io.state.ffn,
    shiftOff: io.state.shiftOffset(l),
  };
  k.tokenShift.mix(rec, {
    ...shift,
    nMix: 1,
    vecs: lw.vecs,
    xOff: layerVec("ffn_x_k", C),
    out: ws.ffnMix,
  });
  k.tokenShift.store(rec, shift);
  k.matmul.linearMatrix(rec, lw.ffn_key, { rows, x: ws.ffnMix, y: ws.ffnPre });
  k.channelMix.reluSq(rec, { n: rows * F, pre: ws.ffnPre, act: ws.ffnAct });
  k.matmul.linearMatrix(rec, lw.ffn_value, { rows, x: ws.ffnAct, res: ws.xMid, y: io.xOut });
}
