/**
 * Host wrapper of `shaders/gates_backward.wgsl`: the elementwise backward of `gates.wgsl`
 * (decay, value residual) and of the low-rank activations (`act`). The `a` sigmoid's backward
 * runs in `key_norm_backward.ts`, where da arrives.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { createStorage } from "../gpu/buffers.ts";
import { splitGroups } from "../gpu/groups.ts";
import { getPipeline } from "../gpu/pipeline.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { checkDim, needElems, recordRowsHeads, type RowsHeads, WORKGROUP } from "./common.ts";

const SHADER = "gates_backward";

/** Buffers of {@link GatesBackwardKernel.value}; all (B·T, C), n = B·T·C. */
export interface ValueBackwardArgs {
  n: number;
  dv: GPUBuffer;
  dvFirst: GPUBuffer;
  vGate?: GPUBuffer;
  vFirst?: GPUBuffer;
  v0?: GPUBuffer;
  dvpre?: GPUBuffer;
}

/** Gates backward pipelines; create once with {@link GatesBackwardKernel.create}. */
export class GatesBackwardKernel {
  private constructor(
    private readonly pipes: Record<"decay" | "value" | "act", GPUComputePipeline>,
    private readonly dummy: GPUBuffer,
    private readonly dummyW: GPUBuffer,
  ) {}

  /** Fetch the pipelines. */
  static async create(gpu: Gpu): Promise<GatesBackwardKernel> {
    const get = (entryPoint: string) => getPipeline(gpu, { shader: SHADER, entryPoint });
    const pipes = { decay: await get("decay"), value: await get("value"), act: await get("act") };
    const unused = (l: string) => createStorage(gpu, `${SHADER}.${l}`, 16);
    return new GatesBackwardKernel(pipes, unused("unusedRead"), unused("unusedWrite"));
  }

  /** Record the decay backward (per element, dd → dz) over (rows, H·N). */
  decay(rec: Recorder, a: RowsHeads & Record<"z" | "d" | "dd", GPUBuffer>): void {
    const { z, d, dd } = a;
    recordRowsHeads(rec, this.pipes.decay, `${SHADER}.decay`, a, [0, 0], { z, d, dd }, true);
  }

  /**
   * Record the value-residual backward over n = B·T·C elements. Layer 0 (`vGate` omitted):
   * dv += dvFirst. Layers ≥ 1: dv ← dv0, dvFirst += dv ⊙ vGate, dvpre written.
   */
  value(rec: Recorder, a: ValueBackwardArgs): void {
    const name = `${SHADER}.value`;
    checkDim(name, "n", a.n);
    const layer0 = a.vGate === undefined;
    if (!layer0 && !(a.vFirst && a.v0 && a.dvpre)) {
      throw new RangeError(`${name}: layers ≥ 1 need vGate, vFirst, v0 and dvpre`);
    }
    const u = this.dummy;
    const bufs = [a.vGate ?? u, a.vFirst ?? u, a.v0 ?? u, a.dv, a.dvFirst, a.dvpre ?? this.dummyW];
    for (const b of bufs) {
      if (b !== u && b !== this.dummyW) needElems(name, `${b.label} (B·T, C)`, b, a.n);
    }
    const { groups, nx } = splitGroups(a.n, { perGroup: WORKGROUP });
    // Params: rows, H, N, layer0, actMode, n, nx
    rec.dispatch(this.pipes.value, [0, 0, 0, layer0 ? 1 : 0, 0, a.n, nx], bufs, groups, name);
  }

  /** Record `g ← g ⊙ f'(h)` in place over n elements, h the activated value. */
  act(rec: Recorder, kind: "tanh" | "sigmoid", n: number, h: GPUBuffer, g: GPUBuffer): void {
    const name = `${SHADER}.act`;
    checkDim(name, "n", n);
    needElems(name, "h", h, n);
    needElems(name, "g", g, n);
    const { groups, nx } = splitGroups(n, { perGroup: WORKGROUP });
    const params = [0, 0, 0, 0, kind === "tanh" ? 1 : 2, n, nx]; // actMode is word 4
    rec.dispatch(this.pipes.act, params, [h, g], groups, name);
  }
}
