/**
 * Host wrapper of `shaders/dbp.wgsl`: decorrelated backpropagation (docs/MATH.md §6) on the GPU. After
 * an optimiser step, per lifted layer and head: C = E[z zᵀ] over the step's kk, r (and k in
 * writes mode) vectors (z = R φ(û), read from the forward's features), R ← R − η_R [(1 − κ) offdiag(C) +
 * κ diag(C − I)] R, and the decorrelation and correlation losses of C.
 *
 * Storage buffers per pipeline (WebGPU's default limit is 8): covariance 3, update 3, loss 2.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { getPipeline } from "../gpu/pipeline.ts";
import { f32bits, type Recorder } from "../gpu/recorder.ts";
import { checkDim, needElems, WORKGROUP } from "./common.ts";
import { splitGroups } from "../gpu/groups.ts";
import type { LiftedFeatures } from "./lifted.ts";

/** DBP pipelines for one M. */
export class DbpKernel {
  private constructor(
    private readonly cov: GPUComputePipeline,
    private readonly upd: GPUComputePipeline,
    private readonly lossPipe: GPUComputePipeline,
    readonly M: number,
  ) {}

  /** Fetch the pipelines for M features. */
  static async create(gpu: Gpu, M: number): Promise<DbpKernel> {
    checkDim("dbp", "M", M);
    const pipe = (entryPoint: string) =>
      getPipeline(gpu, { shader: "dbp", entryPoint, constants: { M } });
    return new DbpKernel(await pipe("covariance"), await pipe("update"), await pipe("loss"), M);
  }

  /**
   * Record `cov[h] (+)= Σ_k z_k z_kᵀ` over the `n` listed vectors.
   *
   * @param idx (n) u32 entries `row·stride + kind` (kind 0: the kk of row, 1: its r, 2: its
   *   written k, writes mode); `stride` defaults to 2
   * @param F floats per features record (`liftedFeatureStride` of the layer)
   * @param cov (H, M, M)
   */
  covariance(
    rec: Recorder,
    a: {
      H: number;
      features: LiftedFeatures;
      F: number;
      idx: GPUBuffer;
      n: number;
      stride?: number;
      cov: GPUBuffer;
    },
    accumulate: boolean,
  ): void {
    const name = "dbp.covariance", M = this.M, stride = a.stride ?? 2;
    checkDim(name, "H", a.H);
    checkDim(name, "n", a.n, true);
    if (stride !== 2 && stride !== 3) {
      throw new RangeError(`${name}: stride = ${stride}; expected 2 (kk, r) or 3 (kk, r, k)`);
    }
    needElems(name, "idx (n)", a.idx, a.n);
    needElems(name, "cov (H, M, M)", a.cov, a.H * M * M);
    const { groups, nx } = splitGroups(a.H * M * M, { perGroup: WORKGROUP });
    const params = [a.H, a.n, accumulate ? 1 : 0, 0, 0, 0, 0, nx, a.F, stride, 0, 0];
    rec.dispatch(this.cov, params, [a.features.feat, a.idx, a.cov], groups, name);
  }

  /** Record `Rout = R − lr [(1 − κ) offdiag(C) + κ diag(C − I)] R` with C = cov / count. */
  update(
    rec: Recorder,
    a: { H: number; cov: GPUBuffer; R: GPUBuffer; Rout: GPUBuffer; count: number },
    lr: number,
    kappa: number,
  ): void {
    const name = "dbp.update", M = this.M;
    checkDim(name, "count", a.count);
    for (const [k, b] of [["cov", a.cov], ["R", a.R], ["Rout", a.Rout]] as const) {
      needElems(name, `${k} (H, M, M)`, b, a.H * M * M);
    }
    const { groups, nx } = splitGroups(a.H * M * M, { perGroup: WORKGROUP });
    const params = [
      a.H,
      0,
      0,
      0,
      f32bits(1 / a.count),
      f32bits(lr),
      f32bits(kappa),
      nx,
      0,
      0,
      0,
      0,
    ];
    rec.dispatch(this.upd, params, [a.cov, a.R, a.Rout], groups, name);
  }

  /** Record the per-head losses of C = cov / count into `out[lossOff + 2h + (0, 1)]`. */
  loss(
    rec: Recorder,
    a: { H: number; cov: GPUBuffer; count: number; out: GPUBuffer; lossOff: number },
  ): void {
    const name = "dbp.loss", M = this.M;
    needElems(name, "cov (H, M, M)", a.cov, a.H * M * M);
    needElems(name, "out", a.out, a.lossOff + 2 * a.H);
    const params = [a.H, 0, 0, a.lossOff, f32bits(1 / a.count), 0, 0, 1, 0, 0, 0, 0];
    rec.dispatch(this.lossPipe, params, [a.cov, a.out], [a.H], name);
  }
}
