/**
 * The size formulas of the memory plan (`memory_plan.ts`), each mirroring one allocation:
 * storage rounding, weight chunks and shapes, the WKV backward scratch, the workspace widths,
 * and the parameter count of a config.
 *
 * @module
 */
import { roundUp } from "../gpu/buffers.ts";
import { planWkvWindows } from "../kernels/wkv7.ts";
import { WKV_BWD_CHUNK } from "../kernels/wkv7_backward.ts";
import { LAYER_VECS, MODEL_VECS } from "./gpu_weights.ts";
import type { RwkvConfig } from "./types.ts";

/** The size `createStorage` gives a request of `bytes` (≥ 16, a multiple of 16). */
export function storage(bytes: number): number {
  return Math.max(16, roundUp(bytes, 16));
}

/** Parameter count of a config (every weight array; layer 0 has no v0/v1/v2), as `countParams`. */
export function configParams(cfg: RwkvConfig): number {
  const { nLayer: L, nEmbd: C, vocabSize: V, dimFfn: F } = cfg;
  const layer = LAYER_VECS.length * C + 4 * C * C + 2 * C * (cfg.dimW + cfg.dimA + cfg.dimG) +
    2 * F * C;
  // layer 0 has no v0 (one of the packed vectors), v1, v2
  return 2 * V * C + MODEL_VECS.length * C + L * layer - C + (L - 1) * 2 * C * cfg.dimV;
}

/** Chunk sizes of a rows × cols matrix as `uploadMatrix` splits it. */
export function matrixChunks(rows: number, cols: number, bpe: number, limit: number): number[] {
  const perChunk = Math.floor(limit / (cols * bpe));
  if (perChunk < 1) {
    throw new RangeError(`one row of ${cols} values exceeds the ${limit}-byte binding`);
  }
  const out: number[] = [];
  for (let r0 = 0; r0 < rows; r0 += perChunk) {
    out.push(storage(Math.min(perChunk, rows - r0) * cols * bpe));
  }
  return out;
}

/** The rows × cols shapes of every weight matrix of the model, as `uploadWeights` uploads them. */
export function matrixShapes(cfg: RwkvConfig): [number, number][] {
  const { nEmbd: C, vocabSize: V, dimFfn: F } = cfg;
  const out: [number, number][] = [[V, C], [V, C]]; // emb, head
  for (let l = 0; l < cfg.nLayer; l++) {
    out.push([C, C], [C, C], [C, C], [C, C], [C, cfg.dimW], [cfg.dimW, C]);
    out.push([C, cfg.dimA], [cfg.dimA, C], [C, cfg.dimG], [cfg.dimG, C], [F, C], [C, F]);
    if (l > 0) out.push([C, cfg.dimV], [cfg.dimV, C]);
  }
  return out;
}

/** Bytes of the WKV backward scratch (mirrors `scratchLayout` in lib/kernels/wkv7_backward.ts). */
export function wkvScratchElems(B: number, T: number, H: number, N: number) {
  const n = B * T * H * N, C = H * N, NN = N * N, K = WKV_BWD_CHUNK;
  const wins = planWkvWindows(B, T, C, K);
  const W = wins[0].t1 - wins[0].t0;
  const nWs = Math.ceil(T / W) - 1;
  const maxNb = Math.max(...wins.map((w) => w.nb));
  const ckOff = 2 * Math.ceil(n / 64) * 64;
  const ckElems = B * H * nWs * NN + B * H * NN + maxNb * H * Math.ceil(W / K) * NN;
  return { ckOff, ckElems, total: ckOff + ckElems };
}

/** Widths of the layer workspace (`createLayerWorkspace`): 18 C-wide buffers plus these. */
export function layerWorkspaceWidths(cfg: RwkvConfig): number[] {
  const { nEmbd: C, dimFfn: F } = cfg;
  return [6 * C, cfg.dimW, cfg.dimA, cfg.dimG, cfg.dimV, F, F, ...Array(18).fill(C)];
}

/** Widths of the gradient scratch (`createGradWorkspace`, no weight gradients). */
export function gradWorkspaceWidths(cfg: RwkvConfig): number[] {
  const C = cfg.nEmbd;
  const D = Math.max(cfg.dimW, cfg.dimA, cfg.dimG, cfg.dimV, 1);
  return [...Array(14).fill(C), 6 * C, cfg.dimFfn, D];
}
