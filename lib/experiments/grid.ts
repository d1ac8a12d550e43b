/**
 * The ablation grid as a list of independent cells (docs/MATH.md §10 "Fan-out"): testbed × its sweep
 * (e.g. K facts) × seed × variant × the variant's sweep (e.g. M features), in one fixed order.
 * `--shard i/n` runs every n-th cell from i and writes its rows (`rows.jsonl`) and a manifest;
 * {@link mergeShards} joins shard folders into the table the unsharded run writes, so a Slurm
 * array, a Kubernetes Indexed Job or GNU parallel can run a big grid with no scheduler of ours.
 *
 * @module
 */
import { z } from "zod";

/** One axis swept inside a testbed or variant, e.g. `{ key: "K", values: [16, 64, 128] }`. */
export const SweepSchema = z.object({
  key: z.string().regex(/^[A-Za-z][A-Za-z0-9_]*$/),
  values: z.array(z.number()).min(1),
});

/** The grid: what varies, and the options every cell shares. */
export const GridSpecSchema = z.object({
  testbeds: z.array(z.object({ name: z.string().min(1), sweep: SweepSchema.optional() })).min(1),
  variants: z.array(z.object({
    /** row name, unique, e.g. `lifted-memory` */
    name: z.string().min(1),
    /** what runs: untuned, state, lifted-memory, lifted-writes, dbp, lora … */
    kind: z.string().min(1),
    sweep: SweepSchema.optional(),
    /** options of this variant (e.g. LoRA rank, Ŝ0's lr scale) */
    options: z.record(z.string(), z.unknown()).default({}),
  })).min(1),
  seeds: z.array(z.number().int().min(0)).min(1),
  /** options shared by every cell (steps, batch, learning rates, engine …) */
  options: z.record(z.string(), z.unknown()).default({}),
});
/** A grid as written. */
export type GridSpecInput = z.input<typeof GridSpecSchema>;
/** A grid with defaults filled in. */
export type GridSpec = z.output<typeof GridSpecSchema>;

/** One run of the grid. */
export interface Cell {
  /** position in the full grid (shards keep it) */
  index: number;
  /** e.g. `facts/K=128/seed=2/lifted-memory/M=256` */
  id: string;
  testbed: string;
  variant: string;
  kind: string;
  seed: number;
  /** the swept values of this cell (testbed's and variant's), e.g. `{ K: 128, M: 256 }` */
  params: Record<string, number>;
  /** the testbed's swept value alone (cells with equal testbed, these and seed are paired) */
  testbedParams: Record<string, number>;
  /** the variant's own options */
  options: Record<string, unknown>;
}

/**
 * Every cell of `spec` in the grid's fixed order (testbed, its sweep, seed, variant, the
 * variant's sweep): the runs of one seed stay together, so every variant has results early.
 *
 * @example
 * ```ts
 * import { gridCells } from "./grid.ts";
 * const cells = gridCells({
 *   testbeds: [{ name: "facts", sweep: { key: "K", values: [16, 64] } }],
 *   variants: [{ name: "state", kind: "state" }, { name: "lora", kind: "lora" }],
 *   seeds: [0, 1, 2],
 * });
 * console.assert(cells.length === 12 && cells[1].id === "facts/K=16/seed=0/lora");
 * ```
 */
export function gridCells(spec: GridSpecInput): Cell[] {
  const g = GridSpecSchema.parse(spec);
  const names = new Set(g.variants.map((v) => v.name));
  if (names.size !== g.variants.length) {
    throw new RangeError(
      `grid: variant names must be unique, got ${g.variants.map((v) => v.name)}`,
    );
  }
  const cells: Cell[] = [];
  const axis = (s?: z.output<typeof SweepSchema>) =>
    s ? s.values.map((v) => ({ [s.key]: v })) : [{}];
  const part = (p: Record<string, number>) => Object.entries(p).map(([k, v]) => `/${k}=${v}`);
  for (const tb of g.testbeds) {
    for (const tp of axis(tb.sweep)) {
      for (const seed of g.seeds) {
        for (const v of g.variants) {
          for (const vp of axis(v.sweep)) {
            const params = { ...tp, ...vp };
            cells.push({
              index: cells.length,
              id: `${tb.name}${part(tp).join("")}/seed=${seed}/${v.name}${part(vp).join("")}`,
              testbed: tb.name,
              variant: v.name,
              kind: v.kind,
              seed,
              params,
              testbedParams: tp,
              options: v.options,
            });
          }
        }
      }
    }
  }
  return cells;
}

/** A shard: `index` of `count` (0-based). */
export interface Shard {
  index: number;
  count: number;
}

/**
 * Parse `--shard i/n` (0 ≤ i < n).
 *
 * @example
 * ```ts
 * import { parseShard } from "./grid.ts";
 * console.assert(parseShard("2/8").index === 2 && parseShard("2/8").count === 8);
 * ```
 */
export function parseShard(text: string): Shard {
  const m = /^(\d+)\/(\d+)$/.exec(text.trim());
  const index = m ? Number(m[1]) : NaN, count = m ? Number(m[2]) : NaN;
  if (!m || !(count >= 1) || !(index < count)) {
    throw new RangeError(
      `--shard "${text}": expected i/n with 0 ≤ i < n, e.g. 0/4 … 3/4 ` +
        `(Slurm: $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)`,
    );
  }
  return { index, count };
}

/** The cells of one shard: every `count`-th cell from `index`. */
export function shardCells(cells: Cell[], shard: Shard): Cell[] {
  return cells.filter((c) => c.index % shard.count === shard.index);
}

/** One result row: the cell and what its run measured. */
export interface CellRow {
  cell: Cell;
  /** scalar results (accuracy, held-out loss, recall, trainable numbers …) */
  metrics: Record<string, number | null>;
  /** per-item 0/1 outcomes on the held-out items (McNemar, bootstrap) */
  items?: number[];
  /** training loss curve: steps and losses (convergence measures) */
  curve?: {
    steps: number[];
    losses: number[];
    /** DBP runs: decorrelation and correlation losses per step (means over layers and heads) */
    decorrelation?: number[];
    correlation?: number[];
  };
  /** compute time of the run in seconds (tuning + scoring) */
  seconds: number;
}

/** Runs one cell; the grid runner calls it for every cell of a shard. */
export type CellRunner = (cell: Cell) => Promise<Omit<CellRow, "cell">>;

/** A stable hash of the grid (FNV-1a over its canonical JSON): shards of one grid share it. */
export function gridHash(spec: GridSpecInput): string {
  const text = canonicalJson(GridSpecSchema.parse(spec));
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, "0");
}

/** JSON with object keys sorted (so equal values give equal text). */
export function canonicalJson(x: unknown): string {
  return JSON.stringify(
    x,
    (_k, v) =>
      v && typeof v === "object" && !Array.isArray(v)
        ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
        : v,
  );
}
