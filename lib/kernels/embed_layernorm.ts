/**
 * Host wrapper of `shaders/embed_layernorm.wgsl`: embedding gather + ln0 over a chunked
 * embedding (`lib/ref/embed_layernorm.ts` is the reference).
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { getPipeline } from "../gpu/pipeline.ts";
import { f32bits, type Recorder } from "../gpu/recorder.ts";
import { checkDim, needElems, WORKGROUP } from "./common.ts";
import { splitGroups } from "../gpu/groups.ts";
import type { GpuMatrix } from "./matmul_common.ts";

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
