/**
 * Reference chunked WKV-7 (docs/MATH.md §3): the same recurrence as {@link wkvForward}, computed in
 * chunks of {@link WKV_CHUNK} tokens with intra-chunk matrices and inter-chunk state passing
 * (flash-linear-attention's generalized delta rule in WY form), in float64 with the input and
 * output types of `lib/ref/wkv.ts`: the reference of `shaders/wkv7_chunked.wgsl`. The backward is
 * `wkv7_chunked_backward.ts`.
 *
 * Per head and chunk (tokens t = 0 … L−1 of the chunk, S0 the state at its start, N-vectors as
 * columns), with γ_t = ∏_{u ≤ t} d_u the decay accumulated from the chunk start (γ_{−1} = 1):
 *
 *     a'_t = α_t ⊙ γ_{t−1}   b̂_t = β_t / γ_t   k̂_t = k_t / γ_t   r̃_t = r_t ⊙ γ_t
 *     P[s,t] = b̂_s·a'_t, Q[s,t] = k̂_s·a'_t   (s < t)      Pr[s,t] = b̂_s·r̃_t, Qr[s,t] = k̂_s·r̃_t   (s ≤ t)
 *     W = A' (I − P)⁻¹,  U = V Q (I − P)⁻¹                      (state-independent, per chunk)
 *     SA = S0 W + U                                               (sa_t = S_{t−1} α_t)
 *     Y  = S0 R̃ + SA Pr + V Qr
 *     S_L = (S0 + SA B̂ᵀ + V K̂ᵀ) diag(γ_{L−1})
 *
 * (I − P) is unit upper triangular, so W and U come from a forward substitution over t.
 *
 * Decay products: every product that is used pairs a factor γ_a with an inverse factor 1/γ_b for
 * a ≥ b (P and Q: γ_{t−1}/γ_s with s < t; Pr, Qr: γ_t/γ_s with s ≤ t; the state: γ_{L−1}/γ_s),
 * so each term equals α β ∏_{b < u ≤ a} d_u ≤ |α β| up to a few roundings, and no term is
 * amplified. The factors themselves are relative to the chunk start, so with d ≥ 0.545 (every
 * real model: d = exp(−e^{−½} σ(z))) 1/γ ≤ 0.545^{−16} ≈ 1.6e4: no overflow in f32, and a chunk
 * of 16 keeps the f32 products within the same few-ulp relative error as the sequential form.
 * The decay gradient goes through log γ (dL/dlog d_u = Σ_{t ≥ u} dL/dlog γ_t), divided by d_u
 * once at the end (d ≥ 0.545, so safe).
 *
 * @module
 */
import type { WkvInputs } from "./wkv.ts";

/** Tokens per chunk of the chunked form (docs/MATH.md §3). */
export const WKV_CHUNK = 16;

/** The per-chunk quantities of one head: vectors [t][x] (L×N), matrices [s][t] (L×L). */
export interface Chunk {
  L: number;
  /** γ after each token, and γ_{−1} = 1 at index 0: G[t + 1] = γ_t ((L + 1)·N) */
  G: Float64Array;
  ap: Float64Array;
  bh: Float64Array;
  kh: Float64Array;
  rt: Float64Array;
  v: Float64Array;
  P: Float64Array;
  Q: Float64Array;
  Pr: Float64Array;
  Qr: Float64Array;
}

/** Σ_j a[ao + j] · b[bo + j] over N terms. */
export function dotAt(a: Float64Array, ao: number, b: Float64Array, bo: number, N: number): number {
  let s = 0;
  for (let j = 0; j < N; j++) s += a[ao + j] * b[bo + j];
  return s;
}

/** Build the chunk of tokens [t0, t0 + L) of head h (C = H·N channels per token). */
export function chunkTerms(inp: WkvInputs, t0: number, L: number, h: number, C: number, N: number) {
  const G = new Float64Array((L + 1) * N).fill(1, 0, N);
  const vec = () => new Float64Array(L * N);
  const c: Chunk = { L, G, ap: vec(), bh: vec(), kh: vec(), rt: vec(), v: vec() } as Chunk;
  for (let t = 0; t < L; t++) {
    const o = (t0 + t) * C + h * N;
    for (let j = 0; j < N; j++) {
      const g = G[t * N + j] * inp.d[o + j];
      G[(t + 1) * N + j] = g;
      c.ap[t * N + j] = inp.alpha[o + j] * G[t * N + j];
      c.bh[t * N + j] = inp.beta[o + j] / g;
      c.kh[t * N + j] = inp.k[o + j] / g;
      c.rt[t * N + j] = inp.r[o + j] * g;
      c.v[t * N + j] = inp.v[o + j];
    }
  }
  const mat = () => new Float64Array(L * L);
  c.P = mat(), c.Q = mat(), c.Pr = mat(), c.Qr = mat();
  for (let s = 0; s < L; s++) {
    for (let t = s; t < L; t++) {
      const st = s * L + t;
      if (t > s) {
        c.P[st] = dotAt(c.bh, s * N, c.ap, t * N, N);
        c.Q[st] = dotAt(c.kh, s * N, c.ap, t * N, N);
      }
      c.Pr[st] = dotAt(c.bh, s * N, c.rt, t * N, N);
      c.Qr[st] = dotAt(c.kh, s * N, c.rt, t * N, N);
    }
  }
  return c;
}

