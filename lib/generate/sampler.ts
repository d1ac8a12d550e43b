/**
 * Token sampling: options (zod schema, defaults), repetition penalties, and one draw from a
 * logits vector. Order: penalties → temperature → top-k → top-p → draw.
 *
 * Defaults follow the `rwkv` pip package's `PIPELINE_ARGS` (temperature 1, top-p 0.85, top-k
 * off, presence and frequency penalties 0.2, penalty decay 0.996), which suit RWKV World
 * models for free text. Use `temperature: 0` for greedy decoding (evaluation, GSM8K).
 *
 * @module
 */
import { z } from "zod";
import type { Rng } from "../util/rng.ts";

/** A number schema that must satisfy `ok`; the message quotes the bad value. */
function ranged(name: string, expected: string, ok: (v: number) => boolean) {
  return z.number({ error: (iss) => `${name} must be a number, got ${JSON.stringify(iss.input)}` })
    .refine(ok, { error: (iss) => `${name} must be ${expected}, got ${iss.input}` });
}

/** Sampling options with every default filled in (see {@linkcode SamplingOptionsSchema}). */
export interface SamplingOptions {
  /** ≥ 0; logits are divided by it; 0 = greedy. Default 1. */
  temperature: number;
  /** In (0, 1]; nucleus mass; 1 = off. Default 0.85. */
  topP: number;
  /** Integer ≥ 0; keep this many most likely tokens; 0 = off. Default 0. */
  topK: number;
  /** Subtracted once from the logit of every token already generated. Default 0.2. */
  presencePenalty: number;
  /** Times the token's decayed count, subtracted from its logit. Default 0.2. */
  frequencyPenalty: number;
  /** In [0, 1]; counts are multiplied by it at every step. Default 0.996. */
  penaltyDecay: number;
  /** Integer in [0, 2^32); absent = a random seed (reported in the result). */
  seed?: number;
  /** Integer ≥ 0; the most tokens to generate. Default 256. */
  maxTokens: number;
  /** Non-empty strings that end generation (not included in the text). Default `[]`. */
  stop: string[];
}

/** Sampling options as a caller writes them: every field optional. */
export type SamplingOptionsInput = Partial<SamplingOptions>;

const SAMPLING_KEYS = [
  "temperature",
  "topP",
  "topK",
  "presencePenalty",
  "frequencyPenalty",
  "penaltyDecay",
  "seed",
  "maxTokens",
  "stop",
];

/**
 * Sampling and stopping options. Every field has a default ({@linkcode DEFAULT_SAMPLING}).
 *
 * - `temperature` ≥ 0 (default 1): logits are divided by it; 0 means greedy (argmax).
 * - `topP` in (0, 1] (default 0.85): keep the smallest set of most likely tokens whose
 *   probability reaches `topP` (tokens tied with the last one kept stay too); 1 = off.
 * - `topK` integer ≥ 0 (default 0 = off): keep the `topK` most likely tokens (ties kept).
 * - `presencePenalty` (default 0.2) and `frequencyPenalty` (default 0.2): subtracted from the
 *   logit of every token already generated, as `presence + count · frequency`, where `count`
 *   decays by `penaltyDecay` (default 0.996, in [0, 1]) at every step (RWKV's usual scheme).
 * - `seed` (optional integer in [0, 2^32)): fixes the draws; without it a random seed is used
 *   and reported.
 * - `maxTokens` integer ≥ 0 (default 256): the most tokens to generate.
 * - `stop` (default `[]`): non-empty strings that end generation (not included in the text).
 *
 * @example
 * ```ts
 * import { SamplingOptionsSchema } from "./sampler.ts";
 * const o = SamplingOptionsSchema.parse({ temperature: 0.7 });
 * console.assert(o.topP === 0.85 && o.temperature === 0.7);
 * ```
 */
export const SamplingOptionsSchema: z.ZodType<SamplingOptions, SamplingOptionsInput> = z.object({
  temperature: ranged("temperature", "≥ 0 (0 = greedy)", (v) => v >= 0).default(1),
  topP: ranged("topP", "in (0, 1]", (v) => v > 0 && v <= 1).default(0.85),
  topK: ranged("topK", "an integer ≥ 0 (0 = off)", (v) => Number.isInteger(v) && v >= 0)
    .default(0),
  presencePenalty: ranged("presencePenalty", "finite", Number.isFinite).default(0.2),
  frequencyPenalty: ranged("frequencyPenalty", "finite", Number.isFinite).default(0.2),
  penaltyDecay: ranged("penaltyDecay", "in [0, 1]", (v) => v >= 0 && v <= 1).default(0.996),
  seed: ranged(
    "seed",
    "an integer in [0, 2^32)",
    (v) => Number.isInteger(v) && v >= 0 && v < 2 ** 32,
  ).optional(),
  maxTokens: ranged("maxTokens", "an integer ≥ 0", (v) => Number.isInteger(v) && v >= 0)
    .default(256),
  stop: z.array(
    z.string().refine((s) => s.length > 0, { error: "stop strings must not be empty" }),
    { error: (iss) => `stop must be an array of strings, got ${JSON.stringify(iss.input)}` },
  ).default([]),
}).strict();

