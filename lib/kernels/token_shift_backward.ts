/**
 * Host wrapper of `shaders/token_shift_backward.wgsl`: backward of the token-shift mixes.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { getPipeline } from "../gpu/pipeline.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { checkDim, flatGroups, needElems } from "./common.ts";

/** Arguments of {@link TokenShiftBackwardKernel.record}. */
export interface TokenShiftBackwardArgs {
  B: number;
  T: number;
  C: number;
  nMix: number;
  /** (nMix, B, T, C) gradients of the mixes */
  dmix: GPUBuffer;
  /** x_m at `xOff + m·C` */
  vecs: GPUBuffer;
  xOff: number;
  /** (B, T, C) output: gradient of the norm output u (overwritten) */
  du: GPUBuffer;
  /** (·, B, C) output: gradient of the incoming shift state, at element `shiftOff` */
  dshift: GPUBuffer;
  shiftOff?: number;
}

/** Token-shift mix backward, one invocation per (b, t, c). */
export class TokenShiftBackwardKernel {
  private constructor(private readonly pipe: GPUComputePipeline) {}

  /** Fetch the pipeline. */
  static async create(gpu: Gpu): Promise<TokenShiftBackwardKernel> {
    return new TokenShiftBackwardKernel(await getPipeline(gpu, { shader: "token_shift_backward" }));
  }

  /** Record `du` and `dshift` from the mixes' gradients. */
  record(rec: Recorder, a: TokenShiftBackwardArgs): void {
    const name = "token_shift_backward";
    for (const [k, v] of [["B", a.B], ["T", a.T], ["C", a.C], ["nMix", a.nMix]] as const) {
      checkDim(name, k, v);
    }
    const n = a.B * a.T * a.C, shiftOff = a.shiftOff ?? 0;
    needElems(name, "dmix (nMix, B, T, C)", a.dmix, a.nMix * n);
    needElems(name, "vecs", a.vecs, a.xOff + a.nMix * a.C);
    needElems(name, "du (B, T, C)", a.du, n);
    needElems(name, "dshift (·, B, C)", a.dshift, shiftOff + a.B * a.C);
    const { groups, nx } = flatGroups(n);
    const params = [a.B, a.T, a.C, a.nMix, a.xOff, shiftOff, nx];
    rec.dispatch(this.pipe, params, [a.dmix, a.vecs, a.du, a.dshift], groups, name);
  }
}
