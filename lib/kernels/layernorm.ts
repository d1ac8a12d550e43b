/**
 * Host wrapper of `shaders/layernorm.wgsl` (LayerNorm over rows); the embedding gather + ln0 is
 * `embed_layernorm.ts`.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { getPipeline } from "../gpu/pipeline.ts";
import { f32bits, type Recorder } from "../gpu/recorder.ts";
import { checkDim, needElems, WORKGROUP } from "./common.ts";
import { splitGroups } from "../gpu/groups.ts";

/** Arguments of {@link LayerNormKernel.record}. */
export interface LayerNormArgs {
  /** output rows */
  rows: number;
  C: number;
  /** input (·, C); output row r reads input row `r · inRowStep + inRowOff` (default 1, 0) */
  x: GPUBuffer;
  inRowStep?: number;
  inRowOff?: number;
  /** packed vectors holding the affine weight at `wOff` and bias at `bOff` */
  vecs: GPUBuffer;
  wOff: number;
  bOff: number;
  /** (rows, C) output */
  out: GPUBuffer;
  /** default 1e-5 */
  eps?: number;
}

/** LayerNorm (biased variance), one invocation per row. */
export class LayerNormKernel {
  private constructor(private readonly pipe: GPUComputePipeline) {}

  /** Fetch the pipeline. */
  static async create(gpu: Gpu): Promise<LayerNormKernel> {
    return new LayerNormKernel(await getPipeline(gpu, { shader: "layernorm" }));
  }

  /** Record `out = LN(x rows)`. */
  record(rec: Recorder, a: LayerNormArgs): void {
    const name = "layernorm";
    checkDim(name, "rows", a.rows);
    checkDim(name, "C", a.C);
    const step = a.inRowStep ?? 1, off = a.inRowOff ?? 0;
    needElems(name, "x (·, C)", a.x, ((a.rows - 1) * step + off + 1) * a.C);
    needElems(name, "vecs", a.vecs, Math.max(a.wOff, a.bOff) + a.C);
    needElems(name, "out (rows, C)", a.out, a.rows * a.C);
    const { groups, nx } = splitGroups(a.rows, { perGroup: WORKGROUP });
    const params = [a.rows, a.C, step, off, a.wOff, a.bOff, f32bits(a.eps ?? 1e-5), nx];
    rec.dispatch(this.pipe, params, [a.x, a.vecs, a.out], groups, name);
  }
}
