/**
 * Host wrapper of `shaders/sample.wgsl`: draw one token per row of logits on the GPU
 * (penalties → temperature → top-k → top-p → draw, the order of `lib/generate/sampler.ts`) and
 * write it into a token buffer, where the next recorded forward reads it. Generation steps
 * then need no CPU round trip: record `forward, sample, forward, sample, …` into one submit and
 * read the written tokens back once.
 *
 * Randomness is counter-based: row b at step t uses `pcg3d(seed, t, b)` (Jarzynski & Olano,
 * "Hash Functions for GPU Rendering", JCGT 2020), so a draw depends only on (seed, step, row)
 * and never on how the steps were grouped into submits. The CPU twin that reproduces the draws
 * is `lib/generate/gpu_sampler_ref.ts`.
 *
 * Cost per row and step (one workgroup of WG invocations, each owning V/WG contiguous ids):
 * greedy is one pass over the logits and 2 barrier rounds; sampling adds one pass for the
 * probabilities, 10 passes and 20 barrier rounds per top-k or top-p search (a radix select, 3
 * bits per round; top-p also sums the kept mass: 1 pass, 2 barriers), and 1 pass plus 3 barrier
 * rounds for the draw. With both filters: ≈ 24 passes over V/WG ids and ≈ 48 barrier rounds; no
 * subgroups. Reductions over the WG invocations are done in order by one invocation (that order
 * is what the CPU twin reproduces). WG is 256 on GPUs; on software adapters it is 64, because
 * llvmpipe runs this kernel ~10× slower per row with 256 (measured: 2–5 ms vs 0.2–0.3 ms per
 * row at V = 256, a cliff between 128 and 256).
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { isSoftwareAdapter } from "../gpu/software.ts";
import { getPipeline } from "../gpu/pipeline.ts";
import { f32bits, type Recorder } from "../gpu/recorder.ts";
import { splitGroups } from "../gpu/groups.ts";
import { checkDim, needElems } from "./common.ts";

/** Token written for a row whose logits hold NaN or +Infinity (the model output is broken). */
export const SAMPLE_ERR_NONFINITE = 0xffffffff;
/** Token written for a row where every id is banned (−Infinity or ≥ `limit`). */
export const SAMPLE_ERR_ALL_BANNED = 0xfffffffe;

/** Largest vocabulary the kernel supports (top-k counts stay exact in f32 far beyond it). */
export const SAMPLE_MAX_V = 1 << 20;

/**
 * The sampling settings of one step (validated by the caller, e.g. `parseSamplingOptions`): the
 * same fields as the CPU sampler's `SamplingOptions` (lib/generate/sampler.ts), with the seed
 * fixed (kept here so the kernel does not import the generation layer).
 */
export interface SampleSettings {
  /** ≥ 0; logits are divided by it; 0 = greedy */
  temperature: number;
  /** in (0, 1]; nucleus mass; 1 = off */
  topP: number;
  /** integer ≥ 0; keep this many most likely tokens; 0 = off */
  topK: number;
  /** subtracted once from the logit of every token already generated */
  presencePenalty: number;
  /** times the token's decayed count, subtracted from its logit */
  frequencyPenalty: number;
  /** in [0, 1]; counts are multiplied by it at every step */
  penaltyDecay: number;
  /** with the step and row, fixes the draw */
  seed: number;
}

/** Arguments of {@link SampleKernel.record}. */
export interface SampleArgs {
  /** rows (sequences) */
  B: number;
  /** logits per row */
  V: number;
  /** ids ≥ limit are never drawn (default V), e.g. the tokenizer's vocabulary size */
  limit?: number;
  /** (B, V) logits starting at element `logitsOff` */
  logits: GPUBuffer;
  /** element offset of row 0's logits (default 0) */
  logitsOff?: number;
  /** (B, V) scratch (overwritten) */
  probs: GPUBuffer;
  /** (B, V) decayed counts of drawn ids (zero at the start of a generation); read and updated */
  counts: GPUBuffer;
  /** u32 token buffer: row b's token is written at element `tokOff + b` */
  tokens: GPUBuffer;
  /** element offset of row 0's token in `tokens` */
  tokOff: number;
  /** the generation step (the RNG counter), integer in [0, 2^32) */
  step: number;
  /** the sampling settings, the same for every row */
  settings: SampleSettings;
}

/** Invocations per workgroup: 64 on software adapters (llvmpipe), else 256. */
export function sampleWorkgroupSize(gpu: Pick<Gpu, "isFallback" | "description">): number {
  return isSoftwareAdapter(gpu) ? 64 : 256;
}

/** The sampling pipeline; create once with {@link SampleKernel.create}. */
export class SampleKernel {
  private constructor(
    private readonly pipe: GPUComputePipeline,
    /** invocations per workgroup (the CPU twin needs it to reproduce the sums' order) */
    readonly wg: number,
  ) {}

