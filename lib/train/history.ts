/**
 * The row a tuning run records per step (its own module: the loop, checkpoints and plots all
 * read it).
 *
 * @module
 */

/** One row of the training history; parts may add fields (`TrainablePart.historyFields`). */
export interface HistoryRow {
  step: number;
  loss: number;
  valLoss?: number;
  lr: number;
  gradNorm: number;
  tokensPerSecond: number;
  elapsedMs: number;
  [field: string]: number | undefined;
}
