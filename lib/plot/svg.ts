/**
 * Pure-TypeScript SVG renderer for a `FigureSpec`: lines with bands, scatter, grouped bars
 * (numeric or categorical x), log y, legend; heatmaps are drawn by `heatmap_svg.ts`.
 * No DOM and no browser; output depends only on the spec.
 *
 * @module
 */
import type { BarSeries, FigureSpec, LineSeries, ScatterSeries } from "./types.ts";
import { bandOf, barCategories, PALETTE, validateSpec, xsOf } from "./types.ts";
import {
  extent,
  formatNumber,
  logTicks,
  makeScale,
  niceDomain,
  niceTicks,
  textWidth,
} from "./scale.ts";
import type { Scale } from "./scale.ts";
import {
  axisLines,
  fit,
  r,
  svgDoc,
  text,
  thinStride,
  TICK_PX,
  titleAndLabels,
  uniqueId,
  xAxis,
  yAxis,
} from "./svg_base.ts";
import type { Box } from "./svg_base.ts";
import { renderHeatmapSvg } from "./heatmap_svg.ts";

/** Default figure size in CSS px. */
export const DEFAULT_SIZE = { width: 640, height: 400 } as const;

/**
 * Render a figure spec as a standalone SVG document.
 *
 * @param spec the figure
 * @returns SVG text starting with `<svg`
 * @example
 * ```ts
 * import { renderSvg } from "./svg.ts";
 * const svg = renderSvg({ title: "loss", series: [{ type: "line", y: [3, 2, 1.5] }] });
 * if (!svg.startsWith("<svg")) throw new Error("not svg");
 * ```
 */
export function renderSvg(spec: FigureSpec): string {
  validateSpec(spec);
  const first = spec.series[0];
  if (first?.type === "heatmap") return renderHeatmapSvg(spec, first);
  return renderXySvg(spec);
}

interface XDomain {
  scale: Scale;
  /** Category labels when the x axis is categorical. */
  cats: string[] | null;
  /** Bar slot width in data units. */
  slot: number;
}

function barXs(b: BarSeries, cats: string[] | null): number[] {
  if (cats) {
    return Array.from({ length: b.y.length }, (_, i) => cats.indexOf(String(b.x?.[i] ?? i)));
  }
  return Array.from({ length: b.y.length }, (_, i) => Number(b.x?.[i] ?? i));
}

function xDomain(spec: FigureSpec, box: Box): XDomain {
  const cats = barCategories(spec.series);
  const bars = spec.series.filter((s): s is BarSeries => s.type === "bar");
  const pts = spec.series.filter((s): s is LineSeries | ScatterSeries =>
    s.type !== "bar" && s.type !== "heatmap"
  );
  const barX = bars.flatMap((b) => barXs(b, cats));
  let slot = 1;
  if (!cats && barX.length) {
    const u = [...new Set(barX)].sort((a, b) => a - b);
    for (let i = 1; i < u.length; i++) {
      slot = i === 1 ? u[1] - u[0] : Math.min(slot, u[i] - u[i - 1]);
    }
  }
  if (cats) {
    const scale = makeScale(-0.5, cats.length - 0.5, box.x, box.x + box.w, { ticks: [] });
    return { scale, cats, slot: 1 };
  }
  let [lo, hi] = extent([...pts.map(xsOf), barX]);
  if (barX.length) {
    const [blo, bhi] = extent([barX]);
    lo = Math.min(lo, blo - slot / 2);
    hi = Math.max(hi, bhi + slot / 2);
    return { scale: makeScale(lo, hi, box.x, box.x + box.w), cats: null, slot };
  }
  [lo, hi] = niceDomain(lo, hi, 7);
  return {
    scale: makeScale(lo, hi, box.x, box.x + box.w, { ticks: niceTicks(lo, hi, 7) }),
    cats: null,
    slot,
  };
}

function yDomain(spec: FigureSpec, box: Box): Scale {
  const arrays: ArrayLike<number>[] = [];
  for (const s of spec.series) {
    if (s.type === "heatmap") continue;
    arrays.push(s.y);
    if (s.type === "line") {
      const b = bandOf(s);
      if (b) arrays.push(b.lo, b.hi);
    }
    if (s.type === "bar" && !spec.logY) arrays.push([0]);
  }
  const [b, t] = [box.y + box.h, box.y];
  if (spec.logY) {
    let [lo, hi] = extent(arrays, true);
    if (hi / lo > 10) {
      [lo, hi] = [10 ** Math.floor(Math.log10(lo)), 10 ** Math.ceil(Math.log10(hi))];
    } else [lo, hi] = [lo / 1.05, hi * 1.05];
    return makeScale(lo, hi, b, t, { log: true, ticks: logTicks(lo, hi) });
  }
  const [lo, hi] = niceDomain(...extent(arrays), 6);
  return makeScale(lo, hi, b, t, { ticks: niceTicks(lo, hi, 6) });
}

