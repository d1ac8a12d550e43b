/**
 * Shared model types.
 *
 * Dimension letters used across the project:
 * - `B` batch (sequences), `T` tokens per sequence, `L` layers, `C` model width,
 * - `H` heads, `N` head size (`C = H·N`), `V` vocabulary,
 * - `Dw, Da, Dv, Dg` the low-rank widths of the decay, in-context learning rate (a), value
 *   residual and gate paths, `F` the channel-mix width (4C in released models).
 *
 * Matrices are row-major `Float32Array`s. A Linear weight is stored `[out, in]` and computes
 * `y = W x`; low-rank matrices (`w1`, `w2`, …) are stored `[in, out]` and used as `x · w1`.
 *
 * @module
 */

/** Element type of a tensor as stored in a file. */
export type DType = "f32" | "f16" | "bf16";

/** A dense tensor, always decoded to f32 in memory. `data.length === product(shape)`. */
export interface Tensor {
  shape: number[];
  data: Float32Array;
}

/** Tensors by checkpoint name, with the dtype they were stored in. */
export interface TensorFile {
  tensors: Map<string, Tensor>;
  /** Storage dtype of the (first) floating tensor in the file. */
  dtype: DType;
}

/** Sizes inferred from tensor shapes (never from a file name). */
export interface RwkvConfig {
  /** L */
  nLayer: number;
  /** C */
  nEmbd: number;
  /** N */
  headSize: number;
  /** H = C / N */
  nHead: number;
  /** V */
  vocabSize: number;
  /** Low-rank widths. */
  dimW: number;
  dimA: number;
  dimV: number;
  dimG: number;
  /** F (channel-mix hidden width, 4C in released models). */
  dimFfn: number;
}

/**
 * One layer's weights, named after the checkpoint keys (`blocks.{l}.att.x_r` → `x_r`).
 * Vectors of length C unless noted.
 */
export interface LayerWeights {
  ln1_w: Float32Array;
  ln1_b: Float32Array;
  ln2_w: Float32Array;
  ln2_b: Float32Array;
  x_r: Float32Array;
  x_w: Float32Array;
  x_k: Float32Array;
  x_v: Float32Array;
  x_a: Float32Array;
  x_g: Float32Array;
  w0: Float32Array;
  /** [C, Dw] */
  w1: Float32Array;
  /** [Dw, C] */
  w2: Float32Array;
  a0: Float32Array;
  /** [C, Da] */
  a1: Float32Array;
  /** [Da, C] */
  a2: Float32Array;
  /** Value-residual gate; absent (unused) in layer 0. */
  v0?: Float32Array;
  /** [C, Dv] */
  v1?: Float32Array;
  /** [Dv, C] */
  v2?: Float32Array;
  /** [C, Dg] */
  g1: Float32Array;
  /** [Dg, C] */
  g2: Float32Array;
  k_k: Float32Array;
  k_a: Float32Array;
  /** [H, N] */
  r_k: Float32Array;
  /** att.receptance.weight [C, C] */
  Wr: Float32Array;
  /** att.key.weight [C, C] */
  Wk: Float32Array;
  /** att.value.weight [C, C] */
  Wv: Float32Array;
  /** att.output.weight [C, C] */
  Wo: Float32Array;
  /** att.ln_x.weight */
  lnx_w: Float32Array;
  /** att.ln_x.bias */
  lnx_b: Float32Array;
  /** ffn.x_k */
  ffn_x_k: Float32Array;
  /** ffn.key.weight [F, C] */
  ffn_key: Float32Array;
  /** ffn.value.weight [C, F] */
  ffn_value: Float32Array;
}

/** A whole RWKV-7 model's weights. */
export interface RwkvWeights {
  config: RwkvConfig;
  /** [V, C] */
  emb: Float32Array;
  /** blocks.0.ln0 */
  ln0_w: Float32Array;
  ln0_b: Float32Array;
  blocks: LayerWeights[];
  ln_out_w: Float32Array;
  ln_out_b: Float32Array;
  /** [V, C] */
  head: Float32Array;
}

/**
 * The recurrent state of one sequence, per layer: the token-shift vectors of the time mix
 * (`att`, the ln1 output of the last token, C) and of the channel mix (`ffn`, the ln2 output of
 * the last token, C), and the wkv state (`wkv`, [H][N value][N key], key fastest).
 */
export interface LayerState {
  att: Float32Array;
  wkv: Float32Array;
  ffn: Float32Array;
}

/** The whole model's state for one sequence. */
export type RwkvState = LayerState[];

/** A zero state for `config`. */
export function zeroState(config: RwkvConfig): RwkvState {
  const { nLayer, nEmbd: C, nHead: H, headSize: N } = config;
  return Array.from({ length: nLayer }, () => ({
    att: new Float32Array(C),
    wkv: new Float32Array(H * N * N),
    ffn: new Float32Array(C),
  }));
}

/** A deep copy of a state. */
export function cloneState(state: RwkvState): RwkvState {
  return state.map((s) => ({ att: s.att.slice(), wkv: s.wkv.slice(), ffn: s.ffn.slice() }));
}
