/**
 * The tiled matmul kernels (`matmul_vec4.wgsl`) for every probe candidate tile, on shapes that are
 * not tile multiples, few-row products (T = 1 … 9) and offset/strided operands, against the CPU
 * reference. Tolerance: errRatio ≤ 1e-5 (f32 on the GPU vs float64).
 */
import { assertMatch, assertNotMatch } from "@std/assert";
import { createStorage, readF32, uploadStorage } from "../lib/gpu/buffers.ts";
import { Recorder } from "../lib/gpu/recorder.ts";
import { expandTile, MatmulKernel, tileTemplate } from "../lib/kernels/matmul.ts";
import { defaultTuning, LINEAR_TILES, LOWRANK_TILES } from "../lib/kernels/tune.ts";
import { linear, matmul } from "../lib/ref/matmul_vec4.ts";
import { assertClose, gpu, Rng } from "./_helpers.ts";

const REL = 1e-5;

Deno.test("expandTile repeats tagged lines and keeps one entry", () => {
  const code = expandTile(tileTemplate("matmul_vec4"), "lowrank", 2, 3);
  assertMatch(code, /var a1_2 = vec4<f32>\(0\.0\);/);
  assertNotMatch(code, /fn linear/);
  const lines = code.split("\n").filter((l) => !l.trim().startsWith("//"));
  for (const l of lines) assertNotMatch(l, /\$i|\$j|TRu|TCu|\/\/@/, l);
});

Deno.test(
  {
    name: "matmul_vec4 (register tiles): every candidate tile, odd shapes, few rows",
    ignore: !gpu,
  },
  async () => {
    const g = gpu!;
    const rng = new Rng(7);
    const n = Math.max(LINEAR_TILES.length, LOWRANK_TILES.length);
    for (let t = 0; t < n; t++) {
      const tuning = {
        linear: LINEAR_TILES[Math.min(t, LINEAR_TILES.length - 1)],
        lowrank: LOWRANK_TILES[Math.min(t, LOWRANK_TILES.length - 1)],
        source: "default" as const,
      };
      const mm = await MatmulKernel.create(g, { tuning });
      for (const [M, K, N] of [[1, 12, 36], [3, 20, 44], [9, 8, 12], [17, 36, 20], [33, 16, 68]]) {
        const x = rng.f32(M * K), W = rng.f32(N * K), Mx = rng.f32(K * N), res = rng.f32(M * N);
        const [xb, wb, mb, rb] = [x, W, Mx, res].map((d, i) => uploadStorage(g, `t${i}`, d));
        const y1 = createStorage(g, "y1", M * N * 4), y2 = createStorage(g, "y2", M * N * 4);
        const rec = new Recorder(g, "t");
        mm.linear(rec, { rows: M, K, Nc: N, x: xb, w: wb, y: y1, res: rb });
        mm.lowrank(rec, { rows: M, K, Nc: N, x: xb, w: mb, y: y2, act: "tanh" });
        await rec.flush();
        const ref1 = linear(x, W, M, K, N).map((s, i) => s + res[i]);
        const ref2 = matmul(x, Mx, M, K, N).map(Math.tanh);
        const tag = `${M}x${K}x${N} tiles ${JSON.stringify(tuning.linear)}`;
        assertClose(await readF32(g, y1, M * N), ref1, { rel: REL }, `linear ${tag}`);
        assertClose(await readF32(g, y2, M * N), ref2, { rel: REL }, `lowrank ${tag}`);
        for (const b of [xb, wb, mb, rb, y1, y2]) b.destroy();
      }
    }
  },
);

Deno.test(
  { name: "matmul_vec4 (register tiles): offsets, strides and accumulate", ignore: !gpu },
  async () => {
    const g = gpu!;
    const mm = await MatmulKernel.create(g, {
      tuning: defaultTuning({ isFallback: true, description: "" }),
    });
    const rng = new Rng(8);
    const [M, K, N, xs, ys] = [19, 24, 40, 32, 48];
    const x = rng.f32(4 + M * xs),
      W = rng.f32(N * K),
      Mx = rng.f32(K * N),
      y0 = rng.f32(M * ys + 8);
    const xr = new Float64Array(M * K);
    for (let r = 0; r < M; r++) for (let k = 0; k < K; k++) xr[r * K + k] = x[4 + r * xs + k];
    const [xb, wb, mb] = [x, W, Mx].map((d, i) => uploadStorage(g, `s${i}`, d));
    const y1 = uploadStorage(g, "y1", y0), y2 = uploadStorage(g, "y2", y0);
    const rec = new Recorder(g, "t");
    const common = {
      rows: M,
      K,
      Nc: N,
      x: xb,
      xOff: 4,
      xStride: xs,
      yOff: 8,
      yStride: ys,
      addY: true,
    };
    mm.linear(rec, { ...common, w: wb, y: y1 });
    mm.lowrank(rec, { ...common, w: mb, y: y2, act: "sigmoid" });
    await rec.flush();
    const lin = linear(xr, W, M, K, N), low = matmul(xr, Mx, M, K, N);
    const at = (r: number, c: number) => y0[8 + r * ys + c];
    const ref1 = lin.map((s, i) => s + at(Math.floor(i / N), i % N));
    const ref2 = low.map((s, i) => 1 / (1 + Math.exp(-(s + at(Math.floor(i / N), i % N)))));
    const pick = (y: Float32Array) =>
      Float32Array.from({ length: M * N }, (_, i) => y[8 + Math.floor(i / N) * ys + (i % N)]);
    assertClose(pick(await readF32(g, y1, M * ys + 8)), ref1, { rel: REL }, "linear strided");
    assertClose(pick(await readF32(g, y2, M * ys + 8)), ref2, { rel: REL }, "lowrank strided");
  },
);
