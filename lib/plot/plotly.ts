/**
 * `FigureSpec` → plotly figure JSON (`{ data, layout }`), the payload of the
 * `application/vnd.plotly.v1+json` mime type (interactive in VS Code and in JupyterLab with the
 * plotly extension). Colours and colour scales match the SVG renderer.
 *
 * @module
 */
import type { FigureSpec, HeatmapSeries, LineSeries, Series } from "./types.ts";
import { bandOf, PALETTE, validateSpec, xsOf } from "./types.ts";
import { plotlyColorscale, withAlpha } from "./scale.ts";
import { MAX_CELLS, poolMatrix } from "./heatmap_svg.ts";

/** A plotly figure: traces and layout. */
export interface PlotlyFigure {
  /** Traces. */
  data: Record<string, unknown>[];
  /** Layout: title, axes, size. */
  layout: Record<string, unknown>;
}

/** Plain array with non-finite values as null (JSON has no NaN). */
function arr(a: ArrayLike<number | string>): (number | string | null)[] {
  return Array.from(a, (v) => (typeof v === "number" && !Number.isFinite(v) ? null : v));
}

type Trace = Record<string, unknown>;

/** A line series: its band as two edge traces (the upper filled to the lower), then the line. */
function lineTraces(s: LineSeries, color: string, legend: Trace): Trace[] {
  const name = s.name ?? "";
  const x = arr(xsOf(s));
  const out: Trace[] = [];
  const b = bandOf(s);
  if (b) {
    const edge = {
      type: "scatter",
      mode: "lines",
      x,
      line: { width: 0 },
      hoverinfo: "skip",
      showlegend: false,
    };
    out.push({ ...edge, y: arr(b.lo), name: `${name} lo` });
    out.push({
      ...edge,
      y: arr(b.hi),
      name: `${name} hi`,
      fill: "tonexty",
      fillcolor: withAlpha(color, 0.2),
    });
  }
  out.push({
    type: "scatter",
    mode: "lines",
    x,
    y: arr(s.y),
    ...legend,
    line: { color, width: s.width ?? 2, ...(s.dash ? { dash: "dash" } : {}) },
  });
  return out;
}

/** A heatmap; very large matrices are block-averaged like the SVG (labels: a block's first index). */
function heatmapTrace(s: HeatmapSeries): Trace {
  const rows0 = s.z.length, cols0 = rows0 ? s.z[0].length : 0;
  const pooled = rows0 * cols0 > MAX_CELLS ? poolMatrix(s.z) : null;
  const rows = pooled
    ? Array.from(
      { length: pooled.rows },
      (_, i) => arr(pooled.v.subarray(i * pooled.cols, (i + 1) * pooled.cols)),
    )
    : Array.from({ length: rows0 }, (_, i) => arr(s.z[i]));
  const x = pooled ? pooled.colAt.map((j) => s.x?.[j] ?? j) : s.x;
  const y = pooled ? pooled.rowAt.map((i) => s.y?.[i] ?? i) : s.y;
  return {
    type: "heatmap",
    z: rows,
    ...(x ? { x: arr(x) } : {}),
    ...(y ? { y: arr(y) } : {}),
    colorscale: plotlyColorscale(s.colorscale ?? "viridis"),
    ...(s.zmin !== undefined ? { zmin: s.zmin } : {}),
    ...(s.zmax !== undefined ? { zmax: s.zmax } : {}),
    ...(s.colorscale === "rdbu" && s.zmin === undefined ? { zmid: 0 } : {}),
    name: s.name ?? "",
  };
}

function traces(s: Series, color: string): Trace[] {
  const legend = { name: s.name ?? "", showlegend: !!s.name };
  switch (s.type) {
    case "line":
      return lineTraces(s, color, legend);
    case "scatter":
      return [{
        type: "scatter",
        mode: "markers",
        x: arr(xsOf(s)),
        y: arr(s.y),
        ...legend,
        marker: { color, size: 2 * (s.size ?? 3) },
      }];
    case "bar":
      return [{
        type: "bar",
        x: s.x ? arr(s.x) : arr(Array.from({ length: s.y.length }, (_, i) => i)),
        y: arr(s.y),
        ...legend,
        marker: { color },
      }];
    case "heatmap":
      return [heatmapTrace(s)];
  }
}

/**
 * Build the plotly JSON for a figure spec.
 *
 * @param spec the figure
 * @returns `{ data, layout }`, ready for `application/vnd.plotly.v1+json`
 * @example
 * ```ts
 * import { toPlotly } from "./plotly.ts";
 * const p = toPlotly({ series: [{ type: "line", y: [1, 2] }], logY: true });
 * if ((p.layout.yaxis as { type: string }).type !== "log") throw new Error();
 * ```
 */
export function toPlotly(spec: FigureSpec): PlotlyFigure {
  validateSpec(spec);
  const data = spec.series.flatMap((s, i) =>
    traces(s, ("color" in s && s.color) || PALETTE[i % PALETTE.length])
  );
  const heat = spec.series[0]?.type === "heatmap";
  const yaxis: Record<string, unknown> = {
    title: { text: spec.yLabel ?? "" },
    ...(spec.logY ? { type: "log" } : {}),
    ...(heat ? { autorange: "reversed" } : {}),
  };
  const layout: Record<string, unknown> = {
    title: { text: spec.title ?? "" },
    xaxis: { title: { text: spec.xLabel ?? "" } },
    yaxis,
    width: spec.width ?? 640,
    height: spec.height ?? 400,
    barmode: "group",
    margin: { t: spec.title ? 50 : 20 },
  };
  return { data, layout };
}