/** The defaults: temperature 1, topP 0.85, topK 0, penalties 0.2/0.2, decay 0.996, 256 tokens. */
export const DEFAULT_SAMPLING: SamplingOptions = SamplingOptionsSchema.parse({});

/**
 * Validate options and fill in defaults.
 *
 * @param input options as written by a caller (unknown keys are rejected).
 * @returns the full options.
 * @throws {RangeError} listing every problem, e.g. `topP must be in (0, 1], got 1.5`.
 * @example
 * ```ts
 * import { parseSamplingOptions } from "./sampler.ts";
 * try {
 *   parseSamplingOptions({ topP: 1.5 });
 * } catch (e) {
 *   console.assert((e as Error).message.includes("topP must be in (0, 1], got 1.5"));
 * }
 * ```
 */
export function parseSamplingOptions(input: SamplingOptionsInput = {}): SamplingOptions {
  const r = SamplingOptionsSchema.safeParse(input);
  if (r.success) return r.data;
  const msgs = r.error.issues.map((i) =>
    i.code === "unrecognized_keys"
      ? `unknown sampling option(s) ${i.keys.join(", ")}; expected ${SAMPLING_KEYS.join(", ")}`
      : i.message
  );
  throw new RangeError(`invalid sampling options: ${msgs.join("; ")}`);
}

/** Token → decayed occurrence count, for presence/frequency penalties. */
export type PenaltyCounts = Map<number, number> | Float32Array;

/**
 * Record a generated token in the penalty counts: every count decays by `decay`, then the
 * token's count grows by 1.
 *
 * @param counts the counts to update in place.
 * @param token the token just generated.
 * @param decay the per-step decay (`penaltyDecay`).
 * @example
 * ```ts
 * import { recordToken } from "./sampler.ts";
 * const counts = new Map<number, number>();
 * recordToken(counts, 5, 0.5);
 * recordToken(counts, 5, 0.5);
 * console.assert(counts.get(5) === 1.5);
 * ```
 */
export function recordToken(counts: PenaltyCounts, token: number, decay: number): void {
  if (counts instanceof Map) {
    for (const [k, v] of counts) counts.set(k, v * decay);
    counts.set(token, (counts.get(token) ?? 0) + 1);
  } else {
    for (let i = 0; i < counts.length; i++) counts[i] *= decay;
    counts[token] += 1;
  }
}

/** The options {@linkcode sampleToken} reads. */
export type SampleOptions = Pick<
  SamplingOptions,
  "temperature" | "topP" | "topK" | "presencePenalty" | "frequencyPenalty"
>;

/**
 * Draw one token from logits: penalties → temperature → top-k → top-p → draw. Greedy when
 * `temperature` is 0 (argmax, lowest id on ties; draws nothing from `rng`); otherwise exactly
 * one `rng.next()` per call, so a seeded `Rng` makes the sequence reproducible.
 *
 * @param logits scores for ids 0…V−1 (not modified; `-Infinity` bans a token).
 * @param opts sampling options (already validated, e.g. by {@linkcode parseSamplingOptions}).
 * @param rng the random stream.
 * @param penalties decayed counts of generated tokens (see {@linkcode recordToken}).
 * @returns the chosen token id.
 * @throws {RangeError} when a logit is NaN or every token is banned.
 * @example
 * ```ts
 * import { DEFAULT_SAMPLING, sampleToken } from "./sampler.ts";
 * import { Rng } from "../util/rng.ts";
 * const logits = new Float32Array([0, 3, 1]);
 * const t = sampleToken(logits, { ...DEFAULT_SAMPLING, temperature: 0 }, new Rng(1));
 * console.assert(t === 1);
 * ```
 */
