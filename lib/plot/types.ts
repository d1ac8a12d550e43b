/**
 * The figure spec: a small, renderer-neutral description of a chart. `Figure` (figure.ts)
 * turns it into a plotly JSON bundle, an SVG, a PNG and inline-SVG HTML.
 *
 * @module
 */

/** Numbers of one series; typed arrays are fine. Non-finite values leave a gap. */
export type Values = ArrayLike<number>;

/** A line; `band` draws a shaded region: `±band[i]` around `y`, or explicit `lo`/`hi`. */
export interface LineSeries {
  /** Discriminant. */
  type: "line";
  /** Legend name (series without a name stay out of the legend). */
  name?: string;
  /** x positions; default 0, 1, 2, … */
  x?: Values;
  /** y values (non-finite values leave a gap). */
  y: Values;
  /** Half-width of a band around y (e.g. a standard deviation), or its lower/upper edges. */
  band?: Values | { lo: Values; hi: Values };
  /** CSS colour; default from the palette in series order. */
  color?: string;
  /** Dashed line. */
  dash?: boolean;
  /** Line width in px (default 2). */
  width?: number;
}

/** Markers at (x, y). */
export interface ScatterSeries {
  /** Discriminant. */
  type: "scatter";
  /** Legend name. */
  name?: string;
  /** x positions; default 0, 1, 2, … */
  x?: Values;
  /** y values. */
  y: Values;
  /** CSS colour; default from the palette. */
  color?: string;
  /** Marker radius in px (default 3). */
  size?: number;
}

/** Bars at category labels (strings) or numeric x; several bar series are grouped. */
export interface BarSeries {
  /** Discriminant. */
  type: "bar";
  /** Legend name. */
  name?: string;
  /** Category labels or numeric positions; default 0, 1, 2, … */
  x?: ArrayLike<string | number>;
  /** Bar heights. */
  y: Values;
  /** CSS colour; default from the palette. */
  color?: string;
}

/** A matrix as coloured cells, row 0 at the top. Must be the figure's only series. */
export interface HeatmapSeries {
  /** Discriminant. */
  type: "heatmap";
  /** Name (shown in plotly hover). */
  name?: string;
  /** Rows of values: `z[row][col]`. */
  z: ArrayLike<Values>;
  /** Column labels (default 0…cols-1). */
  x?: ArrayLike<string | number>;
  /** Row labels (default 0…rows-1). */
  y?: ArrayLike<string | number>;
  /** "viridis" (default) or "rdbu" (diverging, blue low, red high; symmetric around 0). */
  colorscale?: "viridis" | "rdbu";
  /** Value mapped to the lowest colour (default: data minimum). */
  zmin?: number;
  /** Value mapped to the highest colour (default: data maximum). */
  zmax?: number;
}

/** Any series. */
export type Series = LineSeries | ScatterSeries | BarSeries | HeatmapSeries;

/** A whole figure. */
export interface FigureSpec {
  /** What to draw; a heatmap must be alone. */
  series: Series[];
  /** Title above the plot. */
  title?: string;
  /** x axis label. */
  xLabel?: string;
  /** y axis label. */
  yLabel?: string;
  /** Logarithmic y axis (non-positive values are left out). */
  logY?: boolean;
  /** Size of the SVG in CSS px (default 640 × 400); the PNG is `pngScale` times larger. */
  width?: number;
  /** Height in CSS px (default 400). */
  height?: number;
  /** PNG pixels per SVG px (default 2). */
  pngScale?: number;
}

/** A Jupyter mime bundle: mime type → data (strings, or JSON for `+json` types). */
export type MimeBundle = Record<string, unknown>;

/** Default palette (colour-blind-friendly, Okabe–Ito-like order). */
export const PALETTE: readonly string[] = [
  "#1f77b4",
  "#d62728",
  "#2ca02c",
  "#ff7f0e",
  "#9467bd",
  "#17becf",
  "#8c564b",
  "#e377c2",
  "#7f7f7f",
  "#bcbd22",
];

