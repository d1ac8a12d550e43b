/**
 * Host wrapper of `shaders/groupnorm_bonus.wgsl`: `o = GroupNorm(y) + bonus`, `og = o ⊙ g`.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { getPipeline } from "../gpu/pipeline.ts";
import { f32bits, type Recorder } from "../gpu/recorder.ts";
import { checkDim, needElems, WORKGROUP } from "./common.ts";
import { splitGroups } from "../gpu/groups.ts";

/** Arguments of {@link GroupNormBonusKernel.record}; activations are (B·T, H·N). */
export interface GroupNormBonusArgs {
  rows: number;
  H: number;
  N: number;
  /** layer vectors with ln_x weight/bias and r_k [H, N] at the given offsets */
  vecs: GPUBuffer;
  lnxW: number;
  lnxB: number;
  rkOff: number;
  /** default N · 1e-5 */
  eps?: number;
  y: GPUBuffer;
  r: GPUBuffer;
  k: GPUBuffer;
  v: GPUBuffer;
  g: GPUBuffer;
  o: GPUBuffer;
  og: GPUBuffer;
}

/** GroupNorm over heads plus the r·k bonus term, and the output gate. */
export class GroupNormBonusKernel {
  private constructor(private readonly pipe: GPUComputePipeline) {}

  /** Fetch the pipeline. */
  static async create(gpu: Gpu): Promise<GroupNormBonusKernel> {
    return new GroupNormBonusKernel(await getPipeline(gpu, { shader: "groupnorm_bonus" }));
  }

  /** Record the kernel. */
  record(rec: Recorder, a: GroupNormBonusArgs): void {
    const name = "groupnorm_bonus";
    checkDim(name, "rows", a.rows);
    checkDim(name, "H", a.H);
    checkDim(name, "N", a.N);
    const C = a.H * a.N, n = a.rows * C;
    needElems(name, "vecs", a.vecs, Math.max(a.lnxW, a.lnxB, a.rkOff) + C);
    const acts = { y: a.y, r: a.r, k: a.k, v: a.v, g: a.g, o: a.o, og: a.og };
    for (const [key, b] of Object.entries(acts)) needElems(name, `${key} (B·T, C)`, b, n);
    const { groups, nx } = splitGroups(a.rows * a.H, { perGroup: WORKGROUP });
    const params = [a.rows, a.H, a.N, a.lnxW, a.lnxB, a.rkOff, f32bits(a.eps ?? a.N * 1e-5), nx];
    const bufs = [a.vecs, a.y, a.r, a.k, a.v, a.g, a.o, a.og];
    rec.dispatch(this.pipe, params, bufs, groups, name);
  }
}
