/**
 * The evaluation entry point (`@rwkv7/state-tuning/eval`): the lm-evaluation-harness tasks and
 * their protocols, the scorer, per-item metrics, paired comparisons, the report tables and the
 * statistics behind the intervals (docs/MATH.md §7).
 *
 * ```ts ignore
 * import { getGpu, GpuModel, loadModel, loadWorldTokenizer } from "@rwkv7/state-tuning";
 * import { evaluateTask, formatResults, prepareTask, Scorer } from "@rwkv7/state-tuning/eval";
 * const model = await GpuModel.create(await getGpu(), (await loadModel("model.pth")).weights);
 * const scorer = new Scorer(model, await loadWorldTokenizer("rwkv_vocab_v20230424.txt"));
 * const task = await prepareTask("arc_easy", { dataDir: "data", limit: 100 });
 * console.log(formatResults([await evaluateTask(scorer, task)]));
 * ```
 *
 * @module
 */
export * from "./task_types.ts";
export { type PrepareOptions, prepareTask } from "./tasks.ts";
export {
  aggregate,
  compareResults,
  type EvaluateOptions,
  evaluateTask,
  type ItemRecord,
  type MetricResult,
  type PairedComparison,
  type TaskResult,
} from "./evaluate.ts";
export { type RowScore, Scorer, type ScorerOptions } from "./scorer.ts";
export { formatComparisons, formatResults, formatSubjects, writeResults } from "./report.ts";
export {
  argmax,
  charLength,
  exactMatch,
  extractFlexible,
  extractStrict,
  normalizeNumber,
  normPrediction,
  tokenLogprob,
} from "./metrics.ts";
export * from "../util/stats.ts";