/** Check a spec and throw a TypeError/RangeError that says what is wrong. */
export function validateSpec(spec: FigureSpec): void {
  if (!spec || !Array.isArray(spec.series)) {
    throw new TypeError("figure spec needs `series: Series[]` (got " + typeof spec?.series + ")");
  }
  const hasHeat = spec.series.some((s) => s.type === "heatmap");
  if (hasHeat && spec.series.length !== 1) {
    throw new TypeError(
      `a heatmap must be the only series of its figure (got ${spec.series.length} series)`,
    );
  }
  spec.series.forEach((s, i) => {
    const where = `series[${i}] (${s.type}${s.name ? ` "${s.name}"` : ""})`;
    if (s.type === "heatmap") {
      const rows = s.z.length;
      const cols = rows ? s.z[0].length : 0;
      for (let r = 0; r < rows; r++) {
        if (s.z[r].length !== cols) {
          throw new RangeError(`${where}: row ${r} has ${s.z[r].length} values, row 0 has ${cols}`);
        }
      }
      if (s.x && s.x.length !== cols) {
        throw new RangeError(`${where}: ${s.x.length} x labels for ${cols} columns`);
      }
      if (s.y && s.y.length !== rows) {
        throw new RangeError(`${where}: ${s.y.length} y labels for ${rows} rows`);
      }
      return;
    }
    if (!["line", "scatter", "bar"].includes(s.type)) {
      throw new TypeError(`${where}: unknown series type; use line, scatter, bar or heatmap`);
    }
    if (s.x && s.x.length !== s.y.length) {
      throw new RangeError(`${where}: x has ${s.x.length} values but y has ${s.y.length}`);
    }
    if (s.type === "line" && s.band) {
      const parts = "lo" in s.band ? [s.band.lo, s.band.hi] : [s.band];
      for (const p of parts) {
        if (p.length !== s.y.length) {
          throw new RangeError(`${where}: band has ${p.length} values but y has ${s.y.length}`);
        }
      }
    }
  });
  const bad = (v: number | undefined) => v !== undefined && !(v >= 50 && v <= 8000);
  if (bad(spec.width) || bad(spec.height)) {
    throw new RangeError(`figure size ${spec.width}×${spec.height} px: use 50…8000`);
  }
}

/** x values of a line/scatter series (explicit or 0…n-1). */
export function xsOf(s: LineSeries | ScatterSeries): Values {
  if (s.x) return s.x;
  const a = new Float64Array(s.y.length);
  for (let i = 0; i < a.length; i++) a[i] = i;
  return a;
}

/** Lower/upper band edges of a line series, or null. */
export function bandOf(s: LineSeries): { lo: Float64Array; hi: Float64Array } | null {
  if (!s.band) return null;
  const n = s.y.length;
  const lo = new Float64Array(n), hi = new Float64Array(n);
  if ("lo" in s.band) {
    for (let i = 0; i < n; i++) [lo[i], hi[i]] = [s.band.lo[i], s.band.hi[i]];
  } else {
    for (let i = 0; i < n; i++) {
      lo[i] = s.y[i] - s.band[i];
      hi[i] = s.y[i] + s.band[i];
    }
  }
  return { lo, hi };
}

/** Categories of the bar series (string labels), or null when bars use numeric x. */
export function barCategories(series: Series[]): string[] | null {
  const bars = series.filter((s): s is BarSeries => s.type === "bar");
  if (!bars.some((b) => b.x && Array.from(b.x).some((v) => typeof v === "string"))) return null;
  const cats: string[] = [];
  for (const b of bars) {
    const xs = b.x ? Array.from(b.x, String) : Array.from({ length: b.y.length }, (_, i) => `${i}`);
    for (const c of xs) if (!cats.includes(c)) cats.push(c);
  }
  return cats;
}
