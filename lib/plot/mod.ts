/**
 * The plotting entry point (`@rwkv7/state-tuning/plot`): figures as plotly JSON + PNG + SVG +
 * inline-SVG HTML, live outputs for Jupyter, progress bars, and the pieces underneath (the
 * stand-alone HTML page, the PNG backend, MIME types).
 *
 * ```ts ignore
 * import { lineFigure, saveFigure } from "@rwkv7/state-tuning/plot";
 * const fig = lineFigure({ loss: [2.1, 1.7, 1.5] }, { title: "loss" });
 * await saveFigure(fig, "results/loss"); // loss.svg, loss.png, loss.html
 * ```
 *
 * @module
 */
export type {
  BarSeries,
  FigureSpec,
  HeatmapSeries,
  LineSeries,
  MimeBundle,
  ScatterSeries,
  Series,
  Values as PlotValues,
} from "./types.ts";
export { PALETTE } from "./types.ts";
export {
  display,
  Figure,
  figure,
  figureHtmlPage,
  heatmapFigure,
  JUPYTER_DISPLAY,
  lineFigure,
  PLOTLY_MIME,
  saveFigure,
} from "./figure.ts";
export { liveOutput, LivePlot } from "./live.ts";
export type { FrameSource, LiveOptions, LiveOutput } from "./live.ts";
export { inJupyter } from "./jupyter.ts";
export type { PlotlyFigure } from "./plotly.ts";
export { pngBackend, svgToPng } from "./png.ts";
export type { PngBackend } from "./png.ts";
export { lossFigure, type LossPoint } from "./loss.ts";
export {
  createProgress,
  formatDuration,
  type Progress,
  type ProgressInfo,
  type ProgressOptions,
} from "./progress.ts";
