/**
 * Running a shard of a grid and merging shards (docs/MATH.md §10 "Fan-out"). A shard folder holds
 * `rows.jsonl` (one {@link CellRow} a line, appended as each cell finishes, so a killed shard
 * keeps its rows and `resume` skips them) and `manifest.json` ({@link Manifest}). Every output,
 * merged ones included, keeps its manifest.
 *
 * @module
 */
import { z } from "zod";
import {
  type Cell,
  type CellRow,
  type CellRunner,
  gridCells,
  gridHash,
  type GridSpec,
  type GridSpecInput,
  GridSpecSchema,
  type Shard,
  shardCells,
} from "./grid.ts";

/** Where and how an output was made. */
export interface Manifest {
  /** the command line (`deno task reproduce …` arguments) */
  command: string[];
  gitCommit: string | null;
  /** the grid (options included) */
  spec: GridSpec;
  gridHash: string;
  seeds: number[];
  /** null: the whole grid */
  shard: Shard | null;
  machine: Record<string, string | number>;
  /** ISO times and the wall time in seconds (merged: first start to last end; the shards'
   * summed times are `extra.shardSeconds`) */
  started: string;
  finished: string | null;
  seconds: number | null;
  /** cells this output holds / the grid has */
  cellsDone: number;
  cellsTotal: number;
  /** merged outputs: the manifests of the shards joined */
  merged?: Manifest[];
  /** anything else the runner records (model hash, engine, adapter) */
  extra?: Record<string, unknown>;
}

/** The current commit of the working tree, or null outside git. */
export async function gitCommit(): Promise<string | null> {
  try {
    const out = await new Deno.Command("git", { args: ["rev-parse", "HEAD"], stderr: "null" })
      .output();
    return out.success ? new TextDecoder().decode(out.stdout).trim() : null;
  } catch {
    return null;
  }
}

/** The machine a run used: host, OS, CPU count, Deno version. */
export function machineInfo(): Record<string, string | number> {
  return {
    hostname: Deno.hostname(),
    os: `${Deno.build.os} ${Deno.build.arch}`,
    cpus: navigator.hardwareConcurrency,
    deno: Deno.version.deno,
  };
}

/** Options of {@link runShard}. */
export interface RunShardOptions {
  spec: GridSpecInput;
  /** omitted: every cell */
  shard?: Shard;
  runner: CellRunner;
  /** the shard's folder (created) */
  outDir: string;
  /** recorded in the manifest; default `Deno.args` */
  command?: string[];
  /** skip cells already in `outDir/rows.jsonl` */
  resume?: boolean;
  extra?: Record<string, unknown>;
  onRow?: (row: CellRow, done: number, total: number) => void;
}

/** Run the cells of one shard, writing `rows.jsonl` as they finish and `manifest.json`. */
export async function runShard(
  o: RunShardOptions,
): Promise<{ rows: CellRow[]; manifest: Manifest }> {
  const spec = GridSpecSchema.parse(o.spec);
  const all = gridCells(spec);
  const cells = o.shard ? shardCells(all, o.shard) : all;
  await Deno.mkdir(o.outDir, { recursive: true });
  const rowsPath = `${o.outDir}/rows.jsonl`;
  const rows = o.resume ? await readRows(rowsPath).catch(() => []) : [];
  if (!o.resume) await Deno.writeTextFile(rowsPath, "");
  const done = new Set(rows.map((r) => r.cell.index));
  const manifest: Manifest = {
    command: o.command ?? Deno.args,
    gitCommit: await gitCommit(),
    spec,
    gridHash: gridHash(spec),
    seeds: spec.seeds,
    shard: o.shard ?? null,
    machine: machineInfo(),
    started: new Date().toISOString(),
    finished: null,
    seconds: null,
    cellsDone: rows.length,
    cellsTotal: all.length,
    ...(o.extra ? { extra: o.extra } : {}),
  };
  const writeManifest = () =>
    Deno.writeTextFile(`${o.outDir}/manifest.json`, JSON.stringify(manifest, null, 2) + "\n");
  await writeManifest();
  const t0 = performance.now();
  for (const cell of cells) {
    if (done.has(cell.index)) continue;
    const row: CellRow = { cell, ...(await o.runner(cell)) };
    rows.push(row);
    await Deno.writeTextFile(rowsPath, JSON.stringify(row) + "\n", { append: true });
    manifest.cellsDone = rows.length;
    o.onRow?.(row, rows.length, cells.length);
  }
  manifest.finished = new Date().toISOString();
  manifest.seconds = Math.round((performance.now() - t0) / 100) / 10;
  await writeManifest();
  return { rows: sortRows(rows), manifest };
}

