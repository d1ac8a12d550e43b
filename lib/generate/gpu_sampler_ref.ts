/**
 * CPU twin of `shaders/sample.wgsl`: the same f32 operations in the same order (chunking over
 * 256 invocations, radix rounds, column sums, the draw's scan), so it reproduces the GPU's
 * draws token for token. The one operation that cannot match bit for bit is `exp`: WGSL allows
 * it a few ULP of error, and here it is `Math.exp` rounded to f32. A decision can therefore
 * flip only when it was within about 1e-6 of its boundary; {@link sampleRowRef} reports how
 * close each row came as `margin`, so tests can tell such near-ties from real disagreements.
 *
 * The maths (see the shader header): penalties → max → p = exp((x − M)/T) (0 below −87) →
 * top-k and top-p cutoffs by radix search on the bits of p → inverse-CDF draw with
 * `u = (pcg3d(seed, step, row).x >> 8) / 2^24`.
 *
 * @module
 */
import type { SampleSettings } from "../kernels/sample.ts";

const f = Math.fround;
const NB = 8, ROUNDS = 10, MIN_S = -87;
const bits = new Uint32Array(1), flt = new Float32Array(bits.buffer);

/** The u32 bit pattern of an f32 value. */
function key(x: number): number {
  flt[0] = x;
  return bits[0];
}

/**
 * The pcg3d hash (Jarzynski & Olano, JCGT 2020) on three u32 words, as the shader computes it.
 *
 * @returns the three hashed words.
 * @example
 * ```ts
 * import { pcg3d } from "./gpu_sampler_ref.ts";
 * console.assert(pcg3d(1, 2, 3)[0] !== pcg3d(1, 2, 4)[0]);
 * ```
 */
export function pcg3d(a: number, b: number, c: number): [number, number, number] {
  let x = (Math.imul(a, 1664525) + 1013904223) >>> 0;
  let y = (Math.imul(b, 1664525) + 1013904223) >>> 0;
  let z = (Math.imul(c, 1664525) + 1013904223) >>> 0;
  x = (x + Math.imul(y, z)) >>> 0;
  y = (y + Math.imul(z, x)) >>> 0;
  z = (z + Math.imul(x, y)) >>> 0;
  x = (x ^ (x >>> 16)) >>> 0;
  y = (y ^ (y >>> 16)) >>> 0;
  z = (z ^ (z >>> 16)) >>> 0;
  x = (x + Math.imul(y, z)) >>> 0;
  y = (y + Math.imul(z, x)) >>> 0;
  z = (z + Math.imul(x, y)) >>> 0;
  return [x, y, z];
}

/**
 * The uniform number of row `row` at step `step`: 24 random bits in [0, 1).
 *
 * @example
 * ```ts
 * import { drawUniform } from "./gpu_sampler_ref.ts";
 * const u = drawUniform(42, 0, 0);
 * console.assert(u >= 0 && u < 1);
 * ```
 */
export function drawUniform(seed: number, step: number, row: number): number {
  return (pcg3d(seed >>> 0, step >>> 0, row >>> 0)[0] >>> 8) / 16777216;
}

/** What {@link sampleRowRef} returns. */
export interface RefDraw {
  /** The drawn id, or 0xffffffff (NaN/+inf logit) / 0xfffffffe (every id banned). */
  token: number;
  /** Number of ids left after top-k and top-p (1 when greedy, 0 on error). */
  kept: number;
  /**
   * How close the closest decision came to flipping, relative (f64 from the f32 values): the
   * gap between the two best logits when greedy; otherwise the smallest of the relative gap
   * between the probabilities either side of the top-k and top-p cutoffs, the top-p mass's
   * distance to its target over the kept mass, and the draw's distance to the edges of its
   * token over the total. Infinity when nothing was close.
   */
  margin: number;
}

/** Chunk [n0, n1) of invocation li of WG. */
function chunk(V: number, WG: number, li: number): [number, number] {
  const ch = Math.ceil(V / WG), n0 = Math.min(li * ch, V);
  return [n0, Math.min(n0 + ch, V)];
}

