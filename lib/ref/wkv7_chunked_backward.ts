/**
 * The reference of `shaders/wkv7_chunked_backward.wgsl`: the backward of the chunked WKV-7 of
 * `wkv7_chunked.ts` (whose module comment gives the chunk formulas), down to dL/dS0.
 *
 * @module
 */
import { type WkvGrads, type WkvInputs, zeroWkvGrads } from "./wkv.ts";
import { type Chunk, chunkForward, chunkTerms, dotAt, WKV_CHUNK } from "./wkv7_chunked.ts";

/**
 * The chunked backward down to dL/dS0: same gradients as {@link wkvBackward}. Per head, a
 * forward over chunks keeps each chunk's start state; then a reverse chunk pass carries dS from
 * chunk end to chunk start (its last value is dS0) and, per chunk, back-propagates through the
 * intra-chunk matrices (see {@link chunkBackward}).
 *
 * @param dy (T, H·N) gradient of the output
 * @param dSFinal (H·N·N) gradient of the final state (zero when omitted)
 */
export function wkvChunkedBackward(
  inp: WkvInputs,
  s0: ArrayLike<number>,
  dy: ArrayLike<number>,
  T: number,
  H: number,
  N: number,
  dSFinal?: ArrayLike<number>,
): WkvGrads {
  const C = H * N, NN = N * N;
  const g = zeroWkvGrads(T, H, N);
  for (let h = 0; h < H; h++) {
    const chunks: { t0: number; c: Chunk; S0: Float64Array; SA: Float64Array }[] = [];
    const S = Float64Array.from({ length: NN }, (_, e) => s0[h * NN + e]);
    for (let t0 = 0; t0 < T; t0 += WKV_CHUNK) {
      const c = chunkTerms(inp, t0, Math.min(WKV_CHUNK, T - t0), h, C, N);
      const S0 = S.slice();
      chunks.push({ t0, c, S0, SA: chunkForward(c, N, S) });
    }
    const dS = Float64Array.from({ length: NN }, (_, e) => (dSFinal ? dSFinal[h * NN + e] : 0));
    let SL: Float64Array = S; // the state at the end of the chunk being processed
    for (const ch of chunks.reverse()) {
      const at = (t: number) => (ch.t0 + t) * C + h * N;
      const dyc = new Float64Array(ch.c.L * N);
      for (let t = 0; t < ch.c.L; t++) for (let i = 0; i < N; i++) dyc[t * N + i] = dy[at(t) + i];
      chunkBackward(ch.c, N, inp, at, ch.S0, SL, ch.SA, dyc, dS, g);
      SL = ch.S0;
    }
    g.dS0.set(dS, h * NN);
  }
  return g;
}

/**
 * Backward of one chunk. In: `dS` = dL/dS_L (chunk end); out: dL/dS0 (chunk start), and the
 * chunk's per-token gradients written into `g`. With dX = dS_L diag(γ_{L−1}):
 *
 *     G  = dY Prᵀ + dX B̂;   dM = G (I − P)⁻ᵀ   (back substitution: dm_s = g_s + Σ_{t>s} P[s,t] dm_t)
 *     dS0 = dX + dY R̃ᵀ + dM A'ᵀ
 *     dPr = SAᵀdY, dQr = VᵀdY (s ≤ t);  dP = SAᵀdM, dQ = VᵀdM (s < t)
 *     dR̃ = S0ᵀdY + B̂ dPr + K̂ dQr;   dA' = S0ᵀdM + B̂ dP + K̂ dQ
 *     dB̂ = R̃ dPrᵀ + dXᵀSA + A' dPᵀ;  dK̂ = R̃ dQrᵀ + dXᵀV + A' dQᵀ
 *     dV = dY Qrᵀ + dX K̂ + dM Qᵀ
 *
 * then the elementwise chain rule through a', b̂, k̂, r̃ and γ.
 */
function chunkBackward(
  c: Chunk,
  N: number,
  inp: WkvInputs,
  at: (t: number) => number,
  S0: Float64Array,
  SL: Float64Array,
  SA: Float64Array,
  dy: Float64Array,
  dS: Float64Array,
  g: WkvGrads,
): void {
  const { L, G } = c, gL = L * N;
  const dX = dS.map((x, e) => x * G[gL + (e % N)]);
  const dM = backSubstitute(c, N, dX, dy);
  const m = matrixGrads(c, N, SA, dy, dM);
  const e = tokenGrads(c, N, { at, S0, SA, dy, dX, dM }, m, g);
  for (let j = 0; j < N; j++) {
    let x = 0;
    for (let i = 0; i < N; i++) x += dS[i * N + j] * SL[i * N + j];
    e[(L - 1) * N + j] += x; // S_L = X diag(γ_{L−1})
  }
  for (let j = 0; j < N; j++) {
    let suffix = 0;
    for (let t = L - 1; t >= 0; t--) {
      suffix += e[t * N + j];
      g.dd[at(t) + j] += suffix / inp.d[at(t) + j];
    }
  }
  for (let t = 0; t < L; t++) {
    for (let i = 0; i < N; i++) {
      let dv = dotAt(dX, i * N, c.kh, t * N, N);
      for (let u = t; u < L; u++) dv += dy[u * N + i] * c.Qr[t * L + u];
      for (let u = t + 1; u < L; u++) dv += dM[u * N + i] * c.Q[t * L + u];
      g.dv[at(t) + i] += dv;
    }
  }
  for (let i = 0; i < N; i++) {
    for (let j = 0; j < N; j++) {
      let x = dX[i * N + j];
      for (let t = 0; t < L; t++) {
        x += dy[t * N + i] * c.rt[t * N + j] + dM[t * N + i] * c.ap[t * N + j];
      }
      dS[i * N + j] = x;
    }
  }
}

