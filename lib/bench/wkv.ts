/**
 * The two WKV forward forms side by side for `deno task gpu-check` (sequential kernel and the
 * chunked form of docs/MATH.md §3), per head count and T, so a GPU run can set the chunked form's
 * threshold (`wkvForm: { auto: { minT, maxBHN } }`, lib/kernels/wkv_form.ts) from numbers.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { createStorage, uploadStorage } from "../gpu/buffers.ts";
import { Recorder } from "../gpu/recorder.ts";
import { Wkv7Kernel } from "../kernels/wkv7.ts";
import { Wkv7ChunkedKernel } from "../kernels/wkv7_chunked.ts";
import { chunkedFits, recordWkvForward } from "../kernels/wkv_form.ts";

/** One shape timed in both forms (ms per forward call, B = 1). */
export interface WkvTime {
  H: number;
  N: number;
  T: number;
  sequentialMs: number;
  /** null when the chunked form does not fit this adapter at this shape */
  chunkedMs: number | null;
  timer: "timestamp" | "wall";
}

async function ms(
  gpu: Gpu,
  record: (rec: Recorder) => void,
): Promise<[number, "timestamp" | "wall"]> {
  const warm = new Recorder(gpu, "bench.wkv.warm");
  record(warm);
  await warm.flush();
  if (gpu.hasTimestamps) {
    const rec = new Recorder(gpu, "bench.wkv", true);
    for (let i = 0; i < 3; i++) record(rec);
    await rec.flush();
    const t = await rec.timings();
    return [t.reduce((s, x) => s + x.ms, 0) / 3, "timestamp"];
  }
  const rec = new Recorder(gpu, "bench.wkv");
  record(rec);
  const t0 = performance.now();
  await rec.flush();
  return [performance.now() - t0, "wall"];
}

/** Time the WKV forward of B = 1 sequences for every H in `heads` and T in `Ts` (N = 64). */
export async function benchWkv(
  gpu: Gpu,
  heads: number[],
  Ts: number[],
  N = 64,
): Promise<WkvTime[]> {
  const wkv = await Wkv7Kernel.create(gpu, N);
  const chunked = await Wkv7ChunkedKernel.create(gpu, N);
  const out: WkvTime[] = [];
  for (const H of heads) {
    for (const T of Ts) {
      const n = T * H * N;
      const fill = (v: number) => new Float32Array(n).map((_, i) => v * (1 + ((i * 37) % 11) / 11));
      const [r, k, v, kk, a] = [0.1, 0.1, 0.2, 0.05, 0.5].map((x, i) =>
        uploadStorage(gpu, `bench.wkv.${i}`, fill(x))
      );
      const d = uploadStorage(gpu, "bench.wkv.d", new Float32Array(n).fill(0.9));
      const state = createStorage(gpu, "bench.wkv.S", H * N * N * 4);
      const y = createStorage(gpu, "bench.wkv.y", n * 4);
      const args = { B: 1, T, H, r, d, k, v, kk, a, state, stateOff: 0, y };
      const f = { wkv, wkvChunked: chunked };
      const [seq, timer] = await ms(gpu, (rec) => {
        recordWkvForward(rec, { ...f, wkvForm: "sequential" }, args);
      });
      const fits = chunkedFits(gpu, { B: 1, T, H, N });
      const ch = fits
        ? (await ms(gpu, (rec) => {
          recordWkvForward(rec, { ...f, wkvForm: "chunked" }, args);
        }))[0]
        : null;
      out.push({ H, N, T, sequentialMs: seq, chunkedMs: ch, timer });
      for (const b of [r, k, v, kk, a, d, state, y]) b.destroy();
    }
  }
  chunked.destroy();
  return out;
}

/** The smallest T (per H) from which the chunked form was faster at every larger measured T. */
export function suggestMinT(times: WkvTime[]): Record<number, number | null> {
  const out: Record<number, number | null> = {};
  for (const H of [...new Set(times.map((t) => t.H))]) {
    const rows = times.filter((t) => t.H === H).sort((a, b) => a.T - b.T);
    let minT: number | null = null;
    for (let i = rows.length - 1; i >= 0; i--) {
      const c = rows[i].chunkedMs;
      if (c === null || c >= rows[i].sequentialMs) break;
      minT = rows[i].T;
    }
    out[H] = minT;
  }
  return out;
}
