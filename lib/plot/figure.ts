/**
 * Figures that show everywhere: one `Figure` renders as plotly JSON (interactive in VS Code /
 * JupyterLab with the plotly extension), a PNG (nbconvert HTML, GitHub, any viewer), an SVG
 * and `text/html` with the SVG inline. A `Figure` as a notebook cell's value renders itself;
 * `display(fig)` shows it from inside a loop; `saveFigure` writes `.svg`, `.png` and an
 * offline `.html`.
 *
 * @example
 * ```ts
 * import { Figure } from "./figure.ts";
 * const fig = new Figure({
 *   title: "loss",
 *   xLabel: "step",
 *   logY: true,
 *   series: [{ type: "line", name: "train", y: [4, 3, 2.5, 2.2], band: [0.3, 0.2, 0.2, 0.1] }],
 * });
 * const svg = fig.toSVG();
 * if (!svg.includes("loss")) throw new Error("title missing");
 * ```
 *
 * @module
 */
import type { FigureSpec, MimeBundle, Series, Values } from "./types.ts";
import { validateSpec } from "./types.ts";
import { renderSvg } from "./svg.ts";
import { svgToPng } from "./png.ts";
import { toPlotly } from "./plotly.ts";
import type { PlotlyFigure } from "./plotly.ts";
import { displayBundle, jupyter } from "./jupyter.ts";
import { esc } from "./scale.ts";
import { toBase64 } from "./png_encode.ts";
import { figureFragment, plotlyScripts, writePlotlyJs } from "./html.ts";

/** `Symbol.for("Jupyter.display")`: the Deno kernel renders objects with this method. */
export const JUPYTER_DISPLAY: unique symbol = Symbol.for("Jupyter.display") as never;

/** The plotly mime type. */
export const PLOTLY_MIME = "application/vnd.plotly.v1+json";

export { toBase64 };

/** A chart built from a `FigureSpec`, renderable to every format a notebook needs. */
export class Figure {
  /** The spec (validated at construction; rendering reads it afresh each time). */
  readonly spec: FigureSpec;

  /**
   * Create a figure (the spec is validated now, rendered on demand).
   *
   * @param spec series, title, axis labels, log y, size
   * @throws TypeError/RangeError when the spec is inconsistent (message names the series)
   */
  constructor(spec: FigureSpec) {
    validateSpec(spec);
    this.spec = spec;
  }

  /** Standalone SVG document. */
  toSVG(): string {
    return renderSvg(this.spec);
  }

  /** Plotly `{ data, layout }`. */
  toPlotly(): PlotlyFigure {
    return toPlotly(this.spec);
  }

  /** PNG bytes (`pngScale` × the SVG size, DejaVu Sans text). */
  toPNG(): Promise<Uint8Array> {
    return svgToPng(this.toSVG(), this.spec.pngScale ?? 2);
  }

  /**
   * An HTML fragment with the SVG inline (renders in nbconvert HTML and browsers) and the
   * plotly JSON beside it, which pages with plotly.js turn into a live chart (lib/plot/html.ts).
   */
  toHTML(svg: string = this.toSVG()): string {
    return figureFragment(svg, this.toPlotly());
  }

  /** Short text description (the `text/plain` fallback). */
  toString(): string {
    const kinds = this.spec.series.map((s) => s.type).join(", ");
    return `Figure "${this.spec.title ?? ""}" (${this.spec.series.length} series: ${kinds})`;
  }

  /**
   * The full mime bundle: plotly JSON, `image/png` (base64), `image/svg+xml`, `text/html`
   * and `text/plain`. `png: false` skips the PNG (cheaper, for live frames).
   */
  async bundle(opts: { png?: boolean } = {}): Promise<MimeBundle> {
    const svg = this.toSVG();
    const out: MimeBundle = {
      [PLOTLY_MIME]: this.toPlotly(),
      "text/html": this.toHTML(svg),
      "image/svg+xml": svg,
      "text/plain": this.toString(),
    };
    if (opts.png !== false) out["image/png"] = toBase64(await this.toPNG());
    return out;
  }

  /** Lets a Figure as a cell value render as its mime bundle in the Deno kernel. */
  [JUPYTER_DISPLAY](): Promise<MimeBundle> {
    return this.bundle();
  }
}

/**
 * Shorthand for `new Figure(spec)`.
 *
 * @param spec the figure spec
 * @returns a Figure
 */
export function figure(spec: FigureSpec): Figure {
  return new Figure(spec);
}

