/**
 * A LoRA adapter on the GPU (docs/MATH.md §7): the factors A, B of every adapted Linear, their gradient
 * buffers, and a merged weight set {@link GpuLora.weights} in which each adapted Linear is
 * `W_eff = W + (α/r) B A` in buffers of its own while every other matrix and vector is the
 * model's. The frozen W is never written: forwards and backwards run through the merged set
 * (`recordForward({ weights })`, `GpuBackward.record({ weights })`, `model.useWeights`).
 *
 * Texture copies (the texture matmul path on software adapters): an adapted matrix whose base
 * has textures gets textures of its own, refreshed from the merged buffers by every
 * {@link GpuLora.recordMerge}, when the copy rules allow it (rows of `in` f32 a multiple of 256
 * bytes and each texture part inside one row chunk); otherwise the merged matrix has no
 * textures and its products take the buffer kernels. f16 weight storage is refused.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { createStorage, readF32, writeStorage } from "../gpu/buffers.ts";
import { Recorder } from "../gpu/recorder.ts";
import { LoraKernel } from "../kernels/lora.ts";
import type { GpuMatrix } from "../kernels/matmul.ts";
import type { MatrixTextures } from "../kernels/matmul_tex.ts";
import { loraScale } from "../ref/lora.ts";
import type { GpuModel } from "./gpu_model.ts";
import type { GpuLayerWeights, GpuWeights } from "./gpu_weights.ts";
import {
  checkLoraAdapter,
  LORA_FIELDS,
  type LoraAdapter,
  LoraError,
  type LoraTarget,
  loraTensorName,
} from "./lora.ts";

/** One adapted Linear on the GPU. */
export interface GpuLoraModule {
  layer: number;
  target: LoraTarget;
  out: number;
  in: number;
  /** (r, in), (out, r) and their gradients */
  A: GPUBuffer;
  B: GPUBuffer;
  dA: GPUBuffer;
  dB: GPUBuffer;
  /** the model's frozen W (read only) */
  base: GpuMatrix;
  /** W_eff, W's shape and chunks, own buffers (and textures when refreshable) */
  merged: GpuMatrix;
}

/** A LoRA adapter on the GPU; create with {@link GpuLora.create}. */
export class GpuLora {
  private constructor(
    readonly gpu: Gpu,
    private readonly kernel: LoraKernel,
    readonly r: number,
    readonly alpha: number,
    readonly modules: GpuLoraModule[],
    /** the model's weights with every adapted Linear replaced by its W_eff */
    readonly weights: GpuWeights,
  ) {}

  /** α / r */
  get scale(): number {
    return loraScale(this.r, this.alpha);
  }

  /** Bytes this set holds on the GPU (factors, gradients, merged matrices and textures). */
  get bytes(): number {
    let n = 0;
    for (const m of this.modules) {
      n += m.A.size + m.B.size + m.dA.size + m.dB.size + (m.merged.tex?.bytes ?? 0);
      for (const c of m.merged.chunks) n += c.buffer.size;
    }
    return n;
  }

  /**
   * Upload `adapter` for `model` and merge it (W_eff = W + (α/r) B A, submitted).
   *
   * @throws {LoraError} when the adapter does not fit the model or the model stores f16 weights
   * @example
   * ```ts ignore
   * const lora = await GpuLora.create(model, initLora(model.config, { r: 8 }));
   * const logits = await model.forward([[1, 2, 3]], model.createState(1), { weights: lora.weights });
   * ```
   */
  static async create(model: GpuModel, adapter: LoraAdapter): Promise<GpuLora> {
    checkLoraAdapter(adapter, model.config);
    const gpu = model.gpu, base = model.weights, r = adapter.r;
    const layers = base.layers.map((lw): GpuLayerWeights => ({ ...lw }));
    const modules = adapter.modules.map((a): GpuLoraModule => {
      const field = LORA_FIELDS[a.target], W = base.layers[a.layer][field];
      if (W.dtype !== "f32") {
        throw new LoraError(
          `LoRA needs f32 weights, but ${loraTensorName(a.layer, a.target, "A")}'s Linear is ` +
            `stored ${W.dtype}; create the model with GpuModel.create(gpu, weights, ` +
            `{ weightDtype: "f32" })`,
        );
      }
      const p = `lora.${a.layer}.${a.target}`;
      const buf = (n: string, len: number) => createStorage(gpu, `${p}.${n}`, len * 4);
      const m: GpuLoraModule = {
        layer: a.layer,
        target: a.target,
        out: a.out,
        in: a.in,
        A: buf("A", r * a.in),
        B: buf("B", a.out * r),
        dA: buf("dA", r * a.in),
        dB: buf("dB", a.out * r),
        base: W,
        merged: mergedMatrix(gpu, p, W),
      };
      layers[a.layer][field] = m.merged;
      return m;
    });
    const weights: GpuWeights = { ...base, layers };
    const set = new GpuLora(gpu, await LoraKernel.create(gpu), r, adapter.alpha, modules, weights);
    set.upload(adapter);
    const rec = new Recorder(gpu, "lora.merge");
    set.recordMerge(rec);
    rec.submit();
    return set;
  }

