/**
 * Heatmap SVG: the cells are one embedded PNG `<image>` (one pixel per cell, scaled up without
 * smoothing; block-averaged down to at most `MAX_CELLS` cells), row 0 at the top, with a
 * colour bar. One image keeps a 64×64 state at ~20 kB instead of thousands of `<rect>`s.
 *
 * @module
 */
import type { FigureSpec, HeatmapSeries } from "./types.ts";
import { colorAt, extent, formatNumber, niceTicks, rgbAt, textWidth } from "./scale.ts";
import { encodePngRgb, toBase64 } from "./png_encode.ts";
import { fit, r, svgDoc, text, thinStride, TICK_PX, titleAndLabels, uniqueId } from "./svg_base.ts";
import type { Box } from "./svg_base.ts";

/** Cells drawn at most; larger matrices are averaged over blocks. */
export const MAX_CELLS = 65_536;

/** A matrix pooled for drawing. */
export interface Grid {
  /** Drawn rows. */
  rows: number;
  /** Drawn columns. */
  cols: number;
  /** Original row/column index at the start of each drawn block. */
  rowAt: number[];
  colAt: number[];
  /** Values, row-major `rows × cols`. */
  v: Float64Array;
}

/** Average z over square blocks so that rows × cols ≤ MAX_CELLS (NaN ignored). */
export function poolMatrix(z: ArrayLike<ArrayLike<number>>): Grid {
  const R = z.length, C = R ? z[0].length : 0;
  const f = Math.max(1, Math.ceil(Math.sqrt((R * C) / MAX_CELLS)));
  const rows = Math.ceil(R / f), cols = Math.ceil(C / f);
  const v = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      let s = 0, n = 0;
      for (let a = i * f; a < Math.min(R, (i + 1) * f); a++) {
        for (let b = j * f; b < Math.min(C, (j + 1) * f); b++) {
          const x = z[a][b];
          if (Number.isFinite(x)) [s, n] = [s + x, n + 1];
        }
      }
      v[i * cols + j] = n ? s / n : NaN;
    }
  }
  const at = (n: number) => Array.from({ length: n }, (_, k) => k * f);
  return { rows, cols, rowAt: at(rows), colAt: at(cols), v };
}

function zRange(s: HeatmapSeries, v: Float64Array): [number, number] {
  let [lo, hi] = extent([v]);
  if (s.colorscale === "rdbu") {
    const m = Math.max(Math.abs(lo), Math.abs(hi));
    [lo, hi] = [-m, m];
  }
  return [s.zmin ?? lo, s.zmax ?? hi];
}

function colorBar(
  box: Box,
  lo: number,
  hi: number,
  scale: "viridis" | "rdbu",
  id: string,
): string[] {
  const x = box.x + box.w + 14, w = 14;
  const stops = Array.from({ length: 11 }, (_, k) => {
    const t = k / 10;
    return `<stop offset="${t}" stop-color="${colorAt(scale, 1 - t)}"/>`;
  });
  const out = [
    `<defs><linearGradient id="${id}" x1="0" y1="0" x2="0" y2="1">${
      stops.join("")
    }</linearGradient></defs>`,
    `<rect x="${r(x)}" y="${r(box.y)}" width="${w}" height="${
      r(box.h)
    }" fill="url(#${id})" stroke="#444444" stroke-width="0.5"/>`,
  ];
  for (const t of niceTicks(lo, hi, 5)) {
    const y = box.y + box.h - ((t - lo) / (hi - lo || 1)) * box.h;
    out.push(
      `<line x1="${r(x + w)}" y1="${r(y)}" x2="${r(x + w + 4)}" y2="${r(y)}" stroke="#444444"/>`,
      text(x + w + 7, y + 4, formatNumber(t)),
    );
  }
  return out;
}

function labelOf(labels: ArrayLike<string | number> | undefined, i: number): string {
  const v = labels ? labels[i] : i;
  return typeof v === "number" ? formatNumber(v) : String(v);
}

/**
 * Render a heatmap figure as SVG.
 *
 * @param spec the figure (its only series is `s`)
 * @param s the heatmap series
 * @returns SVG text
 */
export function renderHeatmapSvg(spec: FigureSpec, s: HeatmapSeries): string {
  const width = spec.width ?? 640, height = spec.height ?? 400;
  const g = poolMatrix(s.z);
  const [lo, hi] = zRange(s, g.v);
  const scale = s.colorscale ?? "viridis";
  const rowLabels = g.rowAt.map((i) => fit(labelOf(s.y, i), 80, TICK_PX));
  const colLabels = g.colAt.map((j) => fit(labelOf(s.x, j), 80, TICK_PX));
  const left = 14 + Math.max(20, ...rowLabels.map((l) => textWidth(l, TICK_PX))) +
    (spec.yLabel ? 20 : 0);
  const top = spec.title ? 36 : 14, bottom = 32 + (spec.xLabel ? 20 : 0), right = 80;
  const box: Box = {
    x: left,
    y: top,
    w: Math.max(20, width - left - right),
    h: Math.max(20, height - top - bottom),
  };
  const cw = box.w / Math.max(1, g.cols), ch = box.h / Math.max(1, g.rows);

  const rgb = new Uint8Array(g.rows * g.cols * 3);
  for (let k = 0; k < g.rows * g.cols; k++) {
    rgb.set(rgbAt(scale, (g.v[k] - lo) / (hi - lo || 1)), 3 * k);
  }
  const href = "data:image/png;base64," + toBase64(encodePngRgb(g.cols, g.rows, rgb));
  const body = g.rows * g.cols === 0 ? [] : [
    `<image x="${r(box.x)}" y="${r(box.y)}" width="${r(box.w)}" height="${r(box.h)}" ` +
    `preserveAspectRatio="none" image-rendering="optimizeSpeed" ` +
    `style="image-rendering:pixelated" href="${href}"/>`,
  ];
  const cs = thinStride(g.cols, Math.max(...colLabels.map((l) => textWidth(l, TICK_PX))), box.w);
  for (let j = 0; j < g.cols; j += cs) {
    body.push(text(box.x + (j + 0.5) * cw, box.y + box.h + 16, colLabels[j], { anchor: "middle" }));
  }
  const rs = thinStride(g.rows, TICK_PX, box.h);
  for (let i = 0; i < g.rows; i += rs) {
    body.push(text(box.x - 6, box.y + (i + 0.5) * ch + 4, rowLabels[i], { anchor: "end" }));
  }
  body.push(
    `<rect x="${r(box.x)}" y="${r(box.y)}" width="${r(box.w)}" height="${
      r(box.h)
    }" fill="none" stroke="#444444" stroke-width="0.5"/>`,
  );
  body.push(...colorBar(box, lo, hi, scale, uniqueId("cbar", href)));
  const labels = titleAndLabels(width, height, box, spec);
  return svgDoc(width, height, spec.title ?? "heatmap", [...body, ...labels]);
}
