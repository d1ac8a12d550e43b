/**
 * The experiments entry point (`@rwkv7/state-tuning/experiments`): testbeds, grids and shards,
 * the variant kinds on the CPU and GPU engines, the paired summary and the report that
 * `deno task reproduce` writes (docs/EXPERIMENTS.md).
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