  /**
   * Fetch (compile) the pipeline.
   *
   * @param wg invocations per workgroup, 64, 128 or 256 (default
   *   {@link sampleWorkgroupSize})
   * @example
   * ```ts ignore
   * const sample = await SampleKernel.create(gpu);
   * ```
   */
  static async create(gpu: Gpu, wg = sampleWorkgroupSize(gpu)): Promise<SampleKernel> {
    if (![64, 128, 256].includes(wg)) {
      throw new RangeError(`sample: wg = ${wg}; expected 64, 128 or 256`);
    }
    const pipe = await getPipeline(gpu, { shader: "sample", constants: { WG: wg } });
    return new SampleKernel(pipe, wg);
  }

  /**
   * Record one draw per row: `tokens[tokOff + b]` ← the token of row b (or
   * {@link SAMPLE_ERR_NONFINITE} / {@link SAMPLE_ERR_ALL_BANNED}), counts updated when a penalty
   * is non-zero (they are neither read nor written otherwise).
   *
   * @throws {RangeError} for bad shapes, short buffers or settings out of range
   */
  record(rec: Recorder, a: SampleArgs, name = "sample"): void {
    checkDim(name, "B", a.B);
    checkDim(name, "V", a.V);
    if (a.V > SAMPLE_MAX_V) {
      throw new RangeError(`${name}: V = ${a.V} exceeds the supported ${SAMPLE_MAX_V}`);
    }
    const limit = a.limit ?? a.V;
    if (!Number.isInteger(limit) || limit < 1 || limit > a.V) {
      throw new RangeError(`${name}: limit = ${limit}; expected an integer in [1, V = ${a.V}]`);
    }
    if (!Number.isInteger(a.step) || a.step < 0 || a.step >= 2 ** 32) {
      throw new RangeError(`${name}: step = ${a.step}; expected an integer in [0, 2^32)`);
    }
    const logitsOff = a.logitsOff ?? 0;
    needElems(name, "logits (B, V)", a.logits, logitsOff + a.B * a.V);
    needElems(name, "probs (B, V)", a.probs, a.B * a.V);
    needElems(name, "counts (B, V)", a.counts, a.B * a.V);
    needElems(name, "tokens", a.tokens, a.tokOff + a.B);
    const s = checkSettings(name, a.settings);
    const invT = Math.fround(1 / s.temperature);
    const greedy = s.temperature === 0 || !Number.isFinite(invT);
    const penalties = s.presencePenalty !== 0 || s.frequencyPenalty !== 0;
    const { groups: [gx, gy] } = splitGroups(a.B, {
      maxPerDim: rec.gpu.limits.maxComputeWorkgroupsPerDimension,
    });
    const params = [
      a.V,
      limit,
      a.B,
      gx,
      a.step,
      s.seed >>> 0,
      greedy ? 1 : 0,
      s.topK,
      f32bits(greedy ? 0 : invT),
      f32bits(s.topP),
      f32bits(s.presencePenalty),
      f32bits(s.frequencyPenalty),
      f32bits(s.penaltyDecay),
      logitsOff,
      a.tokOff,
      penalties ? 1 : 0,
    ];
    rec.dispatch(this.pipe, params, [a.logits, a.probs, a.counts, a.tokens], [gx, gy], name);
  }
}

/** Validate `s` (the kernel cannot report bad settings), naming the bad field. */
export function checkSettings(name: string, s: SampleSettings): SampleSettings {
  const bad = (field: string, v: number, want: string) =>
    new RangeError(`${name}: ${field} = ${v}; expected ${want}`);
  if (!(s.temperature >= 0) || !Number.isFinite(s.temperature)) {
    throw bad("temperature", s.temperature, "a finite number ≥ 0");
  }
  if (!(s.topP > 0 && s.topP <= 1)) throw bad("topP", s.topP, "a number in (0, 1]");
  if (!Number.isInteger(s.topK) || s.topK < 0 || s.topK >= 2 ** 32) {
    throw bad("topK", s.topK, "an integer ≥ 0");
  }
  if (!Number.isFinite(s.presencePenalty)) {
    throw bad("presencePenalty", s.presencePenalty, "a finite number");
  }
  if (!Number.isFinite(s.frequencyPenalty)) {
    throw bad("frequencyPenalty", s.frequencyPenalty, "a finite number");
  }
  if (!(s.penaltyDecay >= 0 && s.penaltyDecay <= 1)) {
    throw bad("penaltyDecay", s.penaltyDecay, "a number in [0, 1]");
  }
  if (!Number.isInteger(s.seed) || s.seed < 0 || s.seed >= 2 ** 32) {
    throw bad("seed", s.seed, "an integer in [0, 2^32)");
  }
  return s;
}