/**
 * W = A'(I − P)⁻¹ and U = V Q (I − P)⁻¹ by forward substitution:
 * w_t = a'_t + Σ_{s<t} w_s P[s,t] (and likewise u_t), both [t][i].
 */
function wyFactors(c: Chunk, N: number): { W: Float64Array; U: Float64Array } {
  const { L } = c;
  const W = Float64Array.from(c.ap), U = new Float64Array(L * N);
  for (let t = 0; t < L; t++) {
    for (let s = 0; s < t; s++) {
      const p = c.P[s * L + t], q = c.Q[s * L + t];
      for (let i = 0; i < N; i++) {
        W[t * N + i] += W[s * N + i] * p;
        U[t * N + i] += c.v[s * N + i] * q + U[s * N + i] * p;
      }
    }
  }
  return { W, U };
}

/** `Y = S0 R̃ + SA Pr + V Qr`: writes y_t[i] through `y`. */
function chunkOutput(
  c: Chunk,
  N: number,
  S: Float64Array,
  SA: Float64Array,
  y: (t: number, i: number, x: number) => void,
): void {
  const { L } = c;
  for (let t = 0; t < L; t++) {
    for (let i = 0; i < N; i++) {
      let yi = dotAt(S, i * N, c.rt, t * N, N);
      for (let s = 0; s <= t; s++) {
        yi += SA[s * N + i] * c.Pr[s * L + t] + c.v[s * N + i] * c.Qr[s * L + t];
      }
      y(t, i, yi);
    }
  }
}

/**
 * One chunk forward from state `S` (N×N, [i][j], replaced by the chunk-end state): returns SA
 * ([t][i]) and writes y_t into `y` at the chunk's offsets.
 */
export function chunkForward(
  c: Chunk,
  N: number,
  S: Float64Array,
  y?: (t: number, i: number, x: number) => void,
): Float64Array {
  const { L } = c;
  const { W, U } = wyFactors(c, N);
  const SA = new Float64Array(L * N);
  for (let t = 0; t < L; t++) {
    for (let i = 0; i < N; i++) SA[t * N + i] = dotAt(S, i * N, W, t * N, N) + U[t * N + i];
  }
  if (y) chunkOutput(c, N, S, SA, y);
  // S_L = (S0 + SA B̂ᵀ + V K̂ᵀ) diag(γ_{L−1})
  const gL = L * N;
  for (let i = 0; i < N; i++) {
    for (let j = 0; j < N; j++) {
      let x = S[i * N + j];
      for (let s = 0; s < L; s++) {
        x += SA[s * N + i] * c.bh[s * N + j] + c.v[s * N + i] * c.kh[s * N + j];
      }
      S[i * N + j] = x * c.G[gL + j];
    }
  }
  return SA;
}

/**
 * The chunked forward: same result as {@link wkvForward} up to float64 rounding.
 *
 * @param s0 initial state (H·N·N, [h][i][j])
 * @returns y (T, H·N) and the final state (H·N·N)
 */
export function wkvChunkedForward(
  inp: WkvInputs,
  s0: ArrayLike<number>,
  T: number,
  H: number,
  N: number,
): { y: Float64Array; state: Float64Array } {
  const C = H * N, NN = N * N;
  const y = new Float64Array(T * C);
  const state = Float64Array.from(s0);
  for (let h = 0; h < H; h++) {
    const S = state.subarray(h * NN, (h + 1) * NN);
    for (let t0 = 0; t0 < T; t0 += WKV_CHUNK) {
      const c = chunkTerms(inp, t0, Math.min(WKV_CHUNK, T - t0), h, C, N);
      chunkForward(c, N, S, (t, i, x) => (y[(t0 + t) * C + h * N + i] = x));
    }
  }
  return { y, state };
}