/** Path through finite points; gaps at non-finite values; decimated when very long. */
function linePath(
  xs: ArrayLike<number>,
  ys: ArrayLike<number>,
  sx: Scale,
  sy: Scale,
  maxPts: number,
): string {
  const n = ys.length;
  const stride = n > maxPts ? n / maxPts : 1;
  let d = "", pen = false;
  const emit = (i: number) => {
    const px = sx.map(xs[i]), py = sy.map(ys[i]);
    if (!Number.isFinite(px) || !Number.isFinite(py)) return void (pen = false);
    d += `${pen ? "L" : "M"}${r(px)} ${r(py)}`;
    pen = true;
  };
  if (stride === 1) {
    for (let i = 0; i < n; i++) emit(i);
    return d;
  }
  // Decimate: per bucket keep the points with the min and max y, in index order.
  for (let b = 0; b < maxPts; b++) {
    const i0 = Math.floor(b * stride), i1 = Math.min(n, Math.floor((b + 1) * stride));
    let imin = -1, imax = -1;
    for (let i = i0; i < i1; i++) {
      if (!Number.isFinite(ys[i])) {
        if (imin >= 0) emit(Math.min(imin, imax)), emit(Math.max(imin, imax));
        emit(i);
        imin = imax = -1;
        continue;
      }
      if (imin < 0 || ys[i] < ys[imin]) imin = i;
      if (imax < 0 || ys[i] > ys[imax]) imax = i;
    }
    if (imin >= 0) emit(Math.min(imin, imax)), emit(Math.max(imin, imax));
  }
  return d;
}

function bandPath(
  xs: ArrayLike<number>,
  lo: Float64Array,
  hi: Float64Array,
  sx: Scale,
  sy: Scale,
): string {
  let d = "";
  let seg: number[] = [];
  const flush = () => {
    if (seg.length > 1) {
      const top = seg.map((i, k) => `${k ? "L" : "M"}${r(sx.map(xs[i]))} ${r(sy.map(hi[i]))}`);
      const bot = seg.slice().reverse().map((i) => `L${r(sx.map(xs[i]))} ${r(sy.map(lo[i]))}`);
      d += top.join("") + bot.join("") + "Z";
    }
    seg = [];
  };
  for (let i = 0; i < lo.length; i++) {
    const ok = [sx.map(xs[i]), sy.map(lo[i]), sy.map(hi[i])].every(Number.isFinite);
    if (ok) seg.push(i);
    else flush();
  }
  flush();
  return d;
}

function legend(
  entries: { name: string; color: string; kind: string }[],
  x: number,
  y: number,
): string[] {
  const out: string[] = [];
  entries.forEach((e, i) => {
    const cy = y + i * 18;
    if (e.kind === "line") {
      out.push(
        `<line x1="${r(x)}" y1="${r(cy)}" x2="${r(x + 18)}" y2="${
          r(cy)
        }" stroke="${e.color}" stroke-width="2.5"/>`,
      );
    } else if (e.kind === "scatter") {
      out.push(`<circle cx="${r(x + 9)}" cy="${r(cy)}" r="4" fill="${e.color}"/>`);
    } else {out.push(
        `<rect x="${r(x + 3)}" y="${r(cy - 6)}" width="12" height="12" fill="${e.color}"/>`,
      );}
    out.push(text(x + 24, cy + 4, e.name));
  });
  return out;
}

/** Plot box; the left margin fits the widest y tick label. */
function layout(
  spec: FigureSpec,
  width: number,
  height: number,
  legendW: number,
  yLabelW: number,
): Box {
  const top = spec.title ? 36 : 14;
  const bottom = 32 + (spec.xLabel ? 20 : 0);
  const left = Math.max(48, yLabelW + 16) + (spec.yLabel ? 24 : 0);
  const right = 16 + legendW;
  return {
    x: left,
    y: top,
    w: Math.max(20, width - left - right),
    h: Math.max(20, height - top - bottom),
  };
}

/** A line series (with its band, when it has one) as SVG paths. */
function lineSvg(s: LineSeries, c: string, sx: Scale, sy: Scale, maxPts: number): string[] {
  const out: string[] = [];
  const xs = xsOf(s), b = bandOf(s);
  if (b) {
    out.push(
      `<path d="${
        bandPath(xs, b.lo, b.hi, sx, sy)
      }" fill="${c}" fill-opacity="0.2" stroke="none"/>`,
    );
  }
  const dash = s.dash ? ` stroke-dasharray="6 4"` : "";
  out.push(
    `<path d="${linePath(xs, s.y, sx, sy, maxPts)}" fill="none" stroke="${c}" stroke-width="${
      s.width ?? 2
    }" stroke-linejoin="round" stroke-linecap="round"${dash}/>`,
  );
  return out;
}

