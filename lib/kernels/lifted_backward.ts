/**
 * Host wrapper of `shaders/lifted_backward.wgsl`: the backward of the lifted branch (docs/MATH.md §5
 * v2) down to dL/dŜ0 and dL/dg, and into the gradients of kk, r, d, a (and the written k, v in
 * writes mode), added to what the WKV backward wrote; plus the batch sums of dŜ0 and dg.
 *
 * Storage buffers per pipeline (WebGPU's default limit is 8): scan_backward 7,
 * features_backward 8, scatter 7 (sum_batch 2).
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { createStorage } from "../gpu/buffers.ts";
import { getPipeline } from "../gpu/pipeline.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { splitGroups } from "../gpu/groups.ts";
import { checkDim, needElems, WORKGROUP } from "./common.ts";
import { SumBatchKernel } from "./sum_batch.ts";
import {
  checkLiftedDims,
  liftedArenaLayout,
  type LiftedFeatures,
  liftedFeatureStride,
  liftedFlags,
  type LiftedParams,
} from "./lifted.ts";

/** Tokens between Ŝ checkpoints (the shader's `CHUNK`). */
export const LIFTED_BWD_CHUNK = 16;

/** Arguments of {@link LiftedBackwardKernel.record}; every vector is (B·T, H·N). */
export interface LiftedBackwardArgs {
  B: number;
  T: number;
  H: number;
  /** forward inputs (k, v: the written key and value; any vector buffer in memory mode) */
  kk: GPUBuffer;
  r: GPUBuffer;
  d: GPUBuffer;
  a: GPUBuffer;
  k: GPUBuffer;
  v: GPUBuffer;
  params: LiftedParams;
  /** the forward's features for the same inputs */
  features: LiftedFeatures;
  /** gradient of the branch output (= of the GroupNorm input) */
  dy: GPUBuffer;
  /** initial Ŝ at `s0Off`: (H, N, M) shared by the batch, or (B, H, N, M) */
  s0: GPUBuffer;
  s0Off?: number;
  sharedS0: boolean;
  /** outputs, added to: dL/dkk, dL/dr, dL/dd, dL/da, dL/dk, dL/dv (the last two: writes mode) */
  dkk: GPUBuffer;
  dr: GPUBuffer;
  dd: GPUBuffer;
  da: GPUBuffer;
  dk: GPUBuffer;
  dv: GPUBuffer;
  /**
   * from {@link LiftedBackwardKernel.createScratch} for the same B, T, H; afterwards it holds
   * dL/dŜ0 per sequence (B, H, N, M) at {@link LiftedBackwardKernel.ds0Offset} and dL/dg
   * (B, H) at {@link LiftedBackwardKernel.dgOffset}
   */
  scratch: GPUBuffer;
  /** (B·T, H, 5M + 6N) from {@link LiftedBackwardKernel.createDfeat} */
  dfeat: GPUBuffer;
}

/** Lifted backward pipelines for one (N, M). */
export class LiftedBackwardKernel {
  private constructor(
    private readonly gpu: Gpu,
    private readonly scan: GPUComputePipeline,
    private readonly feat: GPUComputePipeline,
    private readonly scatter: GPUComputePipeline,
    private readonly sum: SumBatchKernel,
    readonly N: number,
    readonly M: number,
  ) {}

  /** Fetch the pipelines for head size N and M features. */
  static async create(gpu: Gpu, N: number, M: number): Promise<LiftedBackwardKernel> {
    checkLiftedDims(gpu, "lifted_backward", N, M);
    const pipe = (entryPoint: string) =>
      getPipeline(gpu, { shader: "lifted_backward", entryPoint, constants: { N, M } });
    return new LiftedBackwardKernel(
      gpu,
      await pipe("scan_backward"),
      await pipe("features_backward"),
      await pipe("scatter"),
      await SumBatchKernel.create(gpu),
      N,
      M,
    );
  }

  /** Element offset of the per-sequence dŜ0 (B, H, N, M) in the scratch. */
  ds0Offset(B: number, T: number, H: number): number {
    const nChunks = Math.ceil(T / LIFTED_BWD_CHUNK);
    return B * H * (nChunks + LIFTED_BWD_CHUNK + 1) * this.N * this.M;
  }

  /** Element offset of the per-sequence dg (B, H) in the scratch. */
  dgOffset(B: number, T: number, H: number): number {
    return this.ds0Offset(B, T, H) + B * H * this.N * this.M;
  }

  /** f32 elements of scratch for B sequences of T tokens and H heads. */
  scratchElems(B: number, T: number, H: number): number {
    return this.dgOffset(B, T, H) + B * H;
  }

