/**
 * The plain initial state S0 (every layer's (H, N, N) wkv state, shared by the batch) as a
 * {@link TrainablePart}: kind `state`, one tensor `s0` of L·H·N·N values.
 *
 * @module
 */
import { createStorage, readF32, writeStorage } from "../gpu/buffers.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { SumBatchKernel } from "../kernels/sum_batch.ts";
import type { GpuModel } from "../model/gpu_model.ts";
import type { RwkvConfig } from "../model/types.ts";
import type { GradBuffers } from "../model/gpu_backward.ts";
import type { PartBackwardArgs, PartTensor, TrainablePart } from "./parts.ts";
import { saveState, type StateFormat } from "./state_file.ts";

/** Options of {@link StatePart.create}. */
export interface StatePartOptions {
  /** per-layer (H·N·N) states to start from; default zeros */
  initialStates?: Float32Array[];
  /** learning-rate factor of S0; default 1 */
  lrScale?: number;
}

/** S0 trained by {@link tune}; create with {@link StatePart.create}. */
export class StatePart implements TrainablePart {
  readonly kind = "state";
  readonly tensors: PartTensor[];

  private constructor(
    readonly config: RwkvConfig,
    readonly lrScale: number,
    private readonly s0: GPUBuffer,
    private readonly grad: GPUBuffer,
    private readonly sum: SumBatchKernel,
    private readonly gpu: GpuModel["gpu"],
  ) {
    this.tensors = [{ name: "s0", param: s0, grad, n: StatePart.size(config) }];
  }

  /** L·H·N·N. */
  static size(c: RwkvConfig): number {
    return c.nLayer * c.nHead * c.headSize * c.headSize;
  }

  /**
   * S0 on the GPU, from `initialStates` or zeros.
   *
   * @throws {RangeError} when `initialStates` has the wrong layer count or lengths
   * @example
   * ```ts ignore
   * const s0 = await StatePart.create(model);
   * await tune(model, ds, { parts: [s0], steps: 100 });
   * const states = await s0.states();
   * s0.destroy();
   * ```
   */
  static async create(model: GpuModel, o: StatePartOptions = {}): Promise<StatePart> {
    const cfg = model.config, n = StatePart.size(cfg), gpu = model.gpu;
    const s0 = createStorage(gpu, "tune.S0", n * 4);
    const grad = createStorage(gpu, "tune.grad", n * 4);
    const part = new StatePart(
      cfg,
      o.lrScale ?? 1,
      s0,
      grad,
      await SumBatchKernel.create(gpu),
      gpu,
    );
    if (o.initialStates) writeStorage(gpu, s0, flattenStates(o.initialStates, cfg));
    return part;
  }

  /** S0 as the shared initial state of every sequence. */
  backwardArgs(): PartBackwardArgs {
    return { init: { kind: "shared", wkv: this.s0 } };
  }

  /** grad (+)= the batch-summed dL/dS0. */
  recordGrads(rec: Recorder, bufs: GradBuffers, accumulate: boolean): void {
    const n = this.tensors[0].n;
    this.sum.record(rec, { B: 1, n, src: bufs.dS0Sum, dst: this.grad, accumulate });
  }

  /** `{ s0 }`, flat (L, H, N, N). */
  async read(): Promise<Record<string, Float32Array>> {
    return { s0: await readF32(this.gpu, this.s0, this.tensors[0].n) };
  }

  /** Restore `{ s0 }`. */
  write(t: Record<string, Float32Array>): void {
    const n = this.tensors[0].n;
    if (t.s0?.length !== n) {
      throw new RangeError(`state part: s0 has ${t.s0?.length ?? 0} values, expected ${n}`);
    }
    writeStorage(this.gpu, this.s0, t.s0);
  }

  /** The current S0 per layer, each (H, N, N) value×key. */
  async states(): Promise<Float32Array[]> {
    const flat = (await this.read()).s0, L = this.config.nLayer, per = flat.length / L;
    return Array.from({ length: L }, (_, l) => flat.slice(l * per, (l + 1) * per));
  }

  /** Save the current S0 as a state file (see {@link saveState}). */
  async save(path: string, format: StateFormat = "peft", dtype?: "bf16" | "f32"): Promise<void> {
    await saveState(path, await this.states(), this.config, format, dtype);
  }

  /** Free S0 and its gradient. */
  destroy(): void {
    this.s0.destroy();
    this.grad.destroy();
  }
}

function flattenStates(states: Float32Array[], cfg: RwkvConfig): Float32Array {
  const n = StatePart.size(cfg), L = cfg.nLayer;
  if (states.length !== L || states.some((s) => s.length !== n / L)) {
    throw new RangeError(
      `initialStates: expected ${L} layers of ${n / L} values, got ${states.length} layers ` +
        `of ${states.map((s) => s.length).join("/")}`,
    );
  }
  const out = new Float32Array(n);
  states.forEach((s, l) => out.set(s, (l * n) / L));
  return out;
}
