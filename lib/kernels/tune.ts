/**
 * Start-up probe that picks the matmul tile sizes for the adapter at hand, remembered per device
 * in memory and, only when the caller names a `cacheFile`, per adapter description in that JSON
 * file, so later runs skip it. Nothing is read from the environment or the home directory: the
 * tiles depend on the adapter, the mode and the caller's explicit options only.
 *
 * Why it exists: the best register tile differs by orders of magnitude between adapters. On
 * Mesa's llvmpipe every storage-buffer load is a per-lane scalar loop, so large tiles (few loads
 * per FMA) win; on real GPUs large tiles waste registers and occupancy.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { isSoftwareAdapter } from "../gpu/software.ts";
import { createStorage } from "../gpu/buffers.ts";

/** One register-tile choice: TR rows × TC columns (lowrank: TC groups of 4 columns). */
export interface Tile {
  TR: number;
  TC: number;
  /** invocations per workgroup */
  WG: number;
}

/** Tiles of both matmul layouts. */
export interface MatmulTuning {
  /** `x · Wᵀ` (Linear, W [out, in]) */
  linear: Tile;
  /** `x · M` (low-rank, M [in, out]) */
  lowrank: Tile;
  /** where the choice came from */
  source: "default" | "probe" | "cache";
  /** measured GFLOP/s of the chosen tiles on the probe shape (probe and cache only) */
  gflops?: { linear: number; lowrank: number };
}

/** How {@link tuneMatmul} may decide: probe when nothing is cached, never probe, or re-probe. */
/**
 * "off": the defaults; "auto": a tuning remembered for this device or found in the `cacheFile`
 * (when one is given), else the defaults (never probes, so no start-up cost); "probe": like
 * "auto" but probes (and writes the `cacheFile`, when given) when nothing is found; "force":
 * always probe.
 */
export type TuneMode = "auto" | "off" | "probe" | "force";

/** Candidate tiles of the probe (all within 16 × 8 named accumulators). */
export const LINEAR_TILES: readonly Tile[] = [
  { TR: 4, TC: 4, WG: 64 },
  { TR: 8, TC: 4, WG: 64 },
  { TR: 8, TC: 8, WG: 64 },
  { TR: 16, TC: 8, WG: 64 },
];
/** Lowrank candidates: TC counts groups of 4 columns. */
export const LOWRANK_TILES: readonly Tile[] = [
  { TR: 4, TC: 1, WG: 64 },
  { TR: 4, TC: 2, WG: 64 },
  { TR: 8, TC: 2, WG: 64 },
  { TR: 16, TC: 2, WG: 64 },
];

/**
 * The tiles used when probing is off: large tiles for software adapters (load-bound), small
 * ones for GPUs (register- and occupancy-bound).
 */
export function defaultTuning(gpu: Pick<Gpu, "isFallback" | "description">): MatmulTuning {
  return isSoftwareAdapter(gpu)
    ? { linear: { TR: 16, TC: 8, WG: 64 }, lowrank: { TR: 16, TC: 2, WG: 64 }, source: "default" }
    : { linear: { TR: 4, TC: 4, WG: 64 }, lowrank: { TR: 4, TC: 1, WG: 64 }, source: "default" };
}

const CACHE_VERSION = 1;
const memo = new WeakMap<GPUDevice, MatmulTuning>();

type CacheDoc = Record<string, MatmulTuning & { version: number; date: string }>;

function readCache(f: string | undefined): CacheDoc {
  if (!f) return {};
  try {
    return JSON.parse(Deno.readTextFileSync(f)) as CacheDoc;
  } catch {
    return {};
  }
}

function writeCache(f: string | undefined, key: string, t: MatmulTuning): void {
  if (!f) return;
  try {
    const doc = readCache(f);
    doc[key] = { ...t, version: CACHE_VERSION, date: new Date().toISOString() };
    Deno.mkdirSync(f.slice(0, f.lastIndexOf("/")), { recursive: true });
    Deno.writeTextFileSync(f, JSON.stringify(doc, null, 2) + "\n");
  } catch {
    // read-only location or no permission: the in-memory result still holds for this process
  }
}

/** What the probe needs from the matmul kernel: time one tile on one shape. */
export type TileTimer = (
  entry: "linear" | "lowrank",
  tile: Tile,
  shape: { rows: number; K: number; N: number; x: GPUBuffer; w: GPUBuffer; y: GPUBuffer },
) => Promise<number>;

/**
 * The tiles for `gpu`: from memory, then `cacheFile` (when given), then (mode "probe" or
 * "force") a short probe of every candidate on a 64 × 256 × 256 product; otherwise
 * {@link defaultTuning}.
 *
 * @param time times one candidate in seconds (supplied by `MatmulKernel`)
 * @param cacheFile a JSON file of probe results per adapter description, read and written;
 *   omitted (the default): no persistent cache
 */
export async function tuneMatmul(
  gpu: Gpu,
  mode: TuneMode,
  time: TileTimer,
  cacheFile?: string,
): Promise<MatmulTuning> {
  if (mode === "off") return defaultTuning(gpu);
  const key = `${gpu.description}|v${CACHE_VERSION}`;
  if (mode === "auto" || mode === "probe") {
    const m = memo.get(gpu.device);
    if (m) return m;
    const c = readCache(cacheFile)[key];
    if (c && c.version === CACHE_VERSION && c.linear && c.lowrank) {
      const t: MatmulTuning = { linear: c.linear, lowrank: c.lowrank, source: "cache" };
      if (c.gflops) t.gflops = c.gflops;
      memo.set(gpu.device, t);
      return t;
    }
    if (mode === "auto") return defaultTuning(gpu);
  }
  const [rows, K, N] = [64, 256, 256];
  const x = createStorage(gpu, "tune.x", rows * K * 4);
  const w = createStorage(gpu, "tune.w", K * N * 4);
  const y = createStorage(gpu, "tune.y", rows * N * 4);
  const pick = async (entry: "linear" | "lowrank", tiles: readonly Tile[]) => {
    let best = tiles[0], bestS = Infinity;
    for (const tile of tiles) {
      await time(entry, tile, { rows, K, N, x, w, y }); // compile + warm up
      const s = Math.min(
        await time(entry, tile, { rows, K, N, x, w, y }),
        await time(entry, tile, { rows, K, N, x, w, y }),
      );
      if (s < bestS) [best, bestS] = [tile, s];
    }
    return { best, gflops: (2 * rows * K * N) / bestS / 1e9 };
  };
  try {
    const lin = await pick("linear", LINEAR_TILES);
    const low = await pick("lowrank", LOWRANK_TILES);
    const t: MatmulTuning = {
      linear: lin.best,
      lowrank: low.best,
      source: "probe",
      gflops: { linear: lin.gflops, lowrank: low.gflops },
    };
    memo.set(gpu.device, t);
    writeCache(cacheFile, key, t);
    return t;
  } finally {
    x.destroy();
    w.destroy();
    y.destroy();
  }
}
