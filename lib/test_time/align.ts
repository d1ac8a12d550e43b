/**
 * Test-time steps that the plain state-tuning loop cannot take, on the GPU backward:
 *
 * - **KL to a guide's top-k distribution.** The GPU loss is the mean cross-entropy over
 *   positions whose mask is non-zero (the mask is a selector, not a weight), so a soft target
 *   is expanded into R copies of the sequence whose targets at each position are the guide's
 *   tokens at the stratified quantiles (r + ½)/R of its renormalised top-k distribution q. The
 *   mean loss over the copies is `mean_t H(q̃_t, p_t)` with q̃ = q rounded to multiples of 1/R,
 *   whose gradient is that of `mean_t KL(q̃_t ‖ p_t)`.
 * - **REINFORCE.** Per-sequence weights (advantages, possibly negative) are not a GPU loss
 *   either, so the backward runs once on the B samples with an all-ones mask and the per-sequence
 *   gradients dL/dS0[b] (which the backward keeps) are combined on the CPU:
 *   `g = (count / B) Σ_b A_b dL/dS0[b]` is the gradient of `−(1/B) Σ_b A_b log π(y_b)`.
 *
 * The update is Adam on the CPU with the GPU kernel's defaults (β = 0.9, 0.99, ε = 1e-8, global
 * norm clipped to `clip`), so a step here matches a `tuneState` step.
 *
 * @module
 */
import { createStorage, readF32, writeStorage } from "../gpu/buffers.ts";
import { Recorder } from "../gpu/recorder.ts";
import type { GpuModel } from "../model/gpu_model.ts";
import { GpuBackward } from "../model/gpu_backward.ts";
import type { TopLogprobs } from "./guide.ts";

/** B padded sequences for the backward: inputs, next-token targets, 0/1 mask, each (B, T). */
export interface AlignRows {
  B: number;
  T: number;
  tokens: Uint32Array;
  targets: Uint32Array;
  mask: Float32Array;
}

/**
 * Teacher-forced rows: one per sequence `ids`, counting the targets at `ids[from…]`.
 *
 * @param seqs token ids of each sequence (inputs are ids[0..n−1), targets ids[1..n))
 * @param from per sequence, the index of the first target token that counts
 */
export function teacherRows(seqs: number[][], from: number[]): AlignRows {
  const B = seqs.length, T = Math.max(...seqs.map((s) => s.length - 1));
  if (!(T >= 1)) throw new RangeError("teacherRows: every sequence needs at least 2 tokens");
  const tokens = new Uint32Array(B * T), targets = new Uint32Array(B * T);
  const mask = new Float32Array(B * T);
  seqs.forEach((s, b) => {
    for (let t = 0; t + 1 < s.length; t++) {
      tokens[b * T + t] = s[t];
      targets[b * T + t] = s[t + 1];
      mask[b * T + t] = t + 1 >= from[b] ? 1 : 0;
    }
  });
  return { B, T, tokens, targets, mask };
}

/**
 * The KL rows of a guide continuation: R copies of `prompt ++ guide`, whose target at the
 * position predicting guide token i is the stratified quantile (r + ½)/R of `top[i]`
 * (renormalised; a position without alternatives keeps the guide's token).
 *
 * @param prompt the student's prompt ids (starting with 0)
 * @param guide the guide's tokens (student vocabulary)
 * @param top per guide token, the top-k log-probabilities it was drawn from
 * @param R copies (the resolution of the target distribution)
 * @example
 * ```ts
 * import { klRows } from "./align.ts";
 * const rows = klRows([0, 5], [7], [{ ids: [7, 9], logprobs: [Math.log(0.75), Math.log(0.25)] }], 4);
 * console.assert(rows.B === 4 && [...rows.targets].join() === "5,7,5,7,5,7,5,9");
 * ```
 */
export function klRows(
  prompt: number[],
  guide: number[],
  top: TopLogprobs[],
  R: number,
): AlignRows {
  const seq = [...prompt, ...guide];
  const base = teacherRows(Array.from({ length: R }, () => seq), Array(R).fill(prompt.length));
  const T = base.T;
  guide.forEach((g, i) => {
    const t = prompt.length - 1 + i; // input position predicting guide token i
    const q = top[i];
    const w = q && q.ids.length ? q.logprobs.map(Math.exp) : [1];
    const ids = q && q.ids.length ? q.ids : [g];
    const z = w.reduce((s, x) => s + x, 0);
    for (let r = 0; r < R; r++) {
      const u = ((r + 0.5) / R) * z;
      let acc = 0, k = 0;
      while (k < ids.length - 1 && acc + w[k] < u) acc += w[k++];
      base.targets[r * T + t] = ids[k];
    }
  });
  return base;
}