export function sampleToken(
  logits: Float32Array,
  opts: SampleOptions,
  rng: Rng,
  penalties?: PenaltyCounts,
): number {
  const V = logits.length;
  const [x, v] = scratch(V);
  let max = -Infinity, arg = -1;
  for (let i = 0; i < V; i++) {
    const v = logits[i];
    if (Number.isNaN(v)) throw new RangeError(`logits[${i}] is NaN: the model output is broken`);
    x[i] = v;
  }
  if (penalties) applyPenalties(x, penalties, opts.presencePenalty, opts.frequencyPenalty);
  for (let i = 0; i < V; i++) if (x[i] > max) max = x[i], arg = i;
  if (arg < 0) throw new RangeError(`every one of the ${V} logits is -Infinity: nothing to sample`);
  if (opts.temperature === 0 || max === Infinity) return arg;

  // Unnormalised probabilities p = exp((x - max) / T); max maps to 1.
  const inv = 1 / opts.temperature;
  let total = 0;
  for (let i = 0; i < V; i++) total += x[i] = Math.exp((x[i] - max) * inv);
  if (opts.topK > 0 && opts.topK < V) total = keepTopK(x, opts.topK, v);
  if (opts.topP < 1) total = keepTopP(x, opts.topP, total, v);

  const r = rng.next() * total;
  let acc = 0, last = arg;
  for (let i = 0; i < V; i++) {
    if (x[i] <= 0) continue;
    acc += x[i];
    last = i;
    if (acc > r) return i;
  }
  return last; // rounding: r landed at the very end
}

function applyPenalties(x: Float64Array, counts: PenaltyCounts, presence: number, freq: number) {
  if (counts instanceof Map) {
    for (const [id, c] of counts) {
      if (c > 0 && id >= 0 && id < x.length) x[id] -= presence + c * freq;
    }
  } else {
    const n = Math.min(counts.length, x.length);
    for (let i = 0; i < n; i++) if (counts[i] > 0) x[i] -= presence + counts[i] * freq;
  }
}

/** Scratch buffers reused across calls (sampling is synchronous, so one set suffices). */
let work = new Float64Array(0), vals = new Float64Array(0);
function scratch(n: number): [Float64Array, Float64Array] {
  if (work.length < n) work = new Float64Array(n), vals = new Float64Array(n);
  return [work.subarray(0, n), vals];
}

/**
 * The largest value `c` among `v[0, n)` such that the elements ≥ `c` sum to at least `target`:
 * the top-p cutoff. Quickselect with a three-way partition, expected O(n); reorders `v`.
 */
function selectCutoff(v: Float64Array, n: number, target: number): number {
  let lo = 0, hi = n, acc = 0, last = Infinity;
  while (lo < hi) {
    const pv = v[(lo + hi) >>> 1];
    let g = lo, i = lo, e = hi, massG = 0, massE = 0;
    while (i < e) { // [lo, g) > pv, [g, i) == pv, [e, hi) < pv
      const x = v[i];
      if (x > pv) {
        v[i] = v[g], v[g++] = x, i++;
        massG += x;
      } else if (x < pv) {
        v[i] = v[--e], v[e] = x;
      } else {
        i++;
        massE += x;
      }
    }
    if (acc + massG >= target) hi = g;
    else if (acc + massG + massE >= target) return pv;
    else acc += massG + massE, last = pv, lo = e;
  }
  return last; // rounding: the whole list was needed
}

/**
 * Zero every probability below the k-th largest (ties kept); returns the kept total. The k-th
 * largest comes from a size-k min-heap in `h`: one pass, most values rejected at the root.
 */
function keepTopK(p: Float64Array, k: number, h: Float64Array): number {
  let n = 0;
  for (let i = 0; i < p.length; i++) {
    const x = p[i];
    if (x <= 0 || (n === k && x <= h[0])) continue;
    let j: number;
    if (n < k) { // sift up
      j = n++;
      while (j > 0 && h[(j - 1) >> 1] > x) h[j] = h[(j - 1) >> 1], j = (j - 1) >> 1;
    } else { // replace the root, sift down
      j = 0;
      while (true) {
        let c = 2 * j + 1;
        if (c >= n) break;
        if (c + 1 < n && h[c + 1] < h[c]) c++;
        if (h[c] >= x) break;
        h[j] = h[c], j = c;
      }
    }
    h[j] = x;
  }
  const kth = n < k ? 0 : h[0];
  let total = 0;
  for (let i = 0; i < p.length; i++) {
    if (p[i] < kth) p[i] = 0;
    else total += p[i];
  }
  return total;
}

/**
 * Zero every probability below the nucleus cutoff: the smallest probability among the most
 * likely tokens whose mass first reaches `topP · total` (ties with it kept). Only tokens above
 * `(1 − topP) · total / V` can be in the nucleus (the rest together hold less than
 * `1 − topP` of the mass), so just those are searched.
 */
function keepTopP(p: Float64Array, topP: number, total: number, v: Float64Array): number {
  const floor = ((1 - topP) * total) / p.length;
  let n = 0;
  for (let i = 0; i < p.length; i++) if (p[i] > 0 && p[i] >= floor) v[n++] = p[i];
  const cutoff = selectCutoff(v, n, topP * total);
  let kept = 0;
  for (let i = 0; i < p.length; i++) {
    if (p[i] < cutoff) p[i] = 0;
    else kept += p[i];
  }
  return kept;
}
