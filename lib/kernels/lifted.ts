/**
 * Host wrapper of `shaders/lifted.wgsl`: the forward of the kernel-upscaled ("lifted") state
 * branch (SPEC §6), in two dispatches per layer: `features` (token-parallel: φ, R-mixing, e, q,
 * head means) and `scan` (sequential over T: Ŝ ← Ŝ(d̄ I − ā e eᵀ), y += Ŝ q).
 *
 * Letters: rows = B·T, `H` heads, `N` head size, `M` features per head.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { getPipeline } from "../gpu/pipeline.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { checkDim, needElems } from "./common.ts";
import { splitGroups } from "../gpu/recorder.ts";

/** The switches of a lifted layer that the kernels read (see `LiftedState`). */
export interface LiftedSwitches {
  featureMap: "gaussian" | "identity";
  headMeans: boolean;
  normalisedRead?: boolean;
}

/** The shader's flag word: bit 0 identity map, bit 1 head means, bit 2 normalised read. */
export function liftedFlags(s: LiftedSwitches): number {
  return (s.featureMap === "identity" ? 1 : 0) | (s.headMeans ? 2 : 0) |
    (s.normalisedRead ? 4 : 0);
}

/** Workgroup memory (bytes) the lifted kernels need for M features. */
export function liftedWorkgroupBytes(M: number, N: number): number {
  return Math.max(3 * M, 4 * M + N) * 4;
}

/** Per-(row, head) features the forward writes and the backward and DBP read. */
export interface LiftedFeatures {
  /** (rows, H, M) unit edit direction e */
  e: GPUBuffer;
  /** (rows, H, M) read vector q */
  q: GPUBuffer;
  /** (rows, H, 4): ‖R φ(kk)‖ (floored), ρ (‖r‖ floored, or 1), d̄, ā */
  aux: GPUBuffer;
}

/** The fixed tensors of one lifted layer on the GPU. */
export interface LiftedParams extends LiftedSwitches {
  /** (H, M, M) */
  R: GPUBuffer;
  /** (H, M, N); any buffer for the identity map */
  support: GPUBuffer;
  /** (H); any buffer for the identity map */
  gamma: GPUBuffer;
}

/** Arguments of {@link LiftedKernel.record}; every vector is (B·T, H·N). */
export interface LiftedForwardArgs {
  B: number;
  T: number;
  H: number;
  kk: GPUBuffer;
  r: GPUBuffer;
  d: GPUBuffer;
  a: GPUBuffer;
  params: LiftedParams;
  features: LiftedFeatures;
  /** (·, B, H, N, M) lifted state at element `stateOff`, advanced in place */
  state: GPUBuffer;
  stateOff: number;
  /** (B·T, H·N) the WKV output; the branch's output is added to it */
  y: GPUBuffer;
}

/** The lifted forward for one (N, M). */
export class LiftedKernel {
  private constructor(
    private readonly features: GPUComputePipeline,
    private readonly scan: GPUComputePipeline,
    readonly N: number,
    readonly M: number,
  ) {}

  /**
   * Fetch the pipelines for head size N and M features.
   *
   * @throws {RangeError} when N exceeds the workgroup size or M the workgroup memory
   */
  static async create(gpu: Gpu, N: number, M: number): Promise<LiftedKernel> {
    checkLiftedDims(gpu, "lifted", N, M);
    const pipe = (entryPoint: string) =>
      getPipeline(gpu, { shader: "lifted", entryPoint, constants: { N, M } });
    return new LiftedKernel(await pipe("features"), await pipe("scan"), N, M);
  }

  /** Record features + scan: `y += Ŝ_t q_t` for every token, Ŝ advanced in place. */
  record(rec: Recorder, a: LiftedForwardArgs): void {
    const name = "lifted";
    for (const [n, v] of [["B", a.B], ["T", a.T], ["H", a.H]] as const) checkDim(name, n, v);
    const { N, M } = this, rows = a.B * a.T, pairs = rows * a.H;
    for (const [k, b] of Object.entries({ kk: a.kk, r: a.r, d: a.d, a: a.a, y: a.y })) {
      needElems(name, `${k} (B·T, H·N)`, b, pairs * N);
    }
    needElems(name, "e (B·T, H, M)", a.features.e, pairs * M);
    needElems(name, "q (B·T, H, M)", a.features.q, pairs * M);
    needElems(name, "aux (B·T, H, 4)", a.features.aux, pairs * 4);
    needElems(name, "R (H, M, M)", a.params.R, a.H * M * M);
    if (a.params.featureMap === "gaussian") {
      needElems(name, "support (H, M, N)", a.params.support, a.H * M * N);
      needElems(name, "gamma (H)", a.params.gamma, a.H);
    }
    needElems(name, "state (B, H, N, M)", a.state, a.stateOff + a.B * a.H * N * M);
    const flags = liftedFlags(a.params);
    const groups = splitGroups(pairs, rec.gpu.limits.maxComputeWorkgroupsPerDimension);
    const head = [rows, a.H, groups[0], flags, a.B, a.T, a.stateOff, 0];
    const f = a.features;
    rec.dispatch(
      this.features,
      head,
      [a.kk, a.r, a.d, a.a, a.params.R, a.params.support, a.params.gamma, f.e, f.q, f.aux],
      groups,
      "lifted.features",
    );
    if (a.B * a.H > rec.gpu.limits.maxComputeWorkgroupsPerDimension) {
      throw new RangeError(`lifted: B·H = ${a.B * a.H} exceeds the workgroup count limit`);
    }
    rec.dispatch(
      this.scan,
      head,
      [f.e, f.q, f.aux, a.d, a.a, a.state, a.y],
      [a.B * a.H],
      "lifted.scan",
    );
  }
}

/** Check N against the workgroup size and M against workgroup memory. */
export function checkLiftedDims(gpu: Gpu, name: string, N: number, M: number): void {
  checkDim(name, "N", N);
  checkDim(name, "M", M);
  if (N > gpu.limits.maxComputeWorkgroupSizeX || N > 256) {
    throw new RangeError(`${name}: head size N = ${N} exceeds the workgroup size limit`);
  }
  const need = liftedWorkgroupBytes(M, N);
  if (need > gpu.limits.maxComputeWorkgroupStorageSize) {
    throw new RangeError(
      `${name}: M = ${M} features need ${need} B of workgroup memory, more than the adapter's ` +
        `${gpu.limits.maxComputeWorkgroupStorageSize}; use a smaller featureRatio`,
    );
  }
}
