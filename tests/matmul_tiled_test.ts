/**
 * The hardware matmul kernels (`lib/kernels/matmul_tiled.ts`) against the float64 reference,
 * forced on whatever adapter runs the tests (on llvmpipe "auto" keeps them off):
 *
 * - workgroup-tiled product, f32: errRatio ≤ 1e-5 (f32 sums vs float64);
 * - tiled with packed-f16 weights: errRatio ≤ 1e-5 against the reference on f16-rounded weights
 *   (the arithmetic is f32);
 * - tiled with `shader-f16` arithmetic (x staged as f16, products and 4-term dots in f16, sums
 *   in f32): errRatio ≤ 2e-3 against the reference on f16-rounded weights (rounding x to f16 alone
 *   gives ~3e-4); runs where the adapter offers `shader-f16` (lavapipe), else skipped;
 * - subgroup GEMV: the subgroup-size-1 check variant everywhere (errRatio ≤ 1e-5), the real
 *   `subgroups` kernel where offered, else skipped with a message.
 */
import { assert, assertEquals, assertMatch, assertThrows, assertThrowsMatch } from "@std/assert";
import { readF32, uploadStorage } from "../lib/gpu/buffers.ts";
import { describeGpu, type Gpu } from "../lib/gpu/device.ts";
import { Recorder } from "../lib/gpu/recorder.ts";
import { type HardwareMatmulOptions, MatmulKernel } from "../lib/kernels/matmul.ts";
import { checkHardwareMatmul } from "./_matmul_check.ts";
import { resolveHardwareMatmul } from "../lib/kernels/matmul_tiled.ts";
import { chooseWkvForm, mayChooseChunked, resolveWkvForm } from "../lib/kernels/wkv_form.ts";
import { linear } from "../lib/ref/linear.ts";
import { assertClose, gpu, Rng } from "./_helpers.ts";

if (gpu) console.log(describeGpu(gpu));
const SHAPES = [[16, 16, 16], [17, 36, 20], [65, 40, 130], [130, 33, 70], [64, 64, 64]];

/**
 * Run linearMatrix + lowrankMatrix (with res, act) through `tests/_matmul_check.ts` and assert
 * errRatio ≤ `rel` for every product, the kernels that ran, and that f16 weights were rounded.
 */
async function check(
  g: Gpu,
  hardware: HardwareMatmulOptions,
  dtype: "f32" | "f16",
  shapes: number[][],
  rel: number,
  seed: number,
  expect: RegExp,
): Promise<number> {
  const r = await checkHardwareMatmul(g, hardware, dtype, shapes, seed);
  for (const ran of r.ran) assertMatch(ran, expect, `kernels that ran: ${ran}`);
  for (const p of r.products) {
    assert(p.errRatio <= rel, `${p.tag}: errRatio ${p.errRatio.toExponential(3)} (tol ${rel})`);
    if (p.f16Gap !== undefined) assert(p.f16Gap > 1e-6, `${p.tag}: f16 equals f32?`);
  }
  return r.worst;
}

Deno.test("hardware matmul choice: off on software adapters, forced kernels need features", () => {
  const sw = { isFallback: true, description: "llvmpipe", hasF16: false, hasSubgroups: false };
  const hw = { isFallback: false, description: "NVIDIA H200", hasF16: true, hasSubgroups: true };
  const auto = resolveHardwareMatmul(sw as Gpu);
  assertEquals(auto, { tiled: false, tiledMinRows: 16, gemv: "off", f16Math: false });
  assertEquals(resolveHardwareMatmul(hw as Gpu), {
    tiled: true,
    tiledMinRows: 16,
    gemv: "subgroups",
    f16Math: true,
  });
  assertThrowsMatch(() => resolveHardwareMatmul(sw as Gpu, { gemv: "on" }), /"subgroups" feature/);
  assertThrowsMatch(() => resolveHardwareMatmul(sw as Gpu, { f16Math: "on" }), /"shader-f16"/);
  assertThrows(() => resolveHardwareMatmul(sw as Gpu, { tiled: "yes" as "on" }));
});

Deno.test({ name: "tiled matmul f32 vs reference (odd shapes)", ignore: !gpu }, async () => {
  const worst = await check(
    gpu!,
    { tiled: "on", tiledMinRows: 1 },
    "f32",
    SHAPES,
    1e-5,
    1,
    /linear\.tiled.*lowrank\.tiled/,
  );
  console.log(`tiled f32: worst errRatio ${worst.toExponential(2)}`);
});

Deno.test(
  { name: "tiled matmul, packed f16 weights vs rounded reference", ignore: !gpu },
  async () => {
    const o = { tiled: "on", tiledMinRows: 1, f16Math: "off" } as const;
    const worst = await check(gpu!, o, "f16", SHAPES.slice(0, 3), 1e-5, 2, /linear\.tiled\.f16 /);
    console.log(`tiled packed-f16: worst errRatio ${worst.toExponential(2)}`);
  },
);

