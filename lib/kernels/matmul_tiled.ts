/**
 * The hardware-adapter matmul kernels, chosen by {@link MatmulKernel} from the adapter's kind,
 * features and limits (never from environment variables):
 *
 * - `shaders/matmul_tiled.wgsl`: a workgroup-memory tiled product (64 × 64 output tiles, 4 × 4
 *   outputs per invocation, 256 invocations, ≤ 8 KiB workgroup memory) for products with many
 *   rows (T > 1), `x · Wᵀ` and `x · M`, in f32, packed-f16 weights (f32 arithmetic) and, where
 *   the adapter offers `shader-f16`, f16 storage and arithmetic (sums over K stay f32);
 * - `shaders/gemv_subgroup.wgsl`: a subgroup GEMV for few-row Linear products (T = 1 generation),
 *   where the adapter offers `subgroups`.
 *
 * Software adapters keep the register-tiled and texture kernels: barriers are very slow there.
 * Both kernels take the same Params and bindings as `matmul_vec4.wgsl`, four storage buffers.
 *
 * @module
 */
import { z } from "zod";
import type { Gpu } from "../gpu/device.ts";
import { isSoftwareAdapter } from "../gpu/software.ts";
import { getPipeline } from "../gpu/pipeline.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { splitGroups } from "../gpu/groups.ts";
import type { Entry, WeightDtype } from "./matmul_common.ts";
import { applyVariants, composeShader, type VariantName } from "./codegen.ts";

/** When the hardware kernels run: "auto" (from the adapter), "on" (forced), "off". */
const Switch = z.enum(["auto", "on", "off"]);

/** Options choosing the hardware matmul kernels; see {@link resolveHardwareMatmul}. */
export const HardwareMatmulOptionsSchema = z.strictObject({
  /** tiled product for rows ≥ `tiledMinRows`: "auto" = on hardware adapters (default) */
  tiled: Switch.default("auto"),
  /** fewest rows the tiled product takes (fewer: the register tiles); default 16 */
  tiledMinRows: z.number().int().min(1).default(16),
  /**
   * subgroup GEMV for Linear products with rows ≤ 4: "auto" = on hardware adapters offering
   * `subgroups`; "on" needs the feature; "emulate" runs the same kernel with a subgroup size of
   * 1 on any adapter (checks only)
   */
  gemv: z.enum(["auto", "on", "off", "emulate"]).default("auto"),
  /** f16 arithmetic for f16 weights in the tiled product: "auto" = where `shader-f16` exists */
  f16Math: Switch.default("auto"),
});

/** Options of the hardware matmul kernels (all optional, see the schema). */
export type HardwareMatmulOptions = z.input<typeof HardwareMatmulOptionsSchema>;

/** The kernels {@link resolveHardwareMatmul} picked for one adapter. */
export interface HardwareMatmulChoice {
  tiled: boolean;
  tiledMinRows: number;
  gemv: "off" | "subgroups" | "emulate";
  f16Math: boolean;
}

/**
 * Resolve the options for an adapter: "auto" turns the tiled product on for hardware adapters,
 * the GEMV where `subgroups` is enabled as well, f16 arithmetic where `shader-f16` is.
 *
 * @throws {Error} when a kernel is forced "on" but the device lacks its feature
 * @example
 * ```ts ignore
 * resolveHardwareMatmul(gpu, { tiled: "on" }); // { tiled: true, gemv: "off", … } on llvmpipe
 * ```
 */
export function resolveHardwareMatmul(
  gpu: Gpu,
  options: HardwareMatmulOptions = {},
): HardwareMatmulChoice {
  const o = HardwareMatmulOptionsSchema.parse(options);
  const hw = !isSoftwareAdapter(gpu);
  if (o.gemv === "on" && !gpu.hasSubgroups) {
    throw new Error(
      `matmul: gemv "on" needs the "subgroups" feature, which ${gpu.description} does not offer; ` +
        `use gemv "auto", "off" or "emulate"`,
    );
  }
  if (o.f16Math === "on" && !gpu.hasF16) {
    throw new Error(
      `matmul: f16Math "on" needs the "shader-f16" feature, which ${gpu.description} does not ` +
        `offer; use f16Math "auto" or "off"`,
    );
  }
  const gemv = o.gemv === "emulate"
    ? "emulate"
    : o.gemv === "on" || (o.gemv === "auto" && hw && gpu.hasSubgroups)
    ? "subgroups"
    : "off";
  return {
    tiled: o.tiled === "on" || (o.tiled === "auto" && hw),
    tiledMinRows: o.tiledMinRows,
    gemv,
    f16Math: o.f16Math === "on" || (o.f16Math === "auto" && hw && gpu.hasF16),
  };
}

