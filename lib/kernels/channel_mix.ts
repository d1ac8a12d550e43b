/**
 * Host wrapper of `shaders/channel_mix.wgsl`: the channel-mix activation `relu(pre)²`.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { getPipeline } from "../gpu/pipeline.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { checkDim, needElems, WORKGROUP } from "./common.ts";
import { splitGroups } from "../gpu/groups.ts";

/** `act = relu(pre)²` elementwise. */
export class ChannelMixKernel {
  private constructor(private readonly pipe: GPUComputePipeline) {}

  /** Fetch the pipeline. */
  static async create(gpu: Gpu): Promise<ChannelMixKernel> {
    return new ChannelMixKernel(
      await getPipeline(gpu, { shader: "channel_mix", entryPoint: "relu_sq" }),
    );
  }

  /** Record `act = relu(pre)²` over `n` elements. */
  reluSq(rec: Recorder, a: { n: number; pre: GPUBuffer; act: GPUBuffer }): void {
    const name = "channel_mix.relu_sq";
    checkDim(name, "n", a.n);
    needElems(name, "pre (B·T, F)", a.pre, a.n);
    needElems(name, "act (B·T, F)", a.act, a.n);
    const { groups, nx } = splitGroups(a.n, { perGroup: WORKGROUP });
    rec.dispatch(this.pipe, [a.n, nx], [a.pre, a.act], groups, name);
  }
}
