/**
 * Host wrapper of `shaders/lifted_backward.wgsl`: the backward of the lifted branch (SPEC §6)
 * down to dL/dŜ0 and into the gradients of kk, r, d and a (added to what the WKV backward
 * wrote), plus the batch sum of per-sequence dŜ0.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { createStorage } from "../gpu/buffers.ts";
import { getPipeline } from "../gpu/pipeline.ts";
import { type Recorder, splitGroups } from "../gpu/recorder.ts";
import { checkDim, needElems } from "./common.ts";
import { SumBatchKernel } from "./sum_batch.ts";
import { checkLiftedDims, type LiftedFeatures, liftedFlags, type LiftedParams } from "./lifted.ts";

/** Tokens between Ŝ checkpoints (the shader's `CHUNK`). */
export const LIFTED_BWD_CHUNK = 16;

/** Arguments of {@link LiftedBackwardKernel.record}; every vector is (B·T, H·N). */
export interface LiftedBackwardArgs {
  B: number;
  T: number;
  H: number;
  /** forward inputs */
  kk: GPUBuffer;
  r: GPUBuffer;
  d: GPUBuffer;
  a: GPUBuffer;
  params: LiftedParams;
  /** the forward's features for the same inputs */
  features: LiftedFeatures;
  /** gradient of the branch output (= of the GroupNorm input) */
  dy: GPUBuffer;
  /** initial Ŝ at `s0Off`: (H, N, M) shared by the batch, or (B, H, N, M) */
  s0: GPUBuffer;
  s0Off?: number;
  sharedS0: boolean;
  /** outputs, added to: dL/dkk, dL/dr, dL/dd, dL/da */
  dkk: GPUBuffer;
  dr: GPUBuffer;
  dd: GPUBuffer;
  da: GPUBuffer;
  /** (B, H, N, M) dL/dŜ0 per sequence at `ds0Off` */
  ds0: GPUBuffer;
  ds0Off?: number;
  /** from {@link LiftedBackwardKernel.createScratch} for the same B, T, H */
  scratch: GPUBuffer;
  /** (B·T, H, 4, M) from {@link LiftedBackwardKernel.createDfeat} */
  dfeat: GPUBuffer;
}

/** Lifted backward pipelines for one (N, M). */
export class LiftedBackwardKernel {
  private constructor(
    private readonly gpu: Gpu,
    private readonly scan: GPUComputePipeline,
    private readonly feat: GPUComputePipeline,
    private readonly sum: SumBatchKernel,
    readonly N: number,
    readonly M: number,
  ) {}

  /** Fetch the pipelines for head size N and M features. */
  static async create(gpu: Gpu, N: number, M: number): Promise<LiftedBackwardKernel> {
    checkLiftedDims(gpu, "lifted_backward", N, M);
    const pipe = (entryPoint: string, c: Record<string, number> = { N, M }) =>
      getPipeline(gpu, { shader: "lifted_backward", entryPoint, constants: c });
    return new LiftedBackwardKernel(
      gpu,
      await pipe("scan_backward"),
      await pipe("features_backward"),
      await SumBatchKernel.create(gpu),
      N,
      M,
    );
  }

  /** f32 elements of scratch for B sequences of T tokens and H heads. */
  scratchElems(B: number, T: number, H: number): number {
    const nChunks = Math.ceil(T / LIFTED_BWD_CHUNK);
    return B * H * (nChunks + LIFTED_BWD_CHUNK + 1) * this.N * this.M;
  }

  /** Allocate the scan scratch (checkpoints, a chunk of states, dL/dŜ). */
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

  /** Allocate the per-(row, head) feature gradients (dq, Ŝᵀdp, db, dD). */
  createDfeat(rows: number, H: number, label = "lifted_backward.dfeat"): GPUBuffer {
    return createStorage(this.gpu, label, rows * H * 4 * this.M * 4);
  }

  /** Record the scan backward and the features backward. */
  record(rec: Recorder, a: LiftedBackwardArgs): void {
    const name = "lifted_backward";
    for (const [n, v] of [["B", a.B], ["T", a.T], ["H", a.H]] as const) checkDim(name, n, v);
    const { N, M } = this, rows = a.B * a.T, pairs = rows * a.H, NM = N * M;
    const vecs = { kk: a.kk, r: a.r, d: a.d, a: a.a, dy: a.dy, dkk: a.dkk, dr: a.dr };
    for (const [k, b] of Object.entries({ ...vecs, dd: a.dd, da: a.da })) {
      needElems(name, `${k} (B·T, H·N)`, b, pairs * N);
    }
    const s0Off = a.s0Off ?? 0, ds0Off = a.ds0Off ?? 0;
    needElems(name, "s0", a.s0, s0Off + (a.sharedS0 ? 1 : a.B) * a.H * NM);
    needElems(name, "ds0 (B, H, N, M)", a.ds0, ds0Off + a.B * a.H * NM);
    needElems(name, "scratch", a.scratch, this.scratchElems(a.B, a.T, a.H));
    needElems(name, "dfeat (B·T, H, 4, M)", a.dfeat, pairs * 4 * M);
    if (a.B * a.H > rec.gpu.limits.maxComputeWorkgroupsPerDimension) {
      throw new RangeError(`${name}: B·H = ${a.B * a.H} exceeds the workgroup count limit`);
    }
    const groups = splitGroups(pairs, rec.gpu.limits.maxComputeWorkgroupsPerDimension);
    const nChunks = Math.ceil(a.T / LIFTED_BWD_CHUNK);
    const params = [rows, a.H, groups[0], liftedFlags(a.params), a.B, a.T, nChunks, s0Off];
    params.push(a.sharedS0 ? 0 : a.H * NM, ds0Off);
    const f = a.features;
    rec.dispatch(
      this.scan,
      params,
      [f.e, f.q, f.aux, a.d, a.a, a.dy, a.s0, a.dfeat, a.ds0, a.scratch],
      [a.B * a.H],
      "lifted_backward.scan",
    );
    const p = a.params;
    rec.dispatch(
      this.feat,
      params,
      [a.kk, a.r, a.d, a.a, p.R, p.support, p.gamma, f.e, f.q, f.aux, a.dfeat]
        .concat([a.dkk, a.dr, a.dd, a.da]),
      groups,
      "lifted_backward.features",
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
