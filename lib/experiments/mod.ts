/**
 * The experiments entry point (`@rwkv7/state-tuning/experiments`): testbeds, grids and shards,
 * the variant kinds on the CPU and GPU engines, the paired summary and the report that
 * `deno task reproduce` writes (docs/EXPERIMENTS.md).
 *
 * ```ts ignore
 * import { CellOptionsSchema, gridCells, runCells } from "@rwkv7/state-tuning/experiments";
 * import { summarise } from "@rwkv7/state-tuning/experiments";
 * const spec = { testbeds: [{ name: "facts" }], variants: [{ name: "state", kind: "state" }] };
 * const options = CellOptionsSchema.parse({ steps: 50 });
 * const rows = await runCells({ weights, model, tokenizer, options }, gridCells(spec));
 * console.log(summarise(rows, { metric: "recall", baseline: "state" }));
 * ```
 *
 * @module
 */
export * from "./testbeds.ts";
export * from "./grid.ts";
export * from "./fanout.ts";
export * from "./summary.ts";
export * from "./cpu_tune.ts";
export * from "./cells.ts";
export { cellLifted, LiftedVariantSchema, loraRank, LoraVariantSchema } from "./variants.ts";
export { type CpuLiftedPart, cpuLiftedPart, type CpuLoraPart, cpuLoraPart } from "./cpu_parts.ts";
export { capacityFigure, intervalFigure, lossBandFigure } from "./figures.ts";
export { reportMarkdown, type ReportOptions, writeReport } from "./report.ts";
