/**
 * Host wrapper of `shaders/channel_mix_backward.wgsl`: the relu² backward of the channel mix.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { getPipeline } from "../gpu/pipeline.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { checkDim, needElems, WORKGROUP } from "./common.ts";
import { splitGroups } from "../gpu/groups.ts";

/** `dpre = dact · 2 · max(pre, 0)`, in place. */
export class ChannelMixBackwardKernel {
  private constructor(private readonly pipe: GPUComputePipeline) {}

  /** Fetch the pipeline. */
  static async create(gpu: Gpu): Promise<ChannelMixBackwardKernel> {
    return new ChannelMixBackwardKernel(
      await getPipeline(gpu, { shader: "channel_mix_backward", entryPoint: "relusq" }),
    );
  }

  /**
   * Record the relu² backward over `n` = B·T·F elements.
   *
   * @param pre (B, T, F) ffn.key · mix
   * @param g (B, T, F) in: dL/dact, out: dL/dpre
   */
  reluSq(rec: Recorder, n: number, pre: GPUBuffer, g: GPUBuffer): void {
    const name = "channel_mix_backward.relusq";
    checkDim(name, "n", n);
    needElems(name, "pre (B, T, F)", pre, n);
    needElems(name, "g (B, T, F)", g, n);
    const { groups, nx } = splitGroups(n, { perGroup: WORKGROUP });
    rec.dispatch(this.pipe, [n, nx], [pre, g], groups, name);
  }
}
