/**
 * The texture matmul kernels (`shaders/matmul_tex.wgsl`, `lib/kernels/matmul_tex.ts`) against the
 * CPU reference: both layouts, f32 and f16 (rgba16float) weight textures, weights split into
 * several texture parts, residual/activation/strided outputs, few-row products, and the fallback
 * to the buffer kernels when x cannot be copied into a texture. Each case asserts which path
 * ran (by dispatch label), so a silent fallback fails. Tolerance: errRatio ≤ 1e-5 (f32 sums on
 * the GPU vs float64, f16 references on the rounded weights).
 */
import { assert, assertEquals, assertStrictEquals, assertThrowsMatch } from "@std/assert";
import { createStorage, readF32, uploadStorage } from "../lib/gpu/buffers.ts";
import { type Binding, type Groups, Recorder } from "../lib/gpu/recorder.ts";
import { MatmulKernel } from "../lib/kernels/matmul.ts";
import { npot, uploadMatrixTextures } from "../lib/kernels/matmul_tex.ts";
import { uploadMatrix } from "../lib/model/gpu_weights.ts";
import { linear, matmul } from "../lib/ref/linear.ts";
import { assertClose, gpu, Rng } from "./_helpers.ts";

const REL = 1e-5;
const ignore = !gpu;

/** A Recorder that notes the labels of its dispatches. */
class LabelRecorder extends Recorder {
  labels: string[] = [];
  override dispatch(
    p: GPUComputePipeline,
    params: number[],
    b: Binding[],
    g: Groups,
    label = p.label,
  ): this {
    this.labels.push(label);
    return super.dispatch(p, params, b, g, label);
  }
}

const roundF16 = (a: Float32Array) => Float32Array.from(new Float16Array(a));

Deno.test({ name: "texture matmul: layouts, dtypes, parts, few rows", ignore }, async () => {
  const g = gpu!;
  const mm = await MatmulKernel.create(g, { tune: "off" });
  await mm.prepare("f16");
  await mm.prepareTextures();
  const rng = new Rng(21);
  // K a multiple of 64 (x rows 256-byte aligned) so x is copied into a texture
  for (
    const [M, K, N, parts] of [[1, 64, 36, 8], [5, 128, 20, 16], [19, 64, 44, 12], [40, 192, 8, 64]]
  ) {
    for (const dtype of ["f32", "f16"] as const) {
      const x = rng.f32(M * K), W = rng.f32(N * K), Mx = rng.f32(K * N), res = rng.f32(M * N);
      const Wm = uploadMatrix(g, "W", W, N, K, undefined, dtype);
      Wm.tex = uploadMatrixTextures(g, "W", W, N, K, dtype, parts);
      const Mm = uploadMatrix(g, "M", Mx, K, N, undefined, dtype);
      Mm.tex = uploadMatrixTextures(g, "M", Mx, K, N, dtype, parts);
      assertStrictEquals(Wm.tex!.parts.length, Math.ceil(N / (parts & ~3)));
      const [xb, rb] = [x, res].map((d, i) => uploadStorage(g, `t${i}`, d));
      const y1 = createStorage(g, "y1", M * N * 4), y2 = createStorage(g, "y2", M * N * 4);
      const rec = new LabelRecorder(g, "t");
      mm.linearMatrix(rec, Wm, { rows: M, x: xb, y: y1, res: rb, act: "tanh" });
      mm.lowrankMatrix(rec, Mm, { rows: M, x: xb, y: y2, res: rb, act: "sigmoid" });
      assert(rec.labels.every((l) => l.includes(".tex.")), `texture path: ${rec.labels}`);
      await rec.flush();
      const w = dtype === "f16" ? roundF16(W) : W, m = dtype === "f16" ? roundF16(Mx) : Mx;
      const ref1 = linear(x, w, M, K, N).map((s, i) => Math.tanh(s + res[i]));
      const ref2 = matmul(x, m, M, K, N).map((s, i) => 1 / (1 + Math.exp(-(s + res[i]))));
      const tag = `${M}x${K}x${N} ${dtype} parts of ${parts}`;
      assertClose(await readF32(g, y1, M * N), ref1, { rel: REL }, `linear ${tag}`);
      assertClose(await readF32(g, y2, M * N), ref2, { rel: REL }, `lowrank ${tag}`);
      for (const b of [xb, rb, y1, y2]) b.destroy();
    }
  }
});

Deno.test(
  { name: "texture matmul: offsets, strides; unaligned x falls back", ignore },
  async () => {
    const g = gpu!;
    const mm = await MatmulKernel.create(g, { tune: "off" });
    await mm.prepareTextures();
    const rng = new Rng(22);
    const [M, K, N] = [7, 64, 24];
    for (const [xOff, xStride, path] of [[64, 128, ".tex."], [4, 68, "matmul.linear."]] as const) {
      const x = rng.f32(xOff + M * xStride), W = rng.f32(N * K), y0 = rng.f32(8 + M * 40);
      const Wm = uploadMatrix(g, "W", W, N, K);
      Wm.tex = uploadMatrixTextures(g, "W", W, N, K, "f32");
      const xb = uploadStorage(g, "x", x), y = uploadStorage(g, "y", y0);
      const rec = new LabelRecorder(g, "t");
      mm.linearMatrix(rec, Wm, { rows: M, x: xb, xOff, xStride, y, yOff: 8, yStride: 40 });
      assert(rec.labels.every((l) => l.includes(path)), `${path}: ${rec.labels}`);
      if (path !== ".tex.") assert(rec.labels.every((l) => !l.includes(".tex.")));
      await rec.flush();
      const xr = new Float64Array(M * K);
      for (let r = 0; r < M; r++) {
        for (let k = 0; k < K; k++) {
          xr[r * K + k] = x[xOff + r * xStride + k];
        }
      }
      const ref = linear(xr, W, M, K, N);
      const got = await readF32(g, y, 8 + M * 40);
      const pick = Float32Array.from(
        { length: M * N },
        (_, i) => got[8 + Math.floor(i / N) * 40 + i % N],
      );
      assertClose(pick, ref, { rel: REL }, `xOff ${xOff} xStride ${xStride}`);
      assertStrictEquals(got[7], y0[7], "values before yOff untouched");
    }
  },
);

Deno.test({ name: "texture uploads: unsupported widths get none", ignore }, () => {
  const g = gpu!;
  assertEquals(uploadMatrixTextures(g, "odd", new Float32Array(6), 2, 3, "f32"), undefined);
  const t = uploadMatrixTextures(g, "ok", new Float32Array(40 * 8), 40, 8, "f16", 16)!;
  assertEquals(t.parts.map((p) => [p.rowStart, p.rows]), [[0, 16], [16, 16], [32, 8]]);
  assertEquals(t.format, "rgba16float");
  // allocated at non-power-of-two sizes: 2 texels → 3 wide; 16 rows → 17, 8 → 9
  assertEquals(t.parts.map((p) => [p.texture.width, p.texture.height]), [[3, 17], [3, 17], [
    3,
    9,
  ]]);
  assertStrictEquals(t.bytes, 3 * (17 + 17 + 9) * 8);
  assertEquals(npot(1), 3);
  assertEquals(npot(64), 65);
  assertEquals(npot(65), 65);
  assertThrowsMatch(
    () => uploadMatrixTextures(g, "bad", new Float32Array(8), 2, 4, "f32", 2),
    /4 rows/,
  );
});
