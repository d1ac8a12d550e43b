/**
 * Running a prepared task on a {@link Scorer}: per-item records (rendered prompt, choice
 * scores, prediction), aggregated metrics with standard errors, MMLU per subject, and paired
 * comparisons between two runs on the same items.
 *
 * @module
 */
import type { RwkvState } from "../model/types.ts";
import { mcnemarExact, meanStderr } from "./metrics.ts";
import type { Scorer } from "./scorer.ts";
import type { EvalItem, PreparedTask, TaskName } from "./tasks.ts";

/** What is saved for one item (one jsonl line). */
export interface ItemRecord {
  id: string;
  subject?: string;
  /** The rendered prompt (prefix + context of the first row). */
  prompt: string;
  /** Each row's context after the prefix, when the rows differ (WinoGrande). */
  contexts?: string[];
  /** The scored continuations. */
  continuations?: string[];
  /** Summed log-likelihood of each continuation. */
  logliks?: number[];
  /** Number of tokens of each continuation. */
  tokens?: number[];
  /** The generated text (generation tasks). */
  generated?: string;
  prediction: string | number;
  gold: string | number;
  /** Per-item metric values (0/1 for accuracies, log-likelihood for perplexity). */
  metrics: Record<string, number>;
}

/** One aggregated metric. */
export interface MetricResult {
  metric: string;
  value: number;
  /** Sample standard deviation / √n (perplexity: delta method, ppl · stderr of mean loglik). */
  stderr: number;
  n: number;
}

/** The result of one task under one state. */
export interface TaskResult {
  task: TaskName;
  /** Label of the state evaluated ("none" or the state file). */
  state: string;
  nShot: number;
  split: string;
  n: number;
  metrics: MetricResult[];
  /** MMLU: accuracy per subject. */
  subjects?: { subject: string; n: number; acc: number; stderr: number }[];
  seconds: number;
  items: ItemRecord[];
}

/** Options of {@link evaluateTask}. */
export interface EvaluateOptions {
  /** Label of the state (reported). Default "none". */
  state?: string;
  /** Most tokens generated per item (GSM8K). Default 256. */
  maxGenTokens?: number;
  /**
   * A per-item initial state (test-time tuning: the state tuned for this item). When it
   * returns a state, that item's few-shot prefix runs from it instead of using the cache.
   */
  initialState?: (item: EvalItem, index: number) => Promise<RwkvState | undefined>;
  /** Called after each item. */
  onProgress?: (done: number, total: number) => void;
}

/** Aggregate per-item records into the task's metrics. */
export function aggregate(task: PreparedTask, records: ItemRecord[]): MetricResult[] {
  return Object.entries(task.metrics).map(([metric, { key, aggregation }]) => {
    const s = meanStderr(records.map((r) => r.metrics[key]));
    if (aggregation === "perplexity") {
      const ppl = Math.exp(-s.mean);
      return { metric, value: ppl, stderr: ppl * s.stderr, n: s.n };
    }
    return { metric, value: s.mean, stderr: s.stderr, n: s.n };
  });
}

function perSubject(records: ItemRecord[]): TaskResult["subjects"] {
  const by = new Map<string, number[]>();
  for (const r of records) {
    if (r.subject === undefined) continue;
    by.set(r.subject, [...(by.get(r.subject) ?? []), r.metrics.acc]);
  }
  if (by.size === 0) return undefined;
  return [...by].map(([subject, xs]) => {
    const s = meanStderr(xs);
    return { subject, n: s.n, acc: s.mean, stderr: s.stderr };
  });
}

/**
 * Evaluate every item of `task`.
 *
 * @param scorer the model's scorer (its prefix cache is reused across tasks and calls).
 * @param task a task from `prepareTask`.
 * @param options state label, generation length, per-item initial states, progress.
 * @returns the task result with per-item records.
 * @example
 * ```ts ignore
 * const task = await prepareTask("arc_easy", { dataDir, limit: 50 });
 * const r = await evaluateTask(new Scorer(model, tokenizer), task);
 * console.log(r.metrics);
 * ```
 */
export async function evaluateTask(
  scorer: Scorer,
  task: PreparedTask,
  options: EvaluateOptions = {},
): Promise<TaskResult> {
  const t0 = performance.now();
  const records: ItemRecord[] = [];
  for (const [i, item] of task.items.entries()) {
    const initial = await options.initialState?.(item, i);
    if (item.kind === "loglik") {
      const req = item.request;
      const rows = await scorer.score(req, initial);
      const out = item.judge(rows);
      const differ = req.contexts.some((c) => c !== req.contexts[0]);
      records.push({
        id: item.id,
        subject: item.subject,
        prompt: req.prefix + req.contexts[0],
        contexts: differ ? req.contexts : undefined,
        continuations: req.continuations,
        logliks: rows.map((r) => r.loglik),
        tokens: rows.map((r) => r.tokens),
        ...out,
      });
    } else {
      const req = item.request;
      const gen = await scorer.generate(req, options.maxGenTokens ?? 256, initial);
      records.push({
        id: item.id,
        prompt: req.prefix + req.context,
        generated: gen.text,
        ...item.judge(gen.text),
      });
    }
    options.onProgress?.(i + 1, task.items.length);
  }
  return {
    task: task.name,
    state: options.state ?? "none",
    nShot: task.nShot,
    split: task.split,
    n: records.length,
    metrics: aggregate(task, records),
    subjects: perSubject(records),
    seconds: (performance.now() - t0) / 1000,
    items: records,
  };
}

/** A paired comparison of one metric between two runs on the same items. */
export interface PairedComparison {
  task: TaskName;
  metric: string;
  a: string;
  b: string;
  n: number;
  /** value(b) − value(a). */
  diff: number;
  /** Which test gave `p`: McNemar's exact test for 0/1 metrics, none otherwise. */
  test: "mcnemar-exact" | "none";
  /** Items right only under a / only under b (McNemar). */
  aOnly?: number;
  bOnly?: number;
  p: number;
}

/**
 * Compare two results of the same task on the same items, metric by metric. Accuracy-type
 * metrics (per-item 0/1) get McNemar's exact test; others (perplexity) only the difference.
 *
 * @throws {RangeError} when the runs did not score the same items.
 */
export function compareResults(a: TaskResult, b: TaskResult): PairedComparison[] {
  if (a.task !== b.task || a.n !== b.n || a.items.some((it, i) => it.id !== b.items[i].id)) {
    throw new RangeError(`compare: ${a.task}/${a.state} and ${b.task}/${b.state} differ in items`);
  }
  return a.metrics.map((ma, k) => {
    const mb = b.metrics[k];
    const xa = a.items.map((it) => it.metrics[ma.metric]);
    const xb = b.items.map((it) => it.metrics[ma.metric]);
    const binary = [...xa, ...xb].every((x) => x === 0 || x === 1);
    const base = { task: a.task, metric: ma.metric, a: a.state, b: b.state, n: a.n };
    if (!binary) return { ...base, diff: mb.value - ma.value, test: "none" as const, p: NaN };
    const t = mcnemarExact(xa, xb);
    return { ...base, diff: mb.value - ma.value, test: "mcnemar-exact" as const, ...t };
  });
}
