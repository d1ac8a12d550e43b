/**
 * Matmul kernel variants side by side for `deno task gpu-check`: the register-tiled kernels,
 * the workgroup-tiled product, the subgroup GEMV, and f16 weights (packed, and `shader-f16`
 * arithmetic), each timed on the same products and given as GFLOP/s and fractions of the peak.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { createStorage } from "../gpu/buffers.ts";
import { Recorder } from "../gpu/recorder.ts";
import { type HardwareMatmulOptions, MatmulKernel } from "../kernels/matmul.ts";
import { uploadMatrix } from "../model/gpu_weights.ts";
import type { PeakFigures } from "./cost.ts";

/** One variant of the matmul kernels. */
export interface MatmulVariant {
  name: string;
  dtype: "f32" | "f16";
  hardware: HardwareMatmulOptions;
}

/** The variants the adapter can run (forced kernels need their features). */
export function matmulVariants(gpu: Gpu): MatmulVariant[] {
  const off = { tiled: "off", gemv: "off", f16Math: "off" } as const;
  const v: MatmulVariant[] = [
    { name: "register tiles f32", dtype: "f32", hardware: off },
    { name: "workgroup-tiled f32", dtype: "f32", hardware: { ...off, tiled: "on" } },
    { name: "workgroup-tiled packed f16", dtype: "f16", hardware: { ...off, tiled: "on" } },
  ];
  if (gpu.hasF16) {
    v.push({
      name: "workgroup-tiled shader-f16",
      dtype: "f16",
      hardware: { ...off, tiled: "on", f16Math: "on" },
    });
  }
  if (gpu.hasSubgroups) {
    v.push({ name: "subgroup GEMV f32", dtype: "f32", hardware: { ...off, gemv: "on" } });
  }
  return v;
}

/** One timed product. */
export interface MatmulTime {
  variant: string;
  entry: "linear" | "lowrank";
  M: number;
  K: number;
  N: number;
  /** seconds per product */
  seconds: number;
  gflops: number;
  gbs: number;
  flopFraction: number | null;
  bandwidthFraction: number | null;
  timer: "timestamp" | "wall";
  /** the dispatch labels that ran (timestamp timer only), e.g. "matmul.linear.tiled" */
  kernels: string[];
}

async function secondsPer(
  gpu: Gpu,
  record: (rec: Recorder) => void,
): Promise<[number, "timestamp" | "wall", string[]]> {
  if (gpu.hasTimestamps) {
    const warm = new Recorder(gpu, "bench.mm.warm");
    record(warm);
    await warm.flush();
    const rec = new Recorder(gpu, "bench.mm", true);
    for (let i = 0; i < 5; i++) record(rec);
    await rec.flush();
    const t = await rec.timings();
    const ms = t.map((x) => x.ms).sort((a, b) => a - b);
    return [ms[ms.length >> 1] / 1000, "timestamp", [...new Set(t.map((x) => x.label))]];
  }
  const run = async (n: number) => {
    const rec = new Recorder(gpu, "bench.mm");
    for (let i = 0; i < n; i++) record(rec);
    const t0 = performance.now();
    await rec.flush();
    return (performance.now() - t0) / 1000;
  };
  const one = await run(1);
  const n = Math.max(1, Math.min(50, Math.round(0.3 / one)));
  return [(await run(n)) / n, "wall", []];
}

/**
 * Time `x · Wᵀ` and `x · M` for every variant and shape [M, K, N]; products of one entry whose
 * kernel does not apply (the GEMV on lowrank or M > 4) time the fallback and say so in the name.
 */
export async function benchMatmuls(
  gpu: Gpu,
  shapes: number[][],
  peak: PeakFigures,
  variants: MatmulVariant[] = matmulVariants(gpu),
): Promise<MatmulTime[]> {
  const out: MatmulTime[] = [];
  for (const v of variants) {
    const mm = await MatmulKernel.create(gpu, { tune: "off", hardware: v.hardware });
    await mm.prepare(v.dtype);
    for (const [M, K, N] of shapes) {
      const data = new Float32Array(K * N).map((_, i) => ((i * 2654435761) % 1000) / 1000 - 0.5);
      const x = createStorage(gpu, "bench.x", M * K * 4);
      const y = createStorage(gpu, "bench.y", M * N * 4);
      const W = uploadMatrix(gpu, "bench.W", data, N, K, undefined, v.dtype);
      const Mx = uploadMatrix(gpu, "bench.M", data, K, N, undefined, v.dtype);
      for (const entry of ["linear", "lowrank"] as const) {
        const [s, timer, kernels] = await secondsPer(gpu, (rec) => {
          if (entry === "linear") mm.linearMatrix(rec, W, { rows: M, x, y });
          else mm.lowrankMatrix(rec, Mx, { rows: M, x, y });
        });
        const gflops = 2 * M * K * N / s / 1e9;
        const bytes = K * N * (v.dtype === "f16" ? 2 : 4) + 4 * (M * K + M * N);
        const gbs = bytes / s / 1e9;
        out.push({
          ...{ variant: v.name, entry, M, K, N, seconds: s, gflops, gbs, timer, kernels },
          flopFraction: peak.gflops ? gflops / peak.gflops : null,
          bandwidthFraction: peak.gbs ? gbs / peak.gbs : null,
        });
      }
      for (const b of [x, y, ...W.chunks.map((c) => c.buffer), ...Mx.chunks.map((c) => c.buffer)]) {
        b.destroy();
      }
    }
  }
  return out;
}
