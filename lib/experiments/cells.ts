/**
 * The cell runner of the decisive ablation (issue 11): one cell = testbed (with its seed and
 * sweep value) × variant × seed → tune with the chosen engine, score on the GPU model, return
 * the row. The variant kinds are in `variants.ts`.
 *
 * @module
 */
import { type CellContext, type CellOptions, VARIANT_KINDS } from "./variants.ts";

export {
  type CellContext,
  type CellOptions,
  CellOptionsSchema,
  VARIANT_KINDS,
  type VariantKind,
  type VariantResult,
} from "./variants.ts";
import type { Cell, CellRow, GridSpecInput } from "./grid.ts";
import type { HistoryRow } from "../train/history.ts";
import { addTestbed, factsTestbed, jsonlTestbed, skillTestbed, type Testbed } from "./testbeds.ts";

/** The testbed of a cell (its seed is the cell's seed, so variants of a seed are paired). */
export function cellTestbed(ctx: CellContext, cell: Cell): Testbed {
  const seed = cell.seed, tok = ctx.tokenizer;
  switch (cell.testbed) {
    case "facts":
      return factsTestbed(tok, { K: cell.params.K ?? 128, seed, sideItems: ctx.options.sideItems });
    case "skill":
      return skillTestbed(tok, { skill: ctx.options.skill as never, seed });
    case "add":
      return addTestbed(tok, { seed });
    case "jsonl":
      if (!ctx.dataset) {
        throw new RangeError("testbed jsonl needs a dataset: pass --data FILE.jsonl");
      }
      return jsonlTestbed(ctx.dataset, ctx.harness);
    default:
      throw new RangeError(
        `testbed "${cell.testbed}" has no cell runner; use facts, skill or add (jsonl: ` +
          `register it with its dataset in the runner)`,
      );
  }
}

/** Steps of a cell: `options.steps`, or its entry for the cell's testbed sweep value. */
export function cellSteps(o: CellOptions, cell: Cell): number {
  if (typeof o.steps === "number") return o.steps;
  const v = Object.values(cell.testbedParams)[0];
  const s = o.steps[String(v)];
  if (s === undefined) {
    throw new RangeError(
      `steps: no entry for ${JSON.stringify(cell.testbedParams)} in ${JSON.stringify(o.steps)}`,
    );
  }
  return s;
}

function curveOf(h: HistoryRow[]): NonNullable<CellRow["curve"]> {
  const c: NonNullable<CellRow["curve"]> = {
    steps: h.map((r) => r.step),
    losses: h.map((r) => r.loss),
  };
  if (h.every((r) => r.decorrelationLoss !== undefined)) {
    c.decorrelation = h.map((r) => r.decorrelationLoss!);
    c.correlation = h.map((r) => r.correlationLoss ?? NaN);
  }
  return c;
}

/**
 * Run `cells` one after another in this process (a notebook's grid): the rows in order;
 * `onRow` after each (a progress bar, a live plot).
 */
export async function runCells(
  ctx: CellContext,
  cells: Cell[],
  onRow?: (row: CellRow, done: number, total: number) => void,
): Promise<CellRow[]> {
  const rows: CellRow[] = [];
  for (const cell of cells) {
    rows.push({ cell, ...await runCell(ctx, cell) });
    onRow?.(rows[rows.length - 1], rows.length, cells.length);
  }
  return rows;
}

/** Run one cell: tune, score the held-out items (and the side scores), return the row. */
export async function runCell(ctx: CellContext, cell: Cell): Promise<Omit<CellRow, "cell">> {
  const kind = VARIANT_KINDS[cell.kind];
  if (!kind) {
    throw new RangeError(
      `variant kind "${cell.kind}" does not exist; kinds: ${Object.keys(VARIANT_KINDS).join(", ")}`,
    );
  }
  const t0 = performance.now();
  const tb = cellTestbed(ctx, cell);
  const steps = cell.kind === "untuned" ? 0 : cellSteps(ctx.options, cell);
  const res = await kind(ctx, cell, tb, steps);
  const tuneSeconds = (performance.now() - t0) / 1000;
  try {
    const model = res.model ?? ctx.model;
    const sc = await tb.score(model, res.state);
    const side = tb.side ? await tb.side(model, res.state) : {};
    const last = res.history[res.history.length - 1];
    return {
      metrics: {
        ...sc.metrics,
        ...side,
        trainable: res.trainable,
        steps,
        finalLoss: last?.loss ?? null,
        tuneSeconds,
      },
      items: sc.items,
      ...(res.history.length ? { curve: curveOf(res.history) } : {}),
      seconds: (performance.now() - t0) / 1000,
    };
  } finally {
    res.cleanup?.();
  }
}

/**
 * The default grids of `deno task reproduce --testbed …`, sized for about an hour in all on a
 * 2-core machine with the CPU engine and 2 workers (docs/EXPERIMENTS.md has the arithmetic):
 * untuned, plain state, lifted memory at M = N and 2N (the M sweep), lifted writes at M = N,
 * lifted memory + DBP at M = N (paired with lifted memory at M = N: same support vectors), and
 * LoRA at the rank whose trainable count is nearest plain state's and lifted M = N's.
 */
export function defaultGrid(
  testbed: "facts" | "skill" | "add" | "jsonl",
  seeds = 5,
  headSize = 64,
): GridSpecInput {
  const s = Array.from({ length: seeds }, (_, i) => i), N = headSize;
  const variants = [
    { name: "untuned", kind: "untuned" },
    { name: "state", kind: "state" },
    { name: "lifted-memory", kind: "lifted-memory", sweep: { key: "M", values: [N, 2 * N] } },
    { name: "lifted-writes", kind: "lifted-writes", options: { M: N } },
    { name: "lifted-dbp", kind: "dbp", options: { M: N } },
    { name: "lora-eq-state", kind: "lora", options: { equalTo: "state" } },
    { name: "lora-eq-lifted", kind: "lora", options: { equalTo: "lifted", M: N } },
  ];
  if (testbed === "facts") {
    return {
      testbeds: [{ name: "facts", sweep: { key: "K", values: [64] } }],
      variants,
      seeds: s,
      options: {
        steps: { "16": 300, "32": 400, "64": 500, "128": 1200, "256": 2000 },
        batch: 16,
      },
    };
  }
  return { testbeds: [{ name: testbed }], variants, seeds: s, options: { steps: 150, batch: 16 } };
}