/** `dM = (dY Prᵀ + dX B̂)(I − P)⁻ᵀ` by back substitution: dm_s = g_s + Σ_{t>s} P[s,t] dm_t. */
function backSubstitute(c: Chunk, N: number, dX: Float64Array, dy: Float64Array): Float64Array {
  const { L } = c;
  const dM = new Float64Array(L * N);
  for (let t = L - 1; t >= 0; t--) {
    for (let i = 0; i < N; i++) {
      let x = dotAt(dX, i * N, c.bh, t * N, N);
      for (let u = t; u < L; u++) x += dy[u * N + i] * c.Pr[t * L + u];
      for (let u = t + 1; u < L; u++) x += c.P[t * L + u] * dM[u * N + i];
      dM[t * N + i] = x;
    }
  }
  return dM;
}

/** Gradients of the intra-chunk matrices, [s][t]. */
interface MatrixGrads {
  dPr: Float64Array;
  dQr: Float64Array;
  dP: Float64Array;
  dQ: Float64Array;
}

/** dPr = SAᵀdY, dQr = VᵀdY (s ≤ t); dP = SAᵀdM, dQ = VᵀdM (s < t). */
function matrixGrads(
  c: Chunk,
  N: number,
  SA: Float64Array,
  dy: Float64Array,
  dM: Float64Array,
): MatrixGrads {
  const { L } = c;
  const m4 = () => new Float64Array(L * L);
  const dPr = m4(), dQr = m4(), dP = m4(), dQ = m4();
  for (let s = 0; s < L; s++) {
    for (let t = s; t < L; t++) {
      dPr[s * L + t] = dotAt(SA, s * N, dy, t * N, N);
      dQr[s * L + t] = dotAt(c.v, s * N, dy, t * N, N);
      if (t > s) {
        dP[s * L + t] = dotAt(SA, s * N, dM, t * N, N);
        dQ[s * L + t] = dotAt(c.v, s * N, dM, t * N, N);
      }
    }
  }
  return { dPr, dQr, dP, dQ };
}

/**
 * dR̃, dA', dB̂, dK̂ per token through r̃, a', b̂, k̂ into `g` (dr, dalpha, dbeta, dk); returns
 * dL/dlog γ_t per (t, j) before the suffix sums that give dL/dlog d_u.
 */
function tokenGrads(
  c: Chunk,
  N: number,
  f: Record<"S0" | "SA" | "dy" | "dX" | "dM", Float64Array> & { at: (t: number) => number },
  m: MatrixGrads,
  g: WkvGrads,
): Float64Array {
  const { L, G } = c, { S0, SA, dy, dX, dM } = f, { dPr, dQr, dP, dQ } = m;
  const e = new Float64Array(L * N);
  for (let t = 0; t < L; t++) {
    const o = f.at(t);
    for (let j = 0; j < N; j++) {
      let dr = 0, db = 0, dk = 0, da = 0;
      for (let i = 0; i < N; i++) {
        dr += S0[i * N + j] * dy[t * N + i];
        da += S0[i * N + j] * dM[t * N + i];
        db += dX[i * N + j] * SA[t * N + i];
        dk += dX[i * N + j] * c.v[t * N + i];
      }
      for (let s = 0; s <= t; s++) {
        dr += c.bh[s * N + j] * dPr[s * L + t] + c.kh[s * N + j] * dQr[s * L + t];
        if (s < t) da += c.bh[s * N + j] * dP[s * L + t] + c.kh[s * N + j] * dQ[s * L + t];
      }
      for (let u = t; u < L; u++) {
        db += c.rt[u * N + j] * dPr[t * L + u];
        dk += c.rt[u * N + j] * dQr[t * L + u];
        if (u > t) {
          db += c.ap[u * N + j] * dP[t * L + u];
          dk += c.ap[u * N + j] * dQ[t * L + u];
        }
      }
      const tj = t * N + j, gt = G[(t + 1) * N + j];
      g.dr[o + j] += dr * gt;
      g.dalpha[o + j] += da * G[t * N + j];
      g.dbeta[o + j] += db / gt;
      g.dk[o + j] += dk / gt;
      e[tj] += dr * c.rt[tj] - db * c.bh[tj] - dk * c.kh[tj];
      if (t > 0) e[tj - N] += da * c.ap[tj]; // a'_t carries γ_{t−1}
    }
  }
  return e;
}