/** The shader's `search`: largest key c ≥ lo with Σ_{key ≥ c} w ≥ target. */
function search(p: Float32Array, WG: number, useMass: boolean, lo: number, target: number): number {
  const V = p.length, part = new Float32Array(WG * NB), col = new Float32Array(NB);
  let prefix = 0, above = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const shift = 27 - 3 * r, hi = shift + 3;
    part.fill(0);
    for (let li = 0; li < WG; li++) {
      const [n0, n1] = chunk(V, WG, li);
      for (let i = n0; i < n1; i++) {
        const k = key(p[i]);
        if (k >= lo && k >>> hi === prefix >>> hi) {
          const d = (k >>> shift) & (NB - 1);
          part[li * NB + d] = f(part[li * NB + d] + (useMass ? p[i] : 1));
        }
      }
    }
    for (let d = 0; d < NB; d++) {
      let s = 0;
      for (let t = 0; t < WG; t++) s = f(s + part[t * NB + d]);
      col[d] = s;
    }
    let cum = above, pick = -1, low = 0, aboveLow = above;
    for (let d = NB - 1; d >= 0; d--) {
      const c = col[d];
      if (c > 0) {
        low = d, aboveLow = cum;
        if (pick < 0 && f(cum + c) >= target) pick = d, above = cum;
      }
      cum = f(cum + c);
    }
    if (pick < 0) pick = low, above = aboveLow;
    prefix = (prefix | (pick << shift)) >>> 0;
  }
  return prefix;
}

/** Chunk sums of p over key ≥ lo, in invocation order. */
function chunkMasses(p: Float32Array, WG: number, lo: number): Float32Array {
  const out = new Float32Array(WG);
  for (let li = 0; li < WG; li++) {
    const [n0, n1] = chunk(p.length, WG, li);
    let s = 0;
    for (let i = n0; i < n1; i++) if (key(p[i]) >= lo) s = f(s + p[i]);
    out[li] = s;
  }
  return out;
}

function sumF32(a: Float32Array): number {
  let t = 0;
  for (let i = 0; i < a.length; i++) t = f(t + a[i]);
  return t;
}

/** The shader's `draw`: inverse CDF over ids with key ≥ lo. */
function draw(p: Float32Array, WG: number, lo: number, u: number): { token: number; r: number } {
  const parts = chunkMasses(p, WG, lo);
  const r = f(u * sumF32(parts));
  let cum = 0, j = -1, start = 0, lastJ = 0, lastStart = 0;
  for (let l = 0; l < WG; l++) {
    const s = parts[l];
    if (s > 0) {
      lastJ = l, lastStart = cum;
      if (j < 0 && f(cum + s) > r) j = l, start = cum;
    }
    cum = f(cum + s);
  }
  if (j < 0) j = lastJ, start = lastStart;
  const [n0, n1] = chunk(p.length, WG, j);
  let acc = start, last = n0;
  for (let i = n0; i < n1; i++) {
    if (key(p[i]) < lo) continue;
    acc = f(acc + p[i]);
    last = i;
    if (acc > r) return { token: i, r };
  }
  return { token: last, r };
}

/**
 * Draw one token exactly as `shaders/sample.wgsl` does for row `row` at step `step`, and update
 * `counts` as the shader does (only when a penalty is non-zero).
 *
 * @param logits the row's V logits (f32 values; −Infinity bans an id).
 * @param counts the row's V decayed counts, updated in place (may be omitted without penalties).
 * @param s the sampling settings.
 * @param at the step and row that key the random draw, `limit` (ids ≥ it are banned) and `wg`,
 *   the kernel's invocations per workgroup (default 256; see `SampleKernel.wg`).
 * @returns the token, the number of ids kept, and the decision margin.
 * @example
 * ```ts
 * import { sampleRowRef } from "./gpu_sampler_ref.ts";
 * const s = { temperature: 0, topP: 1, topK: 0, presencePenalty: 0, frequencyPenalty: 0,
 *   penaltyDecay: 1, seed: 1 };
 * console.assert(sampleRowRef(new Float32Array([0, 2, 1]), undefined, s, { step: 0, row: 0 })
 *   .token === 1);
 * ```
 */
