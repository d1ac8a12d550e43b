/**
 * LoRA (docs/MATH.md §7) reference maths in float64: the merged weight of one targeted Linear and the
 * adapter's gradients from the weight gradient.
 *
 *     W_eff = W + s · B A,   s = α / r,   W (out, in), A (r, in), B (out, r)
 *     dB = s · dW Aᵀ   (out, r)
 *     dA = s · Bᵀ dW   (r, in)
 *
 * where dW = dL/dW_eff is the gradient the model backward already produces for the Linear.
 *
 * @module
 */

/** Sizes of one adapted Linear: `out` × `in` weight, rank `r`. */
export interface LoraDims {
  out: number;
  in: number;
  r: number;
}

/**
 * The LoRA scale s = α / r.
 *
 * @example
 * ```ts
 * import { loraScale } from "./lora.ts";
 * console.assert(loraScale(8, 16) === 2);
 * ```
 */
export function loraScale(r: number, alpha: number): number {
  return alpha / r;
}

function checkLen(what: string, a: ArrayLike<number>, n: number): void {
  if (a.length !== n) {
    throw new RangeError(`lora ref: ${what} has ${a.length} values, expected ${n}`);
  }
}

/**
 * W_eff = W + s · B A.
 *
 * @param W (out, in)
 * @param A (r, in)
 * @param B (out, r)
 * @returns (out, in)
 * @example
 * ```ts
 * import { loraMergeRef } from "./lora.ts";
 * const w = loraMergeRef([1, 0], [1, 2], [3], { out: 1, in: 2, r: 1 }, 0.5);
 * console.assert(w[0] === 2.5 && w[1] === 3);
 * ```
 */
export function loraMergeRef(
  W: ArrayLike<number>,
  A: ArrayLike<number>,
  B: ArrayLike<number>,
  d: LoraDims,
  s: number,
): Float64Array {
  checkLen("W (out, in)", W, d.out * d.in);
  checkLen("A (r, in)", A, d.r * d.in);
  checkLen("B (out, r)", B, d.out * d.r);
  const out = Float64Array.from(W);
  for (let o = 0; o < d.out; o++) {
    for (let k = 0; k < d.r; k++) {
      const b = s * B[o * d.r + k];
      if (b === 0) continue;
      for (let i = 0; i < d.in; i++) out[o * d.in + i] += b * A[k * d.in + i];
    }
  }
  return out;
}

/**
 * The adapter's gradients from dW = dL/dW_eff: dA = s · Bᵀ dW, dB = s · dW Aᵀ.
 *
 * @param dW (out, in)
 * @param A (r, in)
 * @param B (out, r)
 * @returns dA (r, in) and dB (out, r)
 * @example
 * ```ts
 * import { loraGradsRef } from "./lora.ts";
 * const { dA, dB } = loraGradsRef([1, 2], [3, 4], [5], { out: 1, in: 2, r: 1 }, 2);
 * console.assert(dA[0] === 10 && dA[1] === 20 && dB[0] === 22);
 * ```
 */
export function loraGradsRef(
  dW: ArrayLike<number>,
  A: ArrayLike<number>,
  B: ArrayLike<number>,
  d: LoraDims,
  s: number,
): { dA: Float64Array; dB: Float64Array } {
  checkLen("dW (out, in)", dW, d.out * d.in);
  checkLen("A (r, in)", A, d.r * d.in);
  checkLen("B (out, r)", B, d.out * d.r);
  const dA = new Float64Array(d.r * d.in), dB = new Float64Array(d.out * d.r);
  for (let o = 0; o < d.out; o++) {
    for (let k = 0; k < d.r; k++) {
      const b = B[o * d.r + k];
      let acc = 0;
      for (let i = 0; i < d.in; i++) {
        const g = dW[o * d.in + i];
        acc += g * A[k * d.in + i];
        dA[k * d.in + i] += s * b * g;
      }
      dB[o * d.r + k] = s * acc;
    }
  }
  return { dA, dB };
}