/** Storage variants of the tiled product: f32, packed halves (f32 math), f16 math. */
type Variant = "f32" | "f16" | "f16math";

/**
 * The WGSL of the tiled product for one weight variant (`matmul_tile_common.wgsl` prepended).
 * "f16math" needs `shader-f16`: f16 staging and products, f32 sums.
 */
export function tiledSource(variant: Variant): string {
  const names: Record<Variant, VariantName[]> = { f32: [], f16: ["f16w"], f16math: ["f16math"] };
  return applyVariants(composeShader("matmul_tile_common", "matmul_tiled"), names[variant]);
}

/**
 * The WGSL of the subgroup GEMV: with `enable subgroups;`, or (`emulate`) with a subgroup size
 * of 1 (`subgroupAdd(v)` = v and every lane first), which compiles and runs anywhere.
 */
export function gemvSource(dtype: WeightDtype, emulate: boolean): string {
  const names: VariantName[] = [
    ...(dtype === "f16" ? ["f16w"] as const : []),
    emulate ? "sg1" : "subgroups",
  ];
  return applyVariants(composeShader("matmul_tile_common", "gemv_subgroup"), names);
}

/** The rows and columns of one product, plus the parameter words and bindings already checked. */
export interface HardwareProduct {
  entry: Entry;
  rows: number;
  Nc: number;
  dtype: WeightDtype;
  /** the 11 Params words of `matmul.wgsl` (nx is appended here) */
  params: number[];
  /** x, w, res, y */
  bufs: GPUBuffer[];
}

/** Compiled hardware kernels per weight dtype; see {@link resolveHardwareMatmul}. */
export class MatmulHardware {
  readonly #tiled = new Map<WeightDtype, Record<Entry, GPUComputePipeline>>();
  readonly #gemv = new Map<WeightDtype, GPUComputePipeline>();

  private constructor(private readonly gpu: Gpu, readonly choice: HardwareMatmulChoice) {}

  /** The kernels for `choice`, or undefined when none is chosen. */
  static create(gpu: Gpu, choice: HardwareMatmulChoice): MatmulHardware | undefined {
    if (!choice.tiled && choice.gemv === "off") return undefined;
    return new MatmulHardware(gpu, choice);
  }

  /** Compile the chosen kernels for weights stored as `dtype`. */
  async prepare(dtype: WeightDtype): Promise<void> {
    const gpu = this.gpu, c = this.choice;
    if (c.tiled && !this.#tiled.has(dtype)) {
      const variant: Variant = dtype === "f32" ? "f32" : c.f16Math ? "f16math" : "f16";
      const code = tiledSource(variant);
      const pipes = {} as Record<Entry, GPUComputePipeline>;
      for (const entry of ["linear", "lowrank"] as const) {
        pipes[entry] = await getPipeline(gpu, {
          shader: `matmul_tiled.${variant}`,
          entryPoint: entry,
          code,
        });
      }
      this.#tiled.set(dtype, pipes);
    }
    if (c.gemv !== "off" && !this.#gemv.has(dtype)) {
      const emulate = c.gemv === "emulate";
      this.#gemv.set(
        dtype,
        await getPipeline(gpu, {
          shader: `gemv_subgroup.${dtype}${emulate ? ".sg1" : ""}`,
          entryPoint: "linear",
          code: gemvSource(dtype, emulate),
        }),
      );
    }
  }

  /** Record the product if a hardware kernel takes it; false (nothing recorded) otherwise. */
  record(rec: Recorder, a: HardwareProduct): boolean {
    const gemv = this.#gemv.get(a.dtype);
    const tag = a.dtype === "f16" ? (this.choice.f16Math ? ".f16math" : ".f16") : "";
    if (gemv && a.entry === "linear" && a.rows <= 4) {
      const { groups: [gx, gy] } = splitGroups(a.Nc, {
        perGroup: 4,
        maxPerDim: this.gpu.limits.maxComputeWorkgroupsPerDimension,
      });
      rec.dispatch(gemv, [...a.params, gx], a.bufs, [gx, gy], `matmul.gemv${tag}`);
      return true;
    }
    const tiled = this.#tiled.get(a.dtype);
    if (!tiled || a.rows < this.choice.tiledMinRows) return false;
    const gx = Math.ceil(a.Nc / 64), gy = Math.ceil(a.rows / 64);
    const max = this.gpu.limits.maxComputeWorkgroupsPerDimension;
    if (gx > max || gy > max) return false;
    rec.dispatch(
      tiled[a.entry],
      [...a.params, gx],
      a.bufs,
      [gx, gy],
      `matmul.${a.entry}.tiled${tag}`,
    );
    return true;
  }
}
