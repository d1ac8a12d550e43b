/**
 * The loss curve of a training history (training and validation loss against step), shared by
 * the tuning loop's live plot, the scripts and the web demo.
 *
 * @module
 */
import { type Figure, lineFigure } from "./figure.ts";

/** What a loss curve reads from each history row (the tuning loop's `HistoryRow` fits). */
export interface LossPoint {
  step: number;
  loss: number;
  valLoss?: number;
}

/** The loss curve of a history (training and validation loss against step). */
export function lossFigure(history: readonly LossPoint[], title = "state tuning"): Figure {
  const val = history.filter((h) => h.valLoss !== undefined);
  const curves: Record<string, { x: number[]; y: number[] }> = {
    train: { x: history.map((h) => h.step), y: history.map((h) => h.loss) },
  };
  if (val.length) curves.validation = { x: val.map((h) => h.step), y: val.map((h) => h.valLoss!) };
  return lineFigure(curves, { title, xLabel: "step", yLabel: "loss" });
}
