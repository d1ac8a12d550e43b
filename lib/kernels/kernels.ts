/**
 * Every forward kernel of the model, fetched once: `await Kernels.create(gpu, N)`.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { ChannelMixKernel } from "./channel_mix.ts";
import { GatesKernel } from "./gates.ts";
import { KeyNormKernel } from "./key_norm.ts";
import { GroupNormBonusKernel } from "./groupnorm_bonus.ts";
import { EmbedLayerNormKernel } from "./embed_layernorm.ts";
import { LayerNormKernel } from "./layernorm.ts";
import { type HardwareMatmulOptions, MatmulKernel } from "./matmul.ts";
import { TokenShiftKernel } from "./token_shift.ts";
import { Wkv7Kernel } from "./wkv7.ts";

/** The compiled kernels of the forward pass. */
export class Kernels {
  private constructor(
    readonly matmul: MatmulKernel,
    readonly layerNorm: LayerNormKernel,
    readonly embed: EmbedLayerNormKernel,
    readonly tokenShift: TokenShiftKernel,
    readonly gates: GatesKernel,
    readonly keyNorm: KeyNormKernel,
    readonly wkv: Wkv7Kernel,
    readonly groupNormBonus: GroupNormBonusKernel,
    readonly channelMix: ChannelMixKernel,
  ) {}

  /**
   * Compile (or fetch from the pipeline cache) every kernel for head size `N`.
   *
   * @example
   * ```ts ignore
   * const k = await Kernels.create(gpu, 64);
   * ```
   */
  static async create(gpu: Gpu, N: number, matmul?: HardwareMatmulOptions): Promise<Kernels> {
    const [mm, ln, emb, ts, gt, kn, wkv, gn, cm] = await Promise.all([
      MatmulKernel.create(gpu, { hardware: matmul }),
      LayerNormKernel.create(gpu),
      EmbedLayerNormKernel.create(gpu),
      TokenShiftKernel.create(gpu),
      GatesKernel.create(gpu),
      KeyNormKernel.create(gpu),
      Wkv7Kernel.create(gpu, N),
      GroupNormBonusKernel.create(gpu),
      ChannelMixKernel.create(gpu),
    ]);
    return new Kernels(mm, ln, emb, ts, gt, kn, wkv, gn, cm);
  }
}
