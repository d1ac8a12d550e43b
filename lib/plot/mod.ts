/**
 * Plotting: figures as plotly JSON + PNG + SVG + inline-SVG HTML, live outputs for Jupyter.
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