  /** Allocate the scan scratch (checkpoints, a chunk of states, dL/dŜ, the results). */
  createScratch(B: number, T: number, H: number, label = "lifted_backward.scratch"): GPUBuffer {
    const bytes = this.scratchElems(B, T, H) * 4;
    if (bytes > this.gpu.limits.maxStorageBufferBindingSize) {
      throw new RangeError(
        `lifted_backward: B·T = ${B}·${T} needs ${bytes} B of scratch, more than one storage ` +
          `binding (${this.gpu.limits.maxStorageBufferBindingSize} B); use fewer tokens per step`,
      );
    }
    return createStorage(this.gpu, label, bytes);
  }

  /** Floats per (row, head) of dfeat: dq, deS, db, dD, du (M each), six gradient vectors (N). */
  get dfeatStride(): number {
    return 5 * this.M + 6 * this.N;
  }

  /** Allocate the per-(row, head) feature gradients. */
  createDfeat(rows: number, H: number, label = "lifted_backward.dfeat"): GPUBuffer {
    return createStorage(this.gpu, label, rows * H * this.dfeatStride * 4);
  }

  /** Record the scan backward, the features backward and the scatter into the gradients. */
  record(rec: Recorder, a: LiftedBackwardArgs): void {
    const name = "lifted_backward";
    for (const [n, v] of [["B", a.B], ["T", a.T], ["H", a.H]] as const) checkDim(name, n, v);
    const { N, M } = this, rows = a.B * a.T, pairs = rows * a.H, NM = N * M, p = a.params;
    const vecs = { kk: a.kk, r: a.r, d: a.d, a: a.a, k: a.k, v: a.v, dy: a.dy };
    const outs = { dkk: a.dkk, dr: a.dr, dd: a.dd, da: a.da, dk: a.dk, dv: a.dv };
    for (const [k, b] of Object.entries({ ...vecs, ...outs })) {
      needElems(name, `${k} (B·T, H·N)`, b, pairs * N);
    }
    const s0Off = a.s0Off ?? 0, F = liftedFeatureStride(M, p.headMeans);
    needElems(name, "s0", a.s0, s0Off + (a.sharedS0 ? 1 : a.B) * a.H * NM);
    needElems(name, "features (B·T, H, F)", a.features.feat, pairs * F);
    needElems(name, "scratch", a.scratch, this.scratchElems(a.B, a.T, a.H));
    needElems(name, "dfeat (B·T, H, 5M + 6N)", a.dfeat, pairs * this.dfeatStride);
    const lay = liftedArenaLayout(a.H, N, M, p.featureMap === "gaussian");
    needElems(name, "arena", p.arena, lay.size);
    needElems(name, "gate", p.gate, p.gateOff + a.H);
    if (a.B * a.H > rec.gpu.limits.maxComputeWorkgroupsPerDimension) {
      throw new RangeError(`${name}: B·H = ${a.B * a.H} exceeds the workgroup count limit`);
    }
    const { groups } = splitGroups(pairs, {
      maxPerDim: rec.gpu.limits.maxComputeWorkgroupsPerDimension,
    });
    const nChunks = Math.ceil(a.T / LIFTED_BWD_CHUNK);
    const params = (nx: number) => [
      ...[rows, a.H, nx, liftedFlags(p), a.B, a.T, nChunks, s0Off],
      ...[a.sharedS0 ? 0 : a.H * NM, F, lay.supOff, lay.gamOff, p.gateOff],
      ...[this.ds0Offset(a.B, a.T, a.H), this.dgOffset(a.B, a.T, a.H), 0],
    ];
    const f = a.features.feat;
    rec.dispatch(
      this.scan,
      params(groups[0]),
      [f, a.v, a.dy, a.s0, p.gate, a.dfeat, a.scratch],
      [a.B * a.H],
      "lifted_backward.scan",
    );
    rec.dispatch(
      this.feat,
      params(groups[0]),
      [a.kk, a.r, a.k, a.d, a.a, p.arena, f, a.dfeat],
      groups,
      "lifted_backward.features",
    );
    const flat = splitGroups(pairs * N, {
      perGroup: WORKGROUP,
      maxPerDim: rec.gpu.limits.maxComputeWorkgroupsPerDimension,
    });
    rec.dispatch(
      this.scatter,
      params(flat.nx),
      [a.dfeat, a.dkk, a.dr, a.dk, a.dd, a.da, a.dv],
      flat.groups,
      "lifted_backward.scatter",
    );
  }

  /** Record `dst[dstOff + k] (+)= Σ_b src[srcOff + b·n + k]` for k < n. */
  sumBatch(
    rec: Recorder,
    a: {
      B: number;
      n: number;
      src: GPUBuffer;
      srcOff?: number;
      dst: GPUBuffer;
      dstOff?: number;
      accumulate?: boolean;
    },
  ): void {
    this.sum.record(rec, a, "lifted_backward.sum_batch");
  }
}
