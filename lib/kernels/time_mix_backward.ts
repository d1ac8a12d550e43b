/**
 * Host wrapper of `shaders/time_mix_backward.wgsl`: the fused elementwise pieces of the
 * time-mix backward (gate + bonus, key normalisation + k_a + decay, value residual, activation
 * derivatives). The matrix products between them use {@link MatmulKernel}.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { createStorage } from "../gpu/buffers.ts";
import { getPipeline } from "../gpu/pipeline.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { checkDim, needElems, WORKGROUP } from "./common.ts";
import { splitGroups } from "../gpu/groups.ts";

type Entry = "gate" | "bonus" | "key_decay" | "decay" | "value" | "act" | "dw_rk" | "dw_key";
const ENTRIES = ["gate", "bonus", "key_decay", "decay", "value", "act"] as const;
const DW_ENTRIES = ["dw_rk", "dw_key"] as const;

/** Buffers of {@link TimeMixBackwardKernel.gateBonus}; all (rows, C). */
export interface GateBonusArgs {
  rows: number;
  H: number;
  N: number;
  vecs: GPUBuffer;
  /** r_k offset in vecs */
  rkOff: number;
  dog: GPUBuffer;
  o: GPUBuffer;
  g: GPUBuffer;
  r: GPUBuffer;
  k: GPUBuffer;
  v: GPUBuffer;
  /** outputs: gradient of the GroupNorm output, of g, and the bonus parts of dr, dk, dv */
  dgn: GPUBuffer;
  dg: GPUBuffer;
  dr: GPUBuffer;
  dk: GPUBuffer;
  dv: GPUBuffer;
}

/** Buffers of {@link TimeMixBackwardKernel.keyDecay}; all (rows, C). */
export interface KeyDecayArgs {
  rows: number;
  H: number;
  N: number;
  vecs: GPUBuffer;
  kkOff: number;
  kaOff: number;
  dkk: GPUBuffer;
  k0: GPUBuffer;
  kk: GPUBuffer;
  a: GPUBuffer;
  z: GPUBuffer;
  d: GPUBuffer;
  /** in dk, out dk0 */
  dk: GPUBuffer;
  /** in da (from the WKV backward), out dL/d(a0 + aHidden·a2) */
  da: GPUBuffer;
  /** in dd, out dz */
  dd: GPUBuffer;
}

/** Time-mix backward pipelines; create once with {@link TimeMixBackwardKernel.create}. */
export class TimeMixBackwardKernel {
  private constructor(
    private readonly pipes: Partial<Record<Entry, GPUComputePipeline>>,
    private readonly dummy: GPUBuffer,
    private readonly dummyW: GPUBuffer,
  ) {}

  /** Fetch the pipelines (the `dw_*` ones only with `weightGrads`). */
  static async create(gpu: Gpu, weightGrads = false): Promise<TimeMixBackwardKernel> {
    const pipes: Partial<Record<Entry, GPUComputePipeline>> = {};
    for (const e of weightGrads ? [...ENTRIES, ...DW_ENTRIES] : ENTRIES) {
      pipes[e] = await getPipeline(gpu, { shader: "time_mix_backward", entryPoint: e });
    }
    const unused = (l: string) => createStorage(gpu, `time_mix_backward.${l}`, 16);
    return new TimeMixBackwardKernel(pipes, unused("unusedRead"), unused("unusedWrite"));
  }