/**
 * Line chart of named curves.
 *
 * @param curves name → y values (x = 0, 1, …), or name → `{ x, y, band }`
 * @param opts title, axis labels, logY, size
 * @returns a Figure
 */
export function lineFigure(
  curves: Record<string, Values | { x?: Values; y: Values; band?: Values }>,
  opts: Omit<FigureSpec, "series"> = {},
): Figure {
  const series: Series[] = Object.entries(curves).map(([name, c]) =>
    "y" in c && !ArrayBuffer.isView(c) && !Array.isArray(c)
      ? { type: "line", name, ...(c as { x?: Values; y: Values; band?: Values }) }
      : { type: "line", name, y: c as Values }
  );
  return new Figure({ ...opts, series });
}

/**
 * Heatmap of a matrix given as rows, or as a flat row-major array with `cols`.
 *
 * @param z rows of values, or a flat array (then `opts.cols` is required)
 * @param opts figure options plus `cols`, `colorscale`, labels
 * @returns a Figure
 */
export function heatmapFigure(
  z: ArrayLike<Values> | Values,
  opts: Omit<FigureSpec, "series"> & {
    cols?: number;
    colorscale?: "viridis" | "rdbu";
    xTicks?: ArrayLike<string | number>;
    yTicks?: ArrayLike<string | number>;
  } = {},
): Figure {
  const { cols, colorscale, xTicks, yTicks, ...rest } = opts;
  let rows: ArrayLike<Values>;
  if (z.length > 0 && typeof z[0] === "number") {
    const flat = z as Values;
    if (!cols || flat.length % cols !== 0) {
      throw new RangeError(
        `heatmapFigure: a flat array of ${flat.length} values needs opts.cols dividing it (got ${cols})`,
      );
    }
    rows = Array.from(
      { length: flat.length / cols },
      (_, i) => Array.prototype.slice.call(flat, i * cols, (i + 1) * cols) as number[],
    );
  } else rows = z as ArrayLike<Values>;
  return new Figure({
    ...rest,
    series: [{ type: "heatmap", z: rows, colorscale, x: xTicks, y: yTicks }],
  });
}

/**
 * Show a figure (or any object with a mime bundle) as a cell output. Inside the Deno Jupyter
 * kernel it calls `Deno.jupyter.display(bundle, { raw: true })`; elsewhere it does nothing.
 *
 * @param fig a Figure or a spec
 */
export async function display(fig: Figure | FigureSpec): Promise<void> {
  if (!jupyter()) return;
  const f = fig instanceof Figure ? fig : new Figure(fig);
  await displayBundle(await f.bundle());
}

/**
 * An offline HTML page: the static SVG inline, the plotly JSON beside it, and plotly.js loaded
 * from `plotlySrc` (default `plotly.min.js` beside the page, see {@link saveFigure}), which
 * replaces the SVG by the interactive chart. Without scripts the SVG stays.
 */
export function figureHtmlPage(fig: Figure, plotlySrc?: string): string {
  const title = esc(fig.spec.title ?? "figure");
  return [
    `<!DOCTYPE html>`,
    `<html lang="en"><head><meta charset="utf-8"><title>${title}</title></head>`,
    `<body style="margin:16px;font-family:sans-serif">`,
    fig.toHTML(),
    plotlyScripts(plotlySrc),
    `</body></html>`,
    ``,
  ].join("\n");
}

/**
 * Write `<path>.svg`, `<path>.png` and `<path>.html` (offline and interactive: static SVG,
 * plotly JSON, and `plotly.min.js` written once into the same folder), creating the folder
 * when needed.
 *
 * @param fig a Figure or a spec
 * @param pathWithoutExt e.g. `results/loss` (an extension, if given, is dropped)
 * @returns the three paths written
 */
export async function saveFigure(
  fig: Figure | FigureSpec,
  pathWithoutExt: string,
): Promise<{ svg: string; png: string; html: string }> {
  const f = fig instanceof Figure ? fig : new Figure(fig);
  const base = pathWithoutExt.replace(/\.(svg|png|html)$/i, "");
  const slash = base.lastIndexOf("/");
  const dir = slash > 0 ? base.slice(0, slash) : ".";
  if (slash > 0) await Deno.mkdir(dir, { recursive: true });
  await writePlotlyJs(dir);
  const paths = { svg: `${base}.svg`, png: `${base}.png`, html: `${base}.html` };
  await Deno.writeTextFile(paths.svg, f.toSVG() + "\n");
  await Deno.writeFile(paths.png, await f.toPNG());
  await Deno.writeTextFile(paths.html, figureHtmlPage(f));
  return paths;
}
