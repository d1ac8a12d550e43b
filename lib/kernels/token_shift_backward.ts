/**
 * Host wrapper of `shaders/token_shift_backward.wgsl`: backward of the token-shift mixes, and
 * (weight gradients only) the gradients of the mixing coefficients x_m.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { getPipeline } from "../gpu/pipeline.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { checkDim, needElems, WORKGROUP } from "./common.ts";
import { splitGroups } from "../gpu/groups.ts";

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

/** Arguments of {@link TokenShiftBackwardKernel.mixWeights}. */
export interface MixWeightsArgs {
  B: number;
  T: number;
  C: number;
  nMix: number;
  /** (nMix, B, T, C) gradients of the mixes */
  dmix: GPUBuffer;
  /** (B, T, C) the norm output u the mixes read */
  u: GPUBuffer;
  /** (·, B, C) incoming shift state at element `shiftOff`; omitted = zero */
  shift?: GPUBuffer;
  shiftOff?: number;
  /** gradient of x_m accumulated at `outOff + m·C` */
  out: GPUBuffer;
  outOff: number;
}

/** Token-shift mix backward, one invocation per (b, t, c). */
export class TokenShiftBackwardKernel {
  private constructor(
    private readonly pipe: GPUComputePipeline,
    private readonly wPipe?: GPUComputePipeline,
  ) {}

  /** Fetch the pipelines (`dw_mix`, the x_m gradients, only with `weightGrads`). */
  static async create(gpu: Gpu, weightGrads = false): Promise<TokenShiftBackwardKernel> {
    const pipe = (entryPoint: string) =>
      getPipeline(gpu, { shader: "token_shift_backward", entryPoint });
    return new TokenShiftBackwardKernel(
      await pipe("main"),
      weightGrads ? await pipe("dw_mix") : undefined,
    );
  }

  /** Record `out[x_m] += Σ_{b,t} dmix_m ⊙ (uPrev − u)` (the mixing coefficients' gradients). */
  mixWeights(rec: Recorder, a: MixWeightsArgs): void {
    const name = "token_shift_backward.dw_mix";
    if (!this.wPipe) throw new RangeError(`${name}: create the kernel with weightGrads = true`);
    for (const [k, v] of [["B", a.B], ["T", a.T], ["C", a.C], ["nMix", a.nMix]] as const) {
      checkDim(name, k, v);
    }
    const n = a.B * a.T * a.C, shiftOff = a.shiftOff ?? 0;
    needElems(name, "dmix (nMix, B, T, C)", a.dmix, a.nMix * n);
    needElems(name, "u (B, T, C)", a.u, n);
    if (a.shift) needElems(name, "shift (·, B, C)", a.shift, shiftOff + a.B * a.C);
    needElems(name, "out", a.out, a.outOff + a.nMix * a.C);
    const { groups, nx } = splitGroups(a.nMix * a.C, { perGroup: WORKGROUP });
    const params = [a.B, a.T, a.C, a.nMix, shiftOff, a.shift ? 1 : 0, a.outOff, nx];
    rec.dispatch(this.wPipe, params, [a.dmix, a.u, a.shift ?? a.u, a.out], groups, name);
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
    const { groups, nx } = splitGroups(n, { perGroup: WORKGROUP });
    const params = [a.B, a.T, a.C, a.nMix, a.xOff, shiftOff, nx];
    rec.dispatch(this.pipe, params, [a.dmix, a.vecs, a.du, a.dshift], groups, name);
  }
}
