/**
 * Host wrappers of `shaders/layernorm.wgsl` (LayerNorm over rows) and
 * `shaders/embed_layernorm.wgsl` (embedding gather + ln0, chunked embedding).
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { getPipeline } from "../gpu/pipeline.ts";
import { f32bits, type Recorder } from "../gpu/recorder.ts";
import { checkDim, needElems, WORKGROUP } from "./common.ts";
import { splitGroups } from "../gpu/groups.ts";
import type { GpuMatrix } from "./matmul.ts";

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

/** Arguments of {@link EmbedLayerNormKernel.record}. */
export interface EmbedArgs {
  /** tokens (B · T) */
  rows: number;
  /** u32 token ids, the first at element `tokOff` */
  tokens: GPUBuffer;
  tokOff?: number;
  /** the embedding [V, C], possibly split into row chunks */
  emb: GpuMatrix;
  vecs: GPUBuffer;
  wOff: number;
  bOff: number;
  /** (rows, C) output */
  out: GPUBuffer;
  eps?: number;
}

/** `x0 = LN(emb[token]; ln0)`, one dispatch per embedding chunk. */
export class EmbedLayerNormKernel {
  private constructor(private readonly pipe: GPUComputePipeline) {}

  /** Fetch the pipeline. */
  static async create(gpu: Gpu): Promise<EmbedLayerNormKernel> {
    return new EmbedLayerNormKernel(await getPipeline(gpu, { shader: "embed_layernorm" }));
  }

  /** Record the gather + LayerNorm. Token ids must already be checked against V. */
  record(rec: Recorder, a: EmbedArgs): void {
    const name = "embed_layernorm";
    checkDim(name, "rows", a.rows);
    const C = a.emb.cols, tokOff = a.tokOff ?? 0;
    needElems(name, "tokens (B, T)", a.tokens, tokOff + a.rows);
    needElems(name, "vecs", a.vecs, Math.max(a.wOff, a.bOff) + C);
    needElems(name, "out (B·T, C)", a.out, a.rows * C);
    const { groups, nx } = splitGroups(a.rows, { perGroup: WORKGROUP });
    for (const ch of a.emb.chunks) {
      const params = [a.rows, C, tokOff, ch.rowStart, ch.rows, a.wOff, a.bOff];
      params.push(f32bits(a.eps ?? 1e-5), nx);
      rec.dispatch(this.pipe, params, [a.tokens, ch.buffer, a.vecs, a.out], groups, name);
    }
  }
}
