/**
 * The options, arguments and session interface of the WebGPU forward (`gpu_model.ts`).
 *
 * @module
 */
import type { HardwareMatmulOptions } from "../kernels/matmul.ts";
import type { WkvFormOption } from "../kernels/wkv_form.ts";
import type { GpuLiftedState } from "./gpu_lifted.ts";
import type { GpuState } from "./gpu_state.ts";
import type { GpuWeights, UploadOptions } from "./gpu_weights.ts";
import type { RwkvState } from "./types.ts";

/** Options of `GpuModel.create`: weight storage plus the WKV form. */
export type GpuModelOptions = UploadOptions & {
  wkvForm?: WkvFormOption;
  /** the hardware matmul kernels (default "auto": from the adapter, see `matmul_tiled.ts`) */
  matmul?: HardwareMatmulOptions;
};

/** Which logits a forward produces: the last token of each sequence, every token, or none. */
export type LogitsMode = "last" | "all" | "none";

/** Arguments of `GpuModel.recordForward`. */
export interface RecordForwardArgs {
  B: number;
  T: number;
  /** u32 token ids (B, T) starting at element `tokOff`; ids must be < V (not checked here) */
  tokens: GPUBuffer;
  tokOff?: number;
  state: GpuState;
  logits: LogitsMode;
  /** where the logits go ((B, V) or (B·T, V)), starting at element `outOff` */
  out?: GPUBuffer;
  outOff?: number;
  /**
   * the lifted state (docs/MATH.md §5) to advance with `state` when the model has a lifted set
   * (`GpuModel.setLifted`); default: the one `state` carries (`GpuState.liftedFor`)
   */
  liftedState?: GpuLiftedState;
  /**
   * run with these weights instead (same shapes and chunks, e.g. a LoRA set's merged weights
   * that share every other buffer); default `GpuModel.activeWeights`
   */
  weights?: GpuWeights;
}

/** A single-sequence stream over a {@link GpuModel} (the `LanguageModel` interface). */
export interface GpuSession {
  readonly vocabSize: number;
  /** Feed tokens; returns the logits after the last one (state advanced). */
  feed(tokens: number[]): Promise<Float32Array>;
  /** Read the current state back. */
  state(): Promise<RwkvState>;
  /** Free the session's state buffers. */
  destroy(): void;
}
