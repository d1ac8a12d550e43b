/**
 * Host side of `shaders/matmul_vec4.wgsl`, the register-tiled products for 4-aligned shapes: the
 * pipeline of one tile (the template expanded by `codegen.ts`, optionally in the packed-f16
 * variant) and the timer `tune.ts` probes tiles with. `MatmulKernel` (`matmul.ts`) records them.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { splitGroups } from "../gpu/groups.ts";
import { getPipeline } from "../gpu/pipeline.ts";
import { Recorder } from "../gpu/recorder.ts";
import { expandTile, f16WeightSource } from "./codegen.ts";
import { type Entry, tileTemplate, type WeightDtype } from "./matmul_common.ts";
import type { Tile } from "./tune.ts";

const tileSource = new Map<string, string>();

/** The compiled pipeline of one template expansion (cached by the pipeline cache). */
export function tilePipeline(
  gpu: Gpu,
  entry: Entry,
  tile: Tile,
  dtype: WeightDtype = "f32",
): Promise<GPUComputePipeline> {
  const id = `${entry}.${tile.TR}x${tile.TC}${dtype === "f16" ? ".f16" : ""}`;
  let code = tileSource.get(id);
  if (code === undefined) {
    code = expandTile(tileTemplate("matmul_vec4"), entry, tile.TR, tile.TC);
    if (dtype === "f16") code = f16WeightSource(code);
    tileSource.set(id, code);
  }
  return getPipeline(gpu, {
    shader: `matmul_vec4.${id}`,
    entryPoint: entry,
    constants: { WG: tile.WG },
    code,
  });
}

/** Seconds per dispatch of one tile on one shape (wall time over 8 dispatches in one submit). */
export async function timeTile(
  gpu: Gpu,
  entry: Entry,
  tile: Tile,
  s: { rows: number; K: number; N: number; x: GPUBuffer; w: GPUBuffer; y: GPUBuffer },
): Promise<number> {
  const pipe = await tilePipeline(gpu, entry, tile);
  const cols = entry === "linear" ? tile.TC : 4 * tile.TC;
  const tiles = Math.ceil(s.rows / tile.TR) * Math.ceil(s.N / cols);
  const { groups: [gx, gy] } = splitGroups(tiles, { perGroup: tile.WG });
  const wStride = entry === "linear" ? s.K : s.N;
  const params = [s.rows, s.K, s.N, 0, s.K, 0, s.N, 0, s.N, 0, wStride, gx];
  const rec = new Recorder(gpu, "matmul.tune");
  const n = 8;
  for (let i = 0; i < n; i++) rec.dispatch(pipe, params, [s.x, s.w, s.x, s.y], [gx, gy]);
  const t0 = performance.now();
  await rec.flush();
  return (performance.now() - t0) / 1000 / n;
}
