/**
 * The matmul part of `deno task bench`: GFLOP/s of the raw `linear` / `lowrank` kernels and of
 * `linearMatrix` / `lowrankMatrix` over uploaded f32 / f16 matrices (storage buffers and texture
 * copies), each beside numpy's on the same shape (`numpy_matmul.py`).
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { createStorage } from "../gpu/buffers.ts";
import { Recorder } from "../gpu/recorder.ts";
import { MatmulKernel } from "../kernels/matmul.ts";
import { uploadMatrixTextures } from "../kernels/matmul_tex.ts";
import { uploadMatrix } from "../model/gpu_weights.ts";
import { add, timeIt } from "./model.ts";

/** The numpy program: argv[1] = JSON shapes; prints {"gflops": [...], "gbs": n}. */
const NUMPY = new URL("./numpy_matmul.py", import.meta.url).pathname;

/** numpy's figures on this host. */
export interface Numpy {
  gflops: number[];
  gbs: number;
}

/** numpy's GFLOP/s for `x · Wᵀ` on each shape and its copy GB/s, or null without numpy. */
export async function numpyRef(python: string, shapes: number[][]): Promise<Numpy | null> {
  try {
    const p = await new Deno.Command(python, { args: [NUMPY, JSON.stringify(shapes)] }).output();
    if (!p.success) throw new Error(new TextDecoder().decode(p.stderr).trim().split("\n").pop());
    return JSON.parse(new TextDecoder().decode(p.stdout));
  } catch (e) {
    console.log(`numpy comparison skipped (${python}): ${(e as Error).message}`);
    return null;
  }
}

/** GFLOP/s of one recorded product (batched into one submit of ≈ 0.3 s), added as a row. */
async function timeProduct(
  gpu: Gpu,
  [M, K, N]: number[],
  test: string,
  quick: boolean,
  numpy: number | undefined,
  record: (rec: Recorder) => void,
): Promise<void> {
  const run = async (n: number) => {
    const rec = new Recorder(gpu, "bench.matmul");
    for (let i = 0; i < n; i++) record(rec);
    await rec.flush();
  };
  const one = await timeIt(1, () => run(1));
  const n = Math.max(1, Math.min(20, Math.round(0.3 / one)));
  const s = (await timeIt(quick ? 1 : 3, () => run(n))) / n;
  const g = (2 * M * K * N) / s / 1e9;
  const note = numpy
    ? `numpy ${numpy.toFixed(1)} GFLOP/s, ratio ${(100 * g / numpy).toFixed(1)}%`
    : "";
  add(`matmul ${M}x${K}x${N}`, test, g, "GFLOP/s", note);
}

export async function matmulSection(
  gpu: Gpu,
  quick: boolean,
  python: string,
): Promise<Numpy | null> {
  const mm = await MatmulKernel.create(gpu, { tune: "probe" });
  const t = mm.tuning;
  console.log(
    `matmul tiles (${t.source}): linear ${t.linear.TR}x${t.linear.TC}, ` +
      `lowrank ${t.lowrank.TR}x${4 * t.lowrank.TC} per invocation`,
  );
  const shapes = quick ? [[64, 768, 768]] : [[512, 512, 512], [64, 768, 768], [1, 768, 768]];
  const np = await numpyRef(python, shapes);
  for (const [si, [M, K, N]] of shapes.entries()) {
    const x = createStorage(gpu, "bench.x", M * K * 4);
    const w = createStorage(gpu, "bench.w", K * N * 4);
    const y = createStorage(gpu, "bench.y", M * N * 4);
    for (const entry of ["linear", "lowrank"] as const) {
      const test = entry === "linear" ? "x·Wᵀ" : "x·M";
      await timeProduct(gpu, [M, K, N], test, quick, np?.gflops[si], (rec) => {
        mm[entry](rec, { rows: M, K, Nc: N, x, w, y });
      });
    }
    for (const b of [x, w, y]) b.destroy();
  }
  return np;
}

/**
 * The same products through `linearMatrix` / `lowrankMatrix` over uploaded weight matrices:
 * f32 and f16 storage buffers, and their texture copies (the software-adapter path).
 */
export async function matrixSection(gpu: Gpu, quick: boolean, np: Numpy | null): Promise<void> {
  const mm = await MatmulKernel.create(gpu);
  await mm.prepare("f16");
  await mm.prepareTextures();
  const shapes = quick ? [[64, 768, 768]] : [[512, 512, 512], [64, 768, 768], [1, 768, 768]];
  for (const [si, [M, K, N]] of shapes.entries()) {
    const x = createStorage(gpu, "bench.x", M * K * 4);
    const y = createStorage(gpu, "bench.y", M * N * 4);
    const data = new Float32Array(K * N).map((_, i) => ((i * 2654435761) % 1000) / 1000 - 0.5);
    for (const dtype of ["f32", "f16"] as const) {
      for (const tex of [false, true]) {
        const W = uploadMatrix(gpu, "bench.W", data, N, K, undefined, dtype);
        const Mx = uploadMatrix(gpu, "bench.M", data, K, N, undefined, dtype);
        if (tex) {
          W.tex = uploadMatrixTextures(gpu, "bench.W", data, N, K, dtype);
          Mx.tex = uploadMatrixTextures(gpu, "bench.M", data, K, N, dtype);
        }
        for (const entry of ["linear", "lowrank"] as const) {
          const test = `${entry === "linear" ? "x·Wᵀ" : "x·M"} ${dtype}${tex ? " texture" : ""}`;
          await timeProduct(gpu, [M, K, N], test, quick, np?.gflops[si], (rec) => {
            if (entry === "linear") mm.linearMatrix(rec, W, { rows: M, x, y });
            else mm.lowrankMatrix(rec, Mx, { rows: M, x, y });
          });
        }
        for (const m of [W, Mx]) {
          m.chunks.forEach((c) => c.buffer.destroy());
          m.tex?.parts.forEach((p) => p.texture.destroy());
        }
      }
    }
    for (const b of [x, y]) b.destroy();
  }
}
