/**
 * The hardware-matmul check shared by `tests/matmul_tiled_test.ts` (Deno, any adapter) and the
 * browser page `tests/browser/kernel_page.ts` (headless Chromium, whose SwiftShader offers real
 * `subgroups`): run `linearMatrix` (with a residual) and `lowrankMatrix` (tanh) on seeded random
 * operands and compare with the float64 reference. No Deno APIs, so it bundles for a page.
 */
import { createStorage, readF32, uploadStorage } from "../lib/gpu/buffers.ts";
import type { Gpu } from "../lib/gpu/device.ts";
import { Recorder } from "../lib/gpu/recorder.ts";
import { type HardwareMatmulOptions, MatmulKernel } from "../lib/kernels/matmul.ts";
import { uploadMatrix } from "../lib/model/gpu_weights.ts";
import { linear, matmul } from "../lib/ref/linear.ts";
import { errRatio, Rng } from "./_numeric.ts";

/** One product's outcome. */
export interface ProductCheck {
  /** `linear 4x300x68 f32 {"gemv":"on"}` */
  tag: string;
  /** ‖got − ref‖ / ‖ref‖ */
  errRatio: number;
  /** max |got − f32-weights reference| (f16 only: proves the weights were rounded) */
  f16Gap?: number;
}

/** The outcome of {@link checkHardwareMatmul}. */
export interface MatmulCheck {
  products: ProductCheck[];
  /** worst errRatio over all products */
  worst: number;
  /** labels of the kernels that ran, per shape (empty without timestamps) */
  ran: string[];
}

const roundF16 = (a: Float32Array) => Float32Array.from(new Float16Array(a));

/** Run both products for every `[rows, K, N]` shape; the caller asserts on the result. */
export async function checkHardwareMatmul(
  g: Gpu,
  hardware: HardwareMatmulOptions,
  dtype: "f32" | "f16",
  shapes: number[][],
  seed: number,
): Promise<MatmulCheck> {
  const mm = await MatmulKernel.create(g, { tune: "off", hardware });
  await mm.prepare(dtype);
  const rng = new Rng(seed);
  const out: MatmulCheck = { products: [], worst: 0, ran: [] };
  for (const [M, K, N] of shapes) {
    const x = rng.f32(M * K), W = rng.f32(N * K), Mx = rng.f32(K * N), res = rng.f32(M * N);
    const xb = uploadStorage(g, "x", x), rb = uploadStorage(g, "res", res);
    const wm = uploadMatrix(g, "W", W, N, K, undefined, dtype);
    const mx = uploadMatrix(g, "M", Mx, K, N, undefined, dtype);
    const y1 = createStorage(g, "y1", M * N * 4), y2 = createStorage(g, "y2", M * N * 4);
    const rec = new Recorder(g, "t", g.hasTimestamps);
    mm.linearMatrix(rec, wm, { rows: M, x: xb, y: y1, res: rb });
    mm.lowrankMatrix(rec, mx, { rows: M, x: xb, y: y2, act: "tanh" });
    await rec.flush();
    if (g.hasTimestamps) out.ran.push((await rec.timings()).map((t) => t.label).join(" "));
    const Wr = dtype === "f16" ? roundF16(W) : W, Mr = dtype === "f16" ? roundF16(Mx) : Mx;
    const ref1 = linear(x, Wr, M, K, N).map((s, i) => s + res[i]);
    const ref2 = matmul(x, Mr, M, K, N).map(Math.tanh);
    const got1 = await readF32(g, y1, M * N), got2 = await readF32(g, y2, M * N);
    const tag = `${M}x${K}x${N} ${dtype} ${JSON.stringify(hardware)}`;
    let f16Gap: number | undefined;
    if (dtype === "f16") {
      const exact = linear(x, W, M, K, N);
      f16Gap = Math.max(...got1.map((v, i) => Math.abs(v - exact[i])));
    }
    out.products.push({ tag: `linear ${tag}`, errRatio: errRatio(got1, ref1), f16Gap });
    out.products.push({ tag: `lowrank ${tag}`, errRatio: errRatio(got2, ref2) });
    for (const b of [xb, rb, y1, y2, ...wm.chunks.map((c) => c.buffer)]) b.destroy();
    for (const c of mx.chunks) c.buffer.destroy();
  }
  out.worst = Math.max(0, ...out.products.map((p) => p.errRatio));
  return out;
}
