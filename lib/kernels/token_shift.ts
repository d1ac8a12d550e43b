/**
 * Host wrapper of `shaders/token_shift.wgsl`: the token-shift mixes and the shift-state update.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { getPipeline } from "../gpu/pipeline.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { checkDim, needElems, WORKGROUP } from "./common.ts";
import { splitGroups } from "../gpu/groups.ts";

/** Shapes and buffers shared by both entry points. */
export interface TokenShiftArgs {
  B: number;
  T: number;
  C: number;
  /** (B, T, C) LayerNorm output of this layer */
  u: GPUBuffer;
  /** (L, B, C) shift state; this layer's block starts at element `shiftOff` */
  shift: GPUBuffer;
  shiftOff: number;
}

/** Token shift: `mix` then, after every reader of the state, `store`. */
export class TokenShiftKernel {
  private constructor(
    private readonly mixPipe: GPUComputePipeline,
    private readonly storePipe: GPUComputePipeline,
  ) {}

  /** Fetch the pipelines. */
  static async create(gpu: Gpu): Promise<TokenShiftKernel> {
    return new TokenShiftKernel(
      await getPipeline(gpu, { shader: "token_shift", entryPoint: "mix" }),
      await getPipeline(gpu, { shader: "token_shift", entryPoint: "store" }),
    );
  }

  #check(name: string, a: TokenShiftArgs): void {
    checkDim(name, "B", a.B);
    checkDim(name, "T", a.T);
    checkDim(name, "C", a.C);
    needElems(name, "u (B, T, C)", a.u, a.B * a.T * a.C);
    needElems(name, "shift (L, B, C)", a.shift, a.shiftOff + a.B * a.C);
  }

  /**
   * Record `out[m] = u + (uPrev − u) ⊙ vecs[xOff + m·C …]` for m < nMix; out is (nMix, B, T, C).
   */
  mix(
    rec: Recorder,
    a: TokenShiftArgs & { nMix: number; vecs: GPUBuffer; xOff: number; out: GPUBuffer },
  ): void {
    const name = "token_shift.mix";
    this.#check(name, a);
    checkDim(name, "nMix", a.nMix);
    needElems(name, "vecs", a.vecs, a.xOff + a.nMix * a.C);
    const n = a.B * a.T * a.C;
    needElems(name, "out (nMix, B, T, C)", a.out, a.nMix * n);
    const { groups, nx } = splitGroups(n, { perGroup: WORKGROUP });
    const params = [a.B, a.T, a.C, a.shiftOff, a.nMix, a.xOff, nx];
    rec.dispatch(this.mixPipe, params, [a.u, a.shift, a.vecs, a.out], groups, name);
  }

  /** Record `shift[b] = u[b, T − 1]`. */
  store(rec: Recorder, a: TokenShiftArgs): void {
    const name = "token_shift.store";
    this.#check(name, a);
    const { groups, nx } = splitGroups(a.B * a.C, { perGroup: WORKGROUP });
    const params = [a.B, a.T, a.C, a.shiftOff, 0, 0, nx];
    rec.dispatch(this.storePipe, params, [a.u, a.shift], groups, name);
  }
}