/** A scatter series as a group of circles (points off the scale are left out). */
function scatterSvg(s: ScatterSeries, c: string, sx: Scale, sy: Scale): string {
  const xs = xsOf(s), rad = s.size ?? 3;
  const dots: string[] = [];
  for (let k = 0; k < s.y.length; k++) {
    const px = sx.map(xs[k]), py = sy.map(s.y[k]);
    if (Number.isFinite(px) && Number.isFinite(py)) {
      dots.push(`<circle cx="${r(px)}" cy="${r(py)}" r="${rad}"/>`);
    }
  }
  return `<g fill="${c}" fill-opacity="0.8">${dots.join("")}</g>`;
}

/** Bar series number `index` of `bars`, side by side within each x slot. */
function barSvg(
  s: BarSeries,
  c: string,
  at: { xd: XDomain; sy: Scale; box: Box },
  index: number,
  bars: number,
): string {
  const { xd, sy, box } = at, sx = xd.scale;
  const group = 0.8 * xd.slot, bw = group / bars;
  const xs = barXs(s, xd.cats);
  const base = sy.log ? box.y + box.h : sy.map(0);
  const rects: string[] = [];
  for (let k = 0; k < s.y.length; k++) {
    const x0 = sx.map(xs[k] - group / 2 + index * bw),
      x1 = sx.map(xs[k] - group / 2 + (index + 1) * bw);
    const y = sy.map(s.y[k]);
    if (![x0, x1, y].every(Number.isFinite)) continue;
    rects.push(
      `<rect x="${r(x0)}" y="${r(Math.min(y, base))}" width="${
        r(Math.max(0.5, x1 - x0 - 1))
      }" height="${r(Math.abs(base - y))}"/>`,
    );
  }
  return `<g fill="${c}">${rects.join("")}</g>`;
}

/** The series' colours and the legend entries (names fitted to 30% of the width) and width. */
function legendOf(spec: FigureSpec, width: number) {
  const colors = spec.series.map((s, i) =>
    ("color" in s && s.color) || PALETTE[i % PALETTE.length]
  );
  const named = spec.series.map((s, i) => ({ name: s.name ?? "", color: colors[i], kind: s.type }))
    .filter((e) => e.name);
  const maxLegend = width * 0.3;
  for (const e of named) e.name = fit(e.name, maxLegend - 30, TICK_PX);
  const legendW = named.length
    ? Math.min(maxLegend, 34 + Math.max(...named.map((e) => textWidth(e.name, TICK_PX))))
    : 0;
  return { colors, named, legendW };
}

function renderXySvg(spec: FigureSpec): string {
  const width = spec.width ?? DEFAULT_SIZE.width, height = spec.height ?? DEFAULT_SIZE.height;
  const { colors, named, legendW } = legendOf(spec, width);
  // The y scale depends only on the vertical layout: compute it first to size the left margin.
  const probe = yDomain(spec, layout(spec, width, height, legendW, 0));
  const yLabelW = Math.max(0, ...probe.ticks.map((t) => textWidth(formatNumber(t), TICK_PX)));
  const box = layout(spec, width, height, legendW, yLabelW);
  const xd = xDomain(spec, box), sy = yDomain(spec, box), sx = xd.scale;

  const body: string[] = [];
  body.push(...yAxis(box, sy.ticks, sy.map, formatNumber));
  const xt = xd.cats
    ? xd.cats.map((c, i) => ({ at: sx.map(i), label: fit(c, 90, TICK_PX) }))
    : sx.ticks.map((t) => ({ at: sx.map(t), label: formatNumber(t) }));
  const widest = Math.max(0, ...xt.map((t) => textWidth(t.label, TICK_PX)));
  const stride = thinStride(xt.length, widest, box.w);
  body.push(...xAxis(box, xt.filter((_, i) => i % stride === 0), !xd.cats));

  body.push(
    `<clipPath id="__CLIP__"><rect x="${r(box.x)}" y="${r(box.y)}" width="${r(box.w)}" height="${
      r(box.h)
    }"/></clipPath>`,
  );
  body.push(`<g clip-path="url(#__CLIP__)">`);
  const bars = spec.series.filter((s) => s.type === "bar").length;
  let barIndex = 0;
  const maxPts = Math.max(100, Math.round(box.w * 2));
  spec.series.forEach((s, i) => {
    const c = colors[i];
    if (s.type === "line") body.push(...lineSvg(s, c, sx, sy, maxPts));
    else if (s.type === "scatter") body.push(scatterSvg(s, c, sx, sy));
    else if (s.type === "bar") body.push(barSvg(s, c, { xd, sy, box }, barIndex++, bars));
  });
  body.push(`</g>`, axisLines(box));
  if (named.length) body.push(...legend(named, box.x + box.w + 12, box.y + 8));
  body.push(...titleAndLabels(width, height, box, spec));
  const doc = svgDoc(width, height, spec.title ?? "figure", body);
  return doc.replaceAll("__CLIP__", uniqueId("clip", doc));
}