const noF16 = !gpu?.hasF16;
if (gpu && noF16) {
  console.warn(
    `SKIP shader-f16 tiled matmul: ${gpu.description} offers no "shader-f16" (lavapipe does: ` +
      `DENO_WEBGPU_BACKEND=vulkan with its ICD)`,
  );
}
Deno.test(
  { name: "tiled matmul, shader-f16 arithmetic vs rounded reference", ignore: noF16 },
  async () => {
    const o = { tiled: "on", tiledMinRows: 1, f16Math: "on" } as const;
    const worst = await check(gpu!, o, "f16", SHAPES.slice(0, 3), 2e-3, 3, /tiled\.f16math/);
    console.log(`tiled shader-f16: worst errRatio ${worst.toExponential(2)}`);
  },
);

Deno.test({ name: "tiled matmul: offsets, strides, accumulate", ignore: !gpu }, async () => {
  const g = gpu!;
  const mm = await MatmulKernel.create(g, { tune: "off", hardware: { tiled: "on" } });
  const rng = new Rng(4);
  const [M, K, N, xs, ys] = [67, 21, 70, 25, 75];
  const x = rng.f32(3 + M * xs), W = rng.f32(N * K), y0 = rng.f32(5 + M * ys);
  const xr = new Float64Array(M * K);
  for (let r = 0; r < M; r++) for (let k = 0; k < K; k++) xr[r * K + k] = x[3 + r * xs + k];
  const xb = uploadStorage(g, "x", x),
    wb = uploadStorage(g, "W", W),
    yb = uploadStorage(g, "y", y0);
  const rec = new Recorder(g, "t");
  mm.linear(rec, {
    rows: M,
    K,
    Nc: N,
    x: xb,
    xOff: 3,
    xStride: xs,
    w: wb,
    y: yb,
    yOff: 5,
    yStride: ys,
    addY: true,
  });
  await rec.flush();
  const ref = linear(xr, W, M, K, N).map((s, i) => s + y0[5 + Math.floor(i / N) * ys + (i % N)]);
  const y = await readF32(g, yb, 5 + M * ys);
  const got = Float32Array.from(
    { length: M * N },
    (_, i) => y[5 + Math.floor(i / N) * ys + (i % N)],
  );
  assertClose(got, ref, { rel: 1e-5 }, "tiled strided accumulate");
  for (const b of [xb, wb, yb]) b.destroy();
});

const GEMV_SHAPES = [[1, 64, 36], [2, 130, 20], [3, 37, 9], [4, 300, 68]];

Deno.test({ name: "GEMV, subgroup-size-1 check variant, f32 and f16", ignore: !gpu }, async () => {
  const a = await check(gpu!, { gemv: "emulate" }, "f32", GEMV_SHAPES, 1e-5, 5, /matmul\.gemv/);
  const b = await check(
    gpu!,
    { gemv: "emulate" },
    "f16",
    GEMV_SHAPES,
    1e-5,
    6,
    /matmul\.gemv\.f16/,
  );
  console.log(
    `gemv (sg size 1): worst errRatio f32 ${a.toExponential(2)}, f16 ${b.toExponential(2)}`,
  );
});

const noSg = !gpu?.hasSubgroups;
if (gpu && noSg) {
  console.warn(
    `SKIP subgroup GEMV: ${gpu.description} offers no "subgroups" feature (neither llvmpipe nor ` +
      `lavapipe here do); its check variant ran instead, and the real kernel runs in headless ` +
      `Chromium (tests/browser_kernels_test.ts)`,
  );
}
Deno.test({ name: "GEMV with subgroups vs reference", ignore: noSg }, async () => {
  const worst = await check(gpu!, { gemv: "on" }, "f32", GEMV_SHAPES, 1e-5, 7, /matmul\.gemv/);
  console.log(`gemv (subgroups): worst errRatio ${worst.toExponential(2)}`);
});

Deno.test("chunked WKV threshold: an explicit rule, default today's (T ≥ 64, B·H·N ≤ 8192)", () => {
  const hw = {
    isFallback: false,
    description: "NVIDIA H200",
    limits: { maxStorageBufferBindingSize: 2 ** 30, maxComputeWorkgroupsPerDimension: 65535 },
  } as unknown as Gpu;
  const s = { B: 1, T: 512, H: 12, N: 64 };
  assertEquals(chooseWkvForm(hw, s), "chunked");
  assertEquals(chooseWkvForm(hw, { ...s, T: 32 }), "sequential");
  assertEquals(resolveWkvForm(hw, { auto: { minT: 1024 } }, s), "sequential");
  assertEquals(
    resolveWkvForm(hw, { auto: { minT: 16, maxBHN: 1 << 20 } }, { ...s, B: 16 }),
    "chunked",
  );
  assertEquals(chooseWkvForm(hw, { ...s, B: 16 }), "sequential");
  assertEquals(mayChooseChunked(hw, { auto: {} }, 64), true);
  const sw = { ...hw, isFallback: true, description: "llvmpipe" } as Gpu;
  assertEquals(resolveWkvForm(sw, { auto: { minT: 1 } }, s), "sequential");
  assertEquals(mayChooseChunked(sw, "auto", 64), false);
  assertThrows(() => resolveWkvForm(hw, { auto: { minT: 0 } }, s));
});
