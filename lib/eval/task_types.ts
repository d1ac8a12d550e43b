/**
 * The shapes of evaluation tasks and items (their own module, so task builders such as
 * `skill_tasks.ts` and the registry in `tasks.ts` do not import each other).
 *
 * @module
 */
import { z } from "zod";
import type { GenerationRequest, LoglikRequest } from "./prompts.ts";
import type { RowScore } from "./scorer.ts";

/** The task names `prepareTask` knows. */
export const TASK_NAMES = [
  "arc_challenge",
  "arc_easy",
  "winogrande",
  "mmlu",
  "gsm8k",
  "lambada",
  "skill_choice",
  "skill_answer",
] as const;

/** One of {@link TASK_NAMES}. */
export type TaskName = typeof TASK_NAMES[number];

/** Schema of a task name (the message lists the known ones). */
export const TaskNameSchema: z.ZodType<TaskName, string> = z.enum(TASK_NAMES, {
  error: (iss) => `unknown task ${JSON.stringify(iss.input)}; known: ${TASK_NAMES.join(", ")}`,
});

/** What an item's outcome records: its metrics (0/1 for accuracies) and what was predicted. */
export interface ItemOutcome {
  metrics: Record<string, number>;
  prediction: string | number;
  gold: string | number;
}

/** A rendered multiple-choice (or loglik) item. */
export interface LoglikItem {
  kind: "loglik";
  id: string;
  subject?: string;
  request: LoglikRequest;
  judge(rows: RowScore[]): ItemOutcome;
}

/** A rendered generation item. */
export interface GenerationItem {
  kind: "generate";
  id: string;
  request: GenerationRequest;
  judge(text: string): ItemOutcome;
}

/** Either kind of item. */
export type EvalItem = LoglikItem | GenerationItem;

/** How a metric is aggregated: mean of per-item values, or exp(−mean) (perplexity). */
export type Aggregation = "mean" | "perplexity";

/** A task ready to run: its description and its rendered items. */
export interface PreparedTask {
  name: TaskName;
  /** Number of few-shot examples. */
  nShot: number;
  /** The split scored (and where the shots come from). */
  split: string;
  /** Metric name → per-item key and aggregation. */
  metrics: Record<string, { key: string; aggregation: Aggregation }>;
  items: EvalItem[];
}