const RowSchema = z.object({
  cell: z.object({ index: z.number().int(), id: z.string() }).passthrough(),
  metrics: z.record(z.string(), z.number().nullable()),
  seconds: z.number(),
}).passthrough();

/** Read a `rows.jsonl` (each line validated). */
export async function readRows(path: string): Promise<CellRow[]> {
  const text = await Deno.readTextFile(path);
  return text.split("\n").filter((l) => l.trim()).map((line, i) => {
    const r = RowSchema.safeParse(JSON.parse(line));
    if (!r.success) throw new RangeError(`${path}:${i + 1}: not a grid row: ${r.error.message}`);
    return r.data as unknown as CellRow;
  });
}

function sortRows(rows: CellRow[]): CellRow[] {
  return [...rows].sort((a, b) => a.cell.index - b.cell.index);
}

/** Result of {@link mergeShards}. */
export interface Merged {
  rows: CellRow[];
  manifest: Manifest;
  /** cells of the grid no shard has (empty when complete) */
  missing: Cell[];
}

/**
 * Join shard folders into one table: every folder's manifest must carry the same grid hash;
 * a cell in two shards must have equal metrics; cells no shard ran are listed in `missing`
 * (an error unless `allowPartial`).
 */
export async function mergeShards(dirs: string[], allowPartial = false): Promise<Merged> {
  if (dirs.length === 0) throw new RangeError("--merge: give at least one shard folder");
  const manifests: Manifest[] = [];
  const byIndex = new Map<number, CellRow>();
  for (const dir of dirs) {
    const m = JSON.parse(await Deno.readTextFile(`${dir}/manifest.json`)) as Manifest;
    if (manifests.length && m.gridHash !== manifests[0].gridHash) {
      throw new RangeError(
        `--merge: ${dir} ran grid ${m.gridHash}, ${dirs[0]} ran ${manifests[0].gridHash}; ` +
          `merge only shards of one grid (same testbeds, variants, seeds and options)`,
      );
    }
    manifests.push(m);
    for (const row of await readRows(`${dir}/rows.jsonl`)) {
      const prev = byIndex.get(row.cell.index);
      if (prev && JSON.stringify(prev.metrics) !== JSON.stringify(row.metrics)) {
        throw new RangeError(`--merge: cell ${row.cell.id} appears twice with different results`);
      }
      byIndex.set(row.cell.index, row);
    }
  }
  const spec = GridSpecSchema.parse(manifests[0].spec);
  const all = gridCells(spec);
  const missing = all.filter((c) => !byIndex.has(c.index));
  if (missing.length && !allowPartial) {
    throw new RangeError(
      `--merge: ${missing.length} of ${all.length} cells are in no shard (first: ` +
        `${missing.slice(0, 3).map((c) => c.id).join(", ")}); run the missing shards or pass ` +
        `--allow-partial`,
    );
  }
  const starts = manifests.map((m) => m.started).sort();
  const ends = manifests.map((m) => m.finished ?? "").sort();
  const manifest: Manifest = {
    ...manifests[0],
    command: Deno.args,
    shard: null,
    started: starts[0],
    finished: ends[ends.length - 1] || null,
    // wall time from the first shard's start to the last one's end (shards may overlap)
    seconds: ends[ends.length - 1]
      ? (Date.parse(ends[ends.length - 1]) - Date.parse(starts[0])) / 1000
      : null,
    cellsDone: byIndex.size,
    merged: manifests,
    extra: {
      ...manifests[0].extra,
      shardSeconds: manifests.reduce((s, m) => s + (m.seconds ?? 0), 0),
    },
  };
  return { rows: sortRows([...byIndex.values()]), manifest, missing };
}

/** Write merged (or whole-grid) rows and their manifest into `dir`. */
export async function writeRows(dir: string, rows: CellRow[], manifest: Manifest): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(
    `${dir}/rows.jsonl`,
    rows.map((r) => JSON.stringify(r) + "\n").join(""),
  );
  await Deno.writeTextFile(`${dir}/manifest.json`, JSON.stringify(manifest, null, 2) + "\n");
}