/** Adam on the CPU with the GPU kernel's defaults and global-norm clipping. */
export class CpuAdam {
  #m: Float32Array;
  #v: Float32Array;
  #t = 0;
  constructor(
    n: number,
    readonly clip = 1,
    readonly beta1 = 0.9,
    readonly beta2 = 0.99,
    readonly eps = 1e-8,
  ) {
    this.#m = new Float32Array(n);
    this.#v = new Float32Array(n);
  }

  /**
   * One step of `param` (in place) against `grad`.
   *
   * @returns the gradient's global norm before clipping
   */
  step(param: Float32Array, grad: Float32Array, lr: number): number {
    let sq = 0;
    for (let i = 0; i < grad.length; i++) sq += grad[i] * grad[i];
    const norm = Math.sqrt(sq);
    const scale = this.clip > 0 && norm > this.clip ? this.clip / norm : 1;
    const t = ++this.#t, b1 = this.beta1, b2 = this.beta2;
    const c1 = 1 - b1 ** t, c2 = 1 - b2 ** t;
    for (let i = 0; i < param.length; i++) {
      const g = grad[i] * scale;
      this.#m[i] = b1 * this.#m[i] + (1 - b1) * g;
      this.#v[i] = b2 * this.#v[i] + (1 - b2) * g * g;
      param[i] -= lr * (this.#m[i] / c1) / (Math.sqrt(this.#v[i] / c2) + this.eps);
    }
    return norm;
  }
}

/** Loss and gradients of rows from a shared S0 on the GPU backward (one per model). */
export class StateGrad {
  private constructor(readonly model: GpuModel, private readonly bwd: GpuBackward) {}

  /** Compile the backward for `model`. */
  static async create(model: GpuModel): Promise<StateGrad> {
    return new StateGrad(model, await GpuBackward.create(model));
  }

  /** Elements of S0: L·H·N·N. */
  get size(): number {
    const c = this.model.config;
    return c.nLayer * c.nHead * c.headSize * c.headSize;
  }

  /**
   * The mean masked cross-entropy of `rows` from `s0` and its gradient: summed over the batch
   * (`grad`, (L, H, N, N)) or, with `perSequence`, per row (`grad`, (L, B, H, N, N)).
   */
  async lossAndGrad(
    s0: Float32Array,
    rows: AlignRows,
    perSequence = false,
  ): Promise<{ loss: number; count: number; grad: Float32Array }> {
    const gpu = this.model.gpu, n = this.size;
    const buf = (label: string, bytes: number) => createStorage(gpu, `tts.${label}`, bytes);
    const s0Buf = buf("S0", n * 4);
    const rowsBytes = Math.max(rows.B * rows.T, 64) * 4;
    const tok = buf("tokens", rowsBytes), tgt = buf("targets", rowsBytes);
    const msk = buf("mask", rowsBytes);
    try {
      writeStorage(gpu, s0Buf, s0);
      writeStorage(gpu, tok, rows.tokens);
      writeStorage(gpu, tgt, rows.targets);
      writeStorage(gpu, msk, rows.mask);
      const rec = new Recorder(gpu, "tts.backward");
      const out = this.bwd.record(rec, {
        B: rows.B,
        T: rows.T,
        tokens: tok,
        targets: tgt,
        mask: msk,
        init: { kind: "shared", wkv: s0Buf },
      });
      rec.submit();
      const stats = await readF32(gpu, out.stats, 2);
      const grad = perSequence
        ? await readF32(gpu, out.dS0, n * rows.B)
        : await readF32(gpu, out.dS0Sum, n);
      return { loss: stats[0], count: stats[1], grad };
    } finally {
      for (const b of [s0Buf, tok, tgt, msk]) b.destroy();
    }
  }

  /** Free the backward's buffers. */
  destroy(): void {
    this.bwd.destroy();
  }
}

/**
 * The REINFORCE gradient `(count / B) Σ_b A_b g_b` from per-sequence gradients (L, B, S) where
 * S = H·N·N, laid out as (L, S) like S0.
 */
export function combineAdvantages(
  perSeq: Float32Array,
  adv: number[],
  count: number,
  L: number,
): Float32Array {
  const B = adv.length, S = perSeq.length / (L * B);
  const out = new Float32Array(L * S);
  for (let l = 0; l < L; l++) {
    for (let b = 0; b < B; b++) {
      const w = (adv[b] * count) / B;
      if (w === 0) continue;
      const src = (l * B + b) * S, dst = l * S;
      for (let i = 0; i < S; i++) out[dst + i] += w * perSeq[src + i];
    }
  }
  return out;
}