export function sampleRowRef(
  logits: ArrayLike<number>,
  counts: Float32Array | undefined,
  s: SampleSettings,
  at: { step: number; row: number; limit?: number; wg?: number },
): RefDraw {
  const V = logits.length, limit = at.limit ?? V, WG = at.wg ?? 256;
  const penalties = s.presencePenalty !== 0 || s.frequencyPenalty !== 0;
  if (penalties && (!counts || counts.length !== V)) {
    throw new RangeError(`sampleRowRef: penalties need counts of length V = ${V}`);
  }
  const pres = f(s.presencePenalty), freq = f(s.frequencyPenalty), invT = f(1 / s.temperature);
  const greedy = s.temperature === 0 || !Number.isFinite(invT);
  const x = new Float32Array(V), ok = new Uint8Array(V);
  let M = 0, best = -1, bad = false;
  for (let i = 0; i < V; i++) {
    const l = f(logits[i]);
    if (i >= limit || l === -Infinity) continue;
    if (!Number.isFinite(l)) {
      bad = true;
      continue;
    }
    const c = penalties ? counts![i] : 0;
    x[i] = c > 0 ? f(l - f(pres + f(c * freq))) : l;
    ok[i] = 1;
    if (best < 0 || x[i] > M) M = x[i], best = i;
  }
  if (bad) return { token: 0xffffffff, kept: 0, margin: Infinity };
  if (best < 0) return { token: 0xfffffffe, kept: 0, margin: Infinity };
  let out: RefDraw;
  if (greedy) {
    let second = -Infinity;
    for (let i = 0; i < V; i++) if (ok[i] && i !== best && x[i] > second) second = x[i];
    const gap = second === M ? Infinity : (M - second) / Math.max(1, Math.abs(M));
    out = { token: best, kept: 1, margin: gap };
  } else {
    const p = new Float32Array(V);
    for (let i = 0; i < V; i++) {
      const sc = f(f(x[i] - M) * invT);
      p[i] = ok[i] && sc >= MIN_S ? f(Math.exp(sc)) : 0;
    }
    let lo = 1;
    if (s.topK > 0) lo = search(p, WG, false, lo, f(s.topK));
    if (f(s.topP) < 1) {
      const target = f(f(s.topP) * sumF32(chunkMasses(p, WG, lo)));
      lo = search(p, WG, true, lo, target);
    }
    const { token, r } = draw(p, WG, lo, drawUniform(s.seed, at.step, at.row));
    let kept = 0;
    for (let i = 0; i < V; i++) if (key(p[i]) >= lo) kept++;
    out = { token, kept, margin: margin(p, s.topK, f(s.topP), token, r) };
  }
  if (penalties) {
    const decay = f(s.penaltyDecay);
    for (let i = 0; i < V; i++) counts![i] = f(counts![i] * decay);
    counts![out.token] = f(counts![out.token] + 1);
  }
  return out;
}

/** The decision margin of a sampled row, from a float64 sort of its p (see RefDraw). */
function margin(p: Float32Array, topK: number, topP: number, token: number, r: number): number {
  const ids = [...p.keys()].filter((i) => p[i] > 0).sort((a, b) => p[b] - p[a] || a - b);
  let m = Infinity;
  const relGap = (a: number, b: number) => (a === b ? Infinity : (a - b) / a);
  let n = ids.length;
  if (topK > 0 && topK < n) {
    m = Math.min(m, relGap(p[ids[topK - 1]], p[ids[topK]]));
    while (topK < n && p[ids[topK]] === p[ids[topK - 1]]) topK++;
    n = topK;
  }
  if (topP < 1) {
    let kept = 0;
    for (let i = 0; i < n; i++) kept += p[ids[i]];
    const target = topP * kept;
    let cum = 0, c = 0;
    while (c < n && cum + p[ids[c]] < target) cum += p[ids[c++]];
    if (c < n) {
      m = Math.min(m, Math.abs(cum + p[ids[c]] - target) / kept, Math.abs(target - cum) / kept);
      if (c + 1 < n) m = Math.min(m, relGap(p[ids[c]], p[ids[c + 1]]));
      while (c + 1 < n && p[ids[c + 1]] === p[ids[c]]) c++;
      n = c + 1;
    }
  }
  const cut = p[ids[n - 1]];
  let total = 0, before = 0;
  for (let i = 0; i < p.length; i++) {
    if (p[i] < cut || p[i] === 0) continue;
    if (i < token) before += p[i];
    total += p[i];
  }
  const after = before + p[token];
  return Math.min(m, Math.abs(r - before) / total, Math.abs(after - r) / total);
}
