/**
 * Host wrapper of `shaders/lifted.wgsl`: the forward of the kernel-upscaled ("lifted") state
 * branch (docs/MATH.md §5), in two dispatches per layer: `features` (token-parallel: φ, R-mixing, e,
 * q, u, head means) and `scan` (sequential over T: Ŝ ← Ŝ(d̄ I − ā e eᵀ) [+ v uᵀ], y += g Ŝ q).
 *
 * Letters: rows = B·T, `H` heads, `N` head size, `M` features per head. Storage buffers per
 * pipeline (WebGPU's default limit is 8): features 7, scan 5.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { getPipeline } from "../gpu/pipeline.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { checkDim, needElems } from "./common.ts";
import { splitGroups } from "../gpu/groups.ts";

/** The switches of a lifted layer that the kernels read (see `LiftedState`). */
export interface LiftedSwitches {
  featureMap: "gaussian" | "identity";
  headMeans: boolean;
  /** the read, "normalised" when absent */
  read?: "normalised" | "raw";
  /** writes mode (v uᵀ into Ŝ, gated read-out) */
  writes?: boolean;
}

/** The shaders' flag word: bit 0 identity map, 1 head means, 2 normalised read, 3 writes. */
export function liftedFlags(s: LiftedSwitches): number {
  return (s.featureMap === "identity" ? 1 : 0) | (s.headMeans ? 2 : 0) |
    ((s.read ?? "normalised") === "normalised" ? 4 : 0) | (s.writes ? 8 : 0);
}

/**
 * Floats of one (row, head) features record: aux (8: ‖Rφ(kk)‖, ρ_r, d̄, ā, ρ_k, ‖Rφ(k̂)‖, 0, 0),
 * e, q, u (M each), and D, b (M each) for per-channel edits.
 */
export function liftedFeatureStride(M: number, headMeans: boolean): number {
  return 8 + (headMeans ? 3 : 5) * M;
}

/** Workgroup memory (bytes) the lifted kernels need for M features and head size N. */
export function liftedWorkgroupBytes(M: number, N: number): number {
  return Math.max(5 * M + 2, 6 * M + 2 * N + 8, 5 * N) * 4;
}

/** Per-(row, head) features the forward writes and the backward and DBP read. */
export interface LiftedFeatures {
  /** (rows, H, F) records of {@link liftedFeatureStride} floats (at least, for this layer) */
  feat: GPUBuffer;
}

/** The fixed tensors of one lifted layer on the GPU, in one arena. */
export interface LiftedParams extends LiftedSwitches {
  /** R (H, M, M) at 0, support vectors (H, M, N) at `supOff`, γ (H) at `gamOff` */
  arena: GPUBuffer;
  supOff: number;
  gamOff: number;
  /** (·) gates, this layer's H at `gateOff` */
  gate: GPUBuffer;
  gateOff: number;
}

/** Element offsets of the support vectors and γ in a layer's arena, and its length. */
export function liftedArenaLayout(
  H: number,
  N: number,
  M: number,
  gaussian: boolean,
): { supOff: number; gamOff: number; size: number } {
  const supOff = H * M * M, gamOff = supOff + (gaussian ? H * M * N : 0);
  return { supOff, gamOff, size: gamOff + (gaussian ? H : 0) };
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
  /** the key and value that write into S (read in writes mode; any vector buffer otherwise) */
  k: GPUBuffer;
  v: GPUBuffer;
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

  /** Record features + scan: `y += g Ŝ_t q_t` for every token, Ŝ advanced in place. */
  record(rec: Recorder, a: LiftedForwardArgs): void {
    const name = "lifted";
    for (const [n, v] of [["B", a.B], ["T", a.T], ["H", a.H]] as const) checkDim(name, n, v);
    const { N, M } = this, rows = a.B * a.T, pairs = rows * a.H, pr = a.params;
    const vecs = { kk: a.kk, r: a.r, d: a.d, a: a.a, k: a.k, v: a.v, y: a.y };
    for (const [k, b] of Object.entries(vecs)) needElems(name, `${k} (B·T, H·N)`, b, pairs * N);
    const F = liftedFeatureStride(M, pr.headMeans);
    needElems(name, "features (B·T, H, F)", a.features.feat, pairs * F);
    const lay = liftedArenaLayout(a.H, N, M, pr.featureMap === "gaussian");
    needElems(name, "arena", pr.arena, lay.size);
    needElems(name, "gate", pr.gate, pr.gateOff + a.H);
    needElems(name, "state (B, H, N, M)", a.state, a.stateOff + a.B * a.H * N * M);
    const { groups } = splitGroups(pairs, {
      maxPerDim: rec.gpu.limits.maxComputeWorkgroupsPerDimension,
    });
    const head = [rows, a.H, groups[0], liftedFlags(pr), a.B, a.T, a.stateOff, F];
    head.push(lay.supOff, lay.gamOff, pr.gateOff, 0);
    const f = a.features.feat;
    rec.dispatch(
      this.features,
      head,
      [a.kk, a.r, a.k, a.d, a.a, pr.arena, f],
      groups,
      "lifted.features",
    );
    if (a.B * a.H > rec.gpu.limits.maxComputeWorkgroupsPerDimension) {
      throw new RangeError(`lifted: B·H = ${a.B * a.H} exceeds the workgroup count limit`);
    }
    rec.dispatch(this.scan, head, [f, a.v, pr.gate, a.state, a.y], [a.B * a.H], "lifted.scan");
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