  #perHead(
    entry: Entry,
    rec: Recorder,
    a: { rows: number; H: number; N: number },
    extra: number[],
    bufs: Record<string, GPUBuffer>,
    perElement = false,
  ): void {
    const name = `time_mix_backward.${entry}`;
    checkDim(name, "rows", a.rows);
    checkDim(name, "H", a.H);
    checkDim(name, "N", a.N);
    const n = a.rows * a.H * a.N;
    for (const [k, b] of Object.entries(bufs)) {
      if (k !== "vecs") needElems(name, `${k} (B·T, C)`, b, n);
    }
    const { groups, nx } = splitGroups(perElement ? n : a.rows * a.H, { perGroup: WORKGROUP });
    const params = [a.rows, a.H, a.N, extra[0], extra[1], n, nx];
    const pipe = this.pipes[entry];
    if (!pipe) throw new RangeError(`${name}: create the kernel with weightGrads = true`);
    rec.dispatch(pipe, params, Object.values(bufs), groups, name);
  }

  /**
   * Record the output-gate and bonus-term backward: two dispatches, `gate` (per element) then
   * `bonus` (per row and head, reading do from `dgn`), each within 8 storage buffers.
   */
  gateBonus(rec: Recorder, a: GateBonusArgs): void {
    needElems("time_mix_backward.bonus", "vecs", a.vecs, a.rkOff + a.H * a.N);
    const { vecs, dog, o, g, r, k, v, dgn, dg, dr, dk, dv } = a;
    this.#perHead("gate", rec, a, [0, 0], { dog, o, g, dgn, dg }, true);
    this.#perHead("bonus", rec, a, [a.rkOff, 0], { vecs, dgn, r, k, v, dr, dk, dv });
  }

  /**
   * Record the kk-normalisation, k_a and `a` sigmoid backward (per row and head), then the decay
   * backward (per element, dd → dz): two dispatches, each within 8 storage buffers.
   */
  keyDecay(rec: Recorder, a: KeyDecayArgs): void {
    const C = a.H * a.N;
    needElems("time_mix_backward.key_decay", "vecs", a.vecs, Math.max(a.kkOff, a.kaOff) + C);
    const { vecs, dkk, k0, kk, a: av, z, d, dk, da, dd } = a;
    this.#perHead("key_decay", rec, a, [a.kkOff, a.kaOff], { vecs, dkk, k0, kk, a: av, dk, da });
    this.#perHead("decay", rec, a, [0, 0], { z, d, dd }, true);
  }

  /**
   * Weight gradients: record `out = ds · r ⊙ k` per row and head (ds = Σ_j dog g v over the
   * head), whose column sum is dL/dr_k. All (rows, C).
   */
  rkProducts(
    rec: Recorder,
    a: { rows: number; H: number; N: number } & Record<"dog" | "g" | "v" | "r" | "k", GPUBuffer>,
    out: GPUBuffer,
  ): void {
    const { dog, g, v, r, k } = a;
    this.#perHead("dw_rk", rec, a, [0, 0], { dog, g, v, r, k, out });
  }

  /**
   * Weight gradients: before {@link keyDecay}, with the same inputs, record the products whose
   * column sums are dL/dk_k (`out[0, n)`) and dL/dk_a (`out[n, 2n)`), n = rows·C.
   */
  keyProducts(rec: Recorder, a: KeyDecayArgs, out: GPUBuffer): void {
    const name = "time_mix_backward.dw_key", n = a.rows * a.H * a.N;
    needElems(name, "vecs", a.vecs, a.kkOff + a.H * a.N);
    needElems(name, "out (2, rows, C)", out, 2 * n);
    const { vecs, dkk, k0, kk, dk, a: av } = a;
    this.#perHead("dw_key", rec, a, [a.kkOff, 0], { vecs, dkk, k0, kk, dk, a: av, out });
  }

  /**
   * Record the value-residual backward over n = B·T·C elements. Layer 0 (`vGate` omitted):
   * dv += dvFirst. Layers ≥ 1: dv ← dv0, dvFirst += dv ⊙ vGate, dvpre written.
   */
  value(
    rec: Recorder,
    a: {
      n: number;
      dv: GPUBuffer;
      dvFirst: GPUBuffer;
      vGate?: GPUBuffer;
      vFirst?: GPUBuffer;
      v0?: GPUBuffer;
      dvpre?: GPUBuffer;
    },
  ): void {
    const name = "time_mix_backward.value";
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
    rec.dispatch(this.pipes.value!, [0, 0, 0, layer0 ? 1 : 0, 0, a.n, nx], bufs, groups, name);
  }

  /** Record `g ← g ⊙ f'(h)` in place over n elements, h the activated value. */
  act(rec: Recorder, kind: "tanh" | "sigmoid", n: number, h: GPUBuffer, g: GPUBuffer): void {
    const name = "time_mix_backward.act";
    checkDim(name, "n", n);
    needElems(name, "h", h, n);
    needElems(name, "g", g, n);
    const { groups, nx } = splitGroups(n, { perGroup: WORKGROUP });
    const params = [0, 0, 0, kind === "tanh" ? 1 : 2, 0, n, nx];
    rec.dispatch(this.pipes.act!, params, [h, g], groups, name);
  }
}