  /**
   * Write `adapter`'s A and B into this set (queued); call {@link recordMerge} after.
   *
   * @throws {LoraError} when the adapter's rank, α or modules differ from this set's
   */
  upload(adapter: LoraAdapter): void {
    const same = adapter.r === this.r && adapter.alpha === this.alpha &&
      adapter.modules.length === this.modules.length &&
      adapter.modules.every((a, i) =>
        a.layer === this.modules[i].layer && a.target === this.modules[i].target
      );
    if (!same) {
      throw new LoraError(
        `LoRA upload: the adapter (r ${adapter.r}, α ${adapter.alpha}, ${adapter.modules.length} ` +
          `modules) is not laid out like this set (r ${this.r}, α ${this.alpha}, ` +
          `${this.modules.length} modules); create a new GpuLora for it`,
      );
    }
    adapter.modules.forEach((a, i) => {
      const m = this.modules[i];
      if (a.A.length !== this.r * m.in || a.B.length !== m.out * this.r) {
        throw new LoraError(
          `LoRA upload: ${loraTensorName(a.layer, a.target, "A")} / lora_B hold ${a.A.length} / ` +
            `${a.B.length} values; expected ${this.r * m.in} / ${m.out * this.r}`,
        );
      }
      writeStorage(this.gpu, m.A, a.A);
      writeStorage(this.gpu, m.B, a.B);
    });
  }

  /** Record W_eff = W + (α/r) B A for every module, and refresh the merged textures. */
  recordMerge(rec: Recorder): void {
    for (const m of this.modules) {
      const f = { A: m.A, B: m.B, r: this.r, scale: this.scale };
      this.kernel.merge(rec, m.base, f, m.merged);
      refreshTextures(rec, m.merged);
    }
  }

  /**
   * Record dA = (α/r) Bᵀ dW and dB = (α/r) dW Aᵀ into each module's `dA`, `dB` from the
   * backward's weight gradients (`GradBuffers.dWeights`, which must be of these merged weights).
   *
   * @param accumulate add to dA, dB (later micro-batches) instead of overwriting them
   */
  recordGrads(rec: Recorder, dWeights: GpuWeights, accumulate: boolean): void {
    for (const m of this.modules) {
      const dW = dWeights.layers[m.layer][LORA_FIELDS[m.target]];
      const f = { A: m.A, B: m.B, r: this.r, scale: this.scale };
      this.kernel.grads(rec, { ...f, dW, dA: m.dA, dB: m.dB, accumulate });
    }
  }

  /** Read the adapter back (one sync per tensor). */
  async read(): Promise<LoraAdapter> {
    const modules = [];
    for (const m of this.modules) {
      const A = await readF32(this.gpu, m.A, this.r * m.in);
      const B = await readF32(this.gpu, m.B, m.out * this.r);
      modules.push({ layer: m.layer, target: m.target, out: m.out, in: m.in, A, B });
    }
    return { r: this.r, alpha: this.alpha, modules };
  }

  /** Read dA and dB back by tensor name (`blocks.{l}.{target}.lora_A` / `_B`). */
  async readGrads(): Promise<Record<string, Float32Array>> {
    const out: Record<string, Float32Array> = {};
    for (const m of this.modules) {
      out[loraTensorName(m.layer, m.target, "A")] = await readF32(this.gpu, m.dA, this.r * m.in);
      out[loraTensorName(m.layer, m.target, "B")] = await readF32(this.gpu, m.dB, m.out * this.r);
    }
    return out;
  }

  /** Free the set's own buffers and textures (never the model's). */
  destroy(): void {
    for (const m of this.modules) {
      for (const b of [m.A, m.B, m.dA, m.dB]) b.destroy();
      for (const c of m.merged.chunks) c.buffer.destroy();
      m.merged.tex?.parts.forEach((p) => p.texture.destroy());
    }
  }
}

/** W_eff buffers shaped and chunked like `W`, with textures when W has refreshable ones. */
function mergedMatrix(gpu: Gpu, label: string, W: GpuMatrix): GpuMatrix {
  const chunks = W.chunks.map((c) => ({
    rowStart: c.rowStart,
    rows: c.rows,
    buffer: createStorage(gpu, `${label}.W_eff[${c.rowStart}]`, c.rows * W.cols * 4),
  }));
  const m: GpuMatrix = { rows: W.rows, cols: W.cols, dtype: "f32", chunks };
  if (W.tex && texturesRefreshable(m, W.tex)) m.tex = texturesLike(gpu, label, W.tex);
  return m;
}

/** Whether every texture part of `tex` can be copied from one chunk of `m` (copy rules). */
function texturesRefreshable(m: GpuMatrix, tex: MatrixTextures): boolean {
  if (tex.format !== "rgba32float" || (m.cols * 4) % 256 !== 0) return false;
  return tex.parts.every((p) => chunkOf(m, p) !== undefined);
}

function chunkOf(m: GpuMatrix, p: { rowStart: number; rows: number }) {
  return m.chunks.find((c) =>
    c.rowStart <= p.rowStart && p.rowStart + p.rows <= c.rowStart + c.rows
  );
}

/** Empty textures of the sizes and format of `tex` (filled by {@link refreshTextures}). */
function texturesLike(gpu: Gpu, label: string, tex: MatrixTextures): MatrixTextures {
  const parts = tex.parts.map((p) => {
    const texture = gpu.device.createTexture({
      label: `${label}.W_eff.tex[${p.rowStart}]`,
      size: [p.texture.width, p.texture.height],
      format: tex.format,
      usage: GPUTextureUsage.TEXTURE_BINDING | GPUTextureUsage.COPY_DST,
    });
    return { texture, view: texture.createView(), rowStart: p.rowStart, rows: p.rows };
  });
  return { format: tex.format, parts, bytes: tex.bytes };
}

/** Copy the merged buffers into the merged textures (no-op without textures). */
function refreshTextures(rec: Recorder, m: GpuMatrix): void {
  for (const p of m.tex?.parts ?? []) {
    const c = chunkOf(m, p)!;
    const offset = (p.rowStart - c.rowStart) * m.cols * 4;
    rec.copyToTexture(c.buffer, offset, m.cols * 4, p.texture, [m.cols / 4, p.rows]);
  }
}
