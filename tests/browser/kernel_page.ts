/**
 * A page module for `tests/browser_kernels_test.ts`, bundled with `deno bundle --platform
 * browser`: it runs the hardware kernels that need a feature no Deno adapter here offers — the
 * GEMV with real `subgroups` (headless Chromium's SwiftShader has them, subgroup size 4) —
 * against the float64 reference inside the page and returns what it measured.
 */
import { getGpu } from "../../lib/gpu/device.ts";
import { provideShaderSources } from "../../lib/gpu/pipeline.ts";
import { checkHardwareMatmul, type MatmulCheck } from "../_matmul_check.ts";

/** What the page reports back to the test. */
export interface PageReport {
  /** the device's features */
  features: string[];
  /** `GPUAdapterInfo.subgroupMinSize` / `subgroupMaxSize` where the browser reports them */
  subgroupSizes: [number | null, number | null];
  /** undefined when the adapter offers no `subgroups` */
  gemv?: { f32: MatmulCheck; f16: MatmulCheck };
}

/** The shapes of the GEMV check: 1–4 rows, K and N not multiples of the subgroup or tile. */
export const GEMV_SHAPES = [[1, 64, 36], [2, 130, 20], [3, 37, 9], [4, 300, 68]];

async function runKernelCheck(shaders: Record<string, string>): Promise<PageReport> {
  provideShaderSources(shaders);
  const gpu = await getGpu({ limits: "default" });
  const adapter = await navigator.gpu.requestAdapter();
  const info = adapter?.info as { subgroupMinSize?: number; subgroupMaxSize?: number } | undefined;
  const report: PageReport = {
    features: [...gpu.device.features],
    subgroupSizes: [info?.subgroupMinSize ?? null, info?.subgroupMaxSize ?? null],
  };
  if (!gpu.hasSubgroups) return report;
  report.gemv = {
    f32: await checkHardwareMatmul(gpu, { gemv: "on" }, "f32", GEMV_SHAPES, 7),
    f16: await checkHardwareMatmul(gpu, { gemv: "on" }, "f16", GEMV_SHAPES, 8),
  };
  return report;
}

(globalThis as unknown as { runKernelCheck: typeof runKernelCheck }).runKernelCheck =
  runKernelCheck;
