/**
 * Host wrapper of `shaders/sum_batch.wgsl`: `dst (+)= Σ_b src[b]` over a (B, n) block — the
 * gradient of a state shared by the batch, and accumulation over micro-batches.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { getPipeline } from "../gpu/pipeline.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { checkDim, needElems, WORKGROUP } from "./common.ts";
import { splitGroups } from "../gpu/groups.ts";

/** Arguments of {@link SumBatchKernel.record}. */
export interface SumBatchArgs {
  B: number;
  /** elements per batch item */
  n: number;
  /** (B, n) at `srcOff` */
  src: GPUBuffer;
  srcOff?: number;
  /** (n) at `dstOff` */
  dst: GPUBuffer;
  dstOff?: number;
  /** add to dst instead of overwriting it */
  accumulate?: boolean;
}

/** The batch-sum pipeline; create once with {@link SumBatchKernel.create}. */
export class SumBatchKernel {
  private constructor(private readonly pipe: GPUComputePipeline) {}

  /** Fetch (compile) the pipeline. */
  static async create(gpu: Gpu): Promise<SumBatchKernel> {
    return new SumBatchKernel(await getPipeline(gpu, { shader: "sum_batch" }));
  }

  /** Record `dst[dstOff + e] (+)= Σ_b src[srcOff + b·n + e]` for e < n. */
  record(rec: Recorder, a: SumBatchArgs, name = "sum_batch"): void {
    checkDim(name, "B", a.B);
    checkDim(name, "n", a.n);
    const srcOff = a.srcOff ?? 0, dstOff = a.dstOff ?? 0;
    needElems(name, "src (B, n)", a.src, srcOff + a.B * a.n);
    needElems(name, "dst (n)", a.dst, dstOff + a.n);
    const { groups, nx } = splitGroups(a.n, { perGroup: WORKGROUP });
    const params = [a.n, a.B, srcOff, dstOff, a.accumulate ? 1 : 0, nx];
    rec.dispatch(this.pipe, params, [a.src, a.dst], groups, name);
  }
}
