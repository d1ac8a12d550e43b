/**
 * LoRA as a trainable part (`lib/train/parts.ts`): the tensors are every A and B of a
 * {@link GpuLora} (`blocks.{l}.{att|ffn}.{name}.lora_A` / `_B`); the backward runs with weight
 * gradients through the set's merged weights, {@link LoraPart.recordGrads} turns each targeted
 * dW into dA, dB, and {@link LoraPart.afterUpdate} re-merges W_eff after Adam moved A and B.
 * The model's own weights are never written.
 *
 * @module
 */
import { Recorder } from "../gpu/recorder.ts";
import { GpuLora } from "../model/gpu_lora.ts";
import type { GpuModel } from "../model/gpu_model.ts";
import {
  initLora,
  type LoraAdapter,
  type LoraConfig,
  type LoraConfigInput,
  LoraError,
  loraTensorName,
  parseLoraConfig,
} from "../model/lora.ts";
import type { GpuBackwardOptions, GradBuffers } from "../model/gpu_backward.ts";
import type { PartBackwardArgs, PartTensor, TrainablePart } from "../train/parts.ts";

/** LoRA A and B trained by the tuning loop. */
export class LoraPart implements TrainablePart {
  readonly kind = "lora";
  readonly tensors: PartTensor[];
  readonly backwardOptions: GpuBackwardOptions = { weightGrads: true };

  /**
   * @param lora the GPU set (owned by the part from now on: {@link destroy} frees it)
   * @param lrScale learning-rate factor relative to the schedule
   */
  constructor(readonly lora: GpuLora, readonly lrScale: number) {
    if (!(lrScale > 0)) throw new LoraError(`LoraPart: lrScale = ${lrScale}; expected > 0`);
    this.tensors = lora.modules.flatMap((m) => [
      { name: loraTensorName(m.layer, m.target, "A"), param: m.A, grad: m.dA, n: lora.r * m.in },
      { name: loraTensorName(m.layer, m.target, "B"), param: m.B, grad: m.dB, n: m.out * lora.r },
    ]);
  }

  /**
   * The merged weights, and the weight gradients of this micro-batch alone (dA, dB accumulate
   * over micro-batches in {@link recordGrads}).
   */
  backwardArgs(): PartBackwardArgs {
    return { weights: this.lora.weights, accumulateWeightGrads: false };
  }

  /** dA = (α/r) Bᵀ dW, dB = (α/r) dW Aᵀ from the backward's weight gradients. */
  recordGrads(rec: Recorder, bufs: GradBuffers, accumulate: boolean): void {
    if (!bufs.dWeights) {
      throw new LoraError(
        "LoraPart.recordGrads: the backward produced no weight gradients; create it with " +
          "GpuBackward.create(model, part.backwardOptions) ({ weightGrads: true })",
      );
    }
    this.lora.recordGrads(rec, bufs.dWeights, accumulate);
  }

  /** Re-merge W_eff = W + (α/r) B A from the stepped A and B. */
  afterUpdate(rec: Recorder): void {
    this.lora.recordMerge(rec);
  }

  /** Every A and B by tensor name. */
  async read(): Promise<Record<string, Float32Array>> {
    const a = await this.lora.read(), out: Record<string, Float32Array> = {};
    for (const m of a.modules) {
      out[loraTensorName(m.layer, m.target, "A")] = m.A;
      out[loraTensorName(m.layer, m.target, "B")] = m.B;
    }
    return out;
  }

  /**
   * Restore what {@link read} returned and re-merge (submitted).
   *
   * @throws {LoraError} naming a missing tensor or one of the wrong length
   */
  write(tensors: Record<string, Float32Array>): void {
    const r = this.lora.r;
    const modules = this.lora.modules.map((m) => {
      const get = (w: "A" | "B", n: number) => {
        const name = loraTensorName(m.layer, m.target, w), x = tensors[name];
        if (!x || x.length !== n) {
          throw new LoraError(
            `LoraPart.write: ${name} ${x ? `holds ${x.length} values` : "is missing"}; ` +
              `expected ${n} (a checkpoint of this adapter's rank ${r} and targets)`,
          );
        }
        return x;
      };
      return { ...m, A: get("A", r * m.in), B: get("B", m.out * r) };
    });
    this.lora.upload({ r, alpha: this.lora.alpha, modules });
    const rec = new Recorder(this.lora.gpu, "lora.write");
    this.lora.recordMerge(rec);
    rec.submit();
  }

  /** The adapter as host values (for `saveLora`). */
  adapter(): Promise<LoraAdapter> {
    return this.lora.read();
  }

  /** dA and dB of the last {@link recordGrads} by tensor name (state-grad's `lora` field). */
  readGrads(): Promise<Record<string, Float32Array>> {
    return this.lora.readGrads();
  }

  /** Free the set's buffers. */
  destroy(): void {
    this.lora.destroy();
  }
}

/**
 * A LoRA part for `model`: a fresh adapter from options (A Kaiming-uniform from `seed`, B zero)
 * or a given adapter (e.g. `loadLora`), uploaded and merged.
 *
 * @param source LoRA options (see `LoraConfigSchema`) or an adapter
 * @param options.lrScale learning-rate factor; default the options' `lrScale` (1e-2)
 * @example
 * ```ts ignore
 * const part = await createLoraPart(model, { r: 8, alpha: 16 });
 * const bwd = await GpuBackward.create(model, part.backwardOptions);
 * ```
 */
export async function createLoraPart(
  model: GpuModel,
  source: LoraConfigInput | LoraAdapter,
  options: { lrScale?: number } = {},
): Promise<LoraPart> {
  const isAdapter = (s: LoraConfigInput | LoraAdapter): s is LoraAdapter =>
    Array.isArray((s as LoraAdapter).modules);
  const cfg: LoraConfig | undefined = isAdapter(source) ? undefined : parseLoraConfig(source);
  const adapter = isAdapter(source) ? source : initLora(model.config, cfg);
  const lrScale = options.lrScale ?? cfg?.lrScale ?? parseLoraConfig({}).lrScale;
  return new LoraPart(await GpuLora.create(model, adapter), lrScale);
}
