/**
 * Reference of `shaders/embed_layernorm.wgsl`: the embedding gather followed by ln0, and its
 * backward.
 *
 * @module
 */
import { layerNorm, layerNormBackward } from "./norm.ts";

/**
 * Gather `emb[token]` for each token and LayerNorm the rows with (w, b), eps 1e-5.
 *
 * @param emb the embedding [V, C]
 * @returns `emb` (T, C), the gathered rows; `x` (T, C), their LayerNorm
 * @throws {RangeError} when a token is outside [0, V)
 * @example
 * ```ts
 * import { embedLayerNorm } from "./embed_layernorm.ts";
 * const { x } = embedLayerNorm([1, 2, 3, 5], [1], [1, 1], [0, 0], 2, 2); // x ≈ [-1, 1]
 * ```
 */
export function embedLayerNorm(
  emb: ArrayLike<number>,
  tokens: readonly number[],
  w: ArrayLike<number>,
  b: ArrayLike<number>,
  V: number,
  C: number,
): { emb: Float64Array; x: Float64Array } {
  const T = tokens.length;
  const rows = new Float64Array(T * C);
  tokens.forEach((tok, t) => {
    if (!Number.isInteger(tok) || tok < 0 || tok >= V) {
      throw new RangeError(`token ${tok} at position ${t} is outside the vocabulary [0, ${V})`);
    }
    for (let c = 0; c < C; c++) rows[t * C + c] = emb[tok * C + c];
  });
  return { emb: rows, x: layerNorm(rows, w, b, T, C) };
}

/**
 * Backward of {@link embedLayerNorm}: scatter-add the LayerNorm's input gradient into the rows
 * of the tokens.
 *
 * @param dx gradient of x (T, C); emb the gathered rows (T, C) from the forward
 * @returns dEmb [V, C], dw and db (C)
 */
export function embedLayerNormBackward(
  dx: ArrayLike<number>,
  emb: Float64Array,
  tokens: readonly number[],
  w: ArrayLike<number>,
  V: number,
  C: number,
): { dEmb: Float64Array; dw: Float64Array; db: Float64Array } {
  const T = tokens.length;
  const l0 = layerNormBackward(dx, emb, w, T, C, 1e-5, true);
  const dEmb = new Float64Array(V * C);
  tokens.forEach((tok, t) => {
    for (let c = 0; c < C; c++) dEmb[tok * C + c] += l0.dx[t * C + c];
  });
  return { dEmb, dw: l0.dw!, db: l0.db! };
}
