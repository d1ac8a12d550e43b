/**
 * SVG building blocks shared by the chart renderers: document frame, text, title and axis
 * labels. All coordinates are rounded to 0.1 px so output is compact and deterministic.
 *
 * @module
 */
import { esc, textWidth } from "./scale.ts";

/** Font stack: DejaVu Sans is what the PNG renderer embeds; browsers fall back. */
export const FONT = "DejaVu Sans, Verdana, Arial, Helvetica, sans-serif";
/** Tick label size, px. */
export const TICK_PX = 11;
/** Axis label size, px. */
export const LABEL_PX = 13;
/** Title size, px. */
export const TITLE_PX = 15;

/** Round to 0.1 px. */
export function r(v: number): string {
  return String(Math.round(v * 10) / 10);
}

/** A `<text>` element. */
export function text(
  x: number,
  y: number,
  s: string,
  opts: { size?: number; anchor?: "start" | "middle" | "end"; bold?: boolean; rotate?: boolean } =
    {},
): string {
  const size = opts.size ?? TICK_PX;
  const anchor = opts.anchor ?? "start";
  const rot = opts.rotate ? ` transform="rotate(-90 ${r(x)} ${r(y)})"` : "";
  const weight = opts.bold ? ` font-weight="bold"` : "";
  return `<text x="${r(x)}" y="${
    r(y)
  }" font-size="${size}" text-anchor="${anchor}"${weight}${rot}>` +
    `${esc(s)}</text>`;
}

/** Plot-area rectangle in px. */
export interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}

/** Wrap body elements in an `<svg>` root with a white background. */
export function svgDoc(width: number, height: number, title: string, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}" font-family="${FONT}" fill="#222222">`,
    `<title>${esc(title)}</title>`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`,
    ...body,
    `</svg>`,
  ].join("\n");
}

/** Title (centred above the plot) and axis labels. */
export function titleAndLabels(
  width: number,
  height: number,
  box: Box,
  spec: { title?: string; xLabel?: string; yLabel?: string },
): string[] {
  const out: string[] = [];
  if (spec.title) {
    out.push(text(width / 2, 22, fit(spec.title, width - 20, TITLE_PX), {
      size: TITLE_PX,
      anchor: "middle",
      bold: true,
    }));
  }
  if (spec.xLabel) {
    out.push(text(box.x + box.w / 2, height - 10, fit(spec.xLabel, box.w, LABEL_PX), {
      size: LABEL_PX,
      anchor: "middle",
    }));
  }
  if (spec.yLabel) {
    out.push(text(16, box.y + box.h / 2, fit(spec.yLabel, box.h, LABEL_PX), {
      size: LABEL_PX,
      anchor: "middle",
      rotate: true,
    }));
  }
  return out;
}

/** Shorten `s` with an ellipsis so it fits `maxPx` at `size`. */
export function fit(s: string, maxPx: number, size: number): string {
  if (textWidth(s, size) <= maxPx) return s;
  let t = s;
  while (t.length > 1 && textWidth(t + "…", size) > maxPx) t = t.slice(0, -1);
  return t + "…";
}

/** Keep every k-th of `n` labels so that labels of width `labelPx` fit in `spanPx`. */
export function thinStride(n: number, labelPx: number, spanPx: number): number {
  const fitCount = Math.max(1, Math.floor(spanPx / (labelPx + 8)));
  return Math.max(1, Math.ceil(n / fitCount));
}

/** Horizontal tick marks, grid lines and labels on the left axis. */
export function yAxis(
  box: Box,
  ticks: number[],
  map: (v: number) => number,
  fmt: (v: number) => string,
): string[] {
  const out: string[] = [];
  for (const t of ticks) {
    const y = map(t);
    if (!(y >= box.y - 0.5 && y <= box.y + box.h + 0.5)) continue;
    out.push(
      `<line x1="${r(box.x)}" y1="${r(y)}" x2="${r(box.x + box.w)}" y2="${
        r(y)
      }" stroke="#e6e6e6"/>`,
      `<line x1="${r(box.x - 4)}" y1="${r(y)}" x2="${r(box.x)}" y2="${r(y)}" stroke="#444444"/>`,
      text(box.x - 7, y + 4, fmt(t), { anchor: "end" }),
    );
  }
  return out;
}

/** Vertical tick marks, grid lines and labels on the bottom axis. */
export function xAxis(
  box: Box,
  ticks: { at: number; label: string }[],
  grid = true,
): string[] {
  const out: string[] = [];
  const base = box.y + box.h;
  for (const t of ticks) {
    if (!(t.at >= box.x - 0.5 && t.at <= box.x + box.w + 0.5)) continue;
    if (grid) {
      out.push(
        `<line x1="${r(t.at)}" y1="${r(box.y)}" x2="${r(t.at)}" y2="${r(base)}" stroke="#e6e6e6"/>`,
      );
    }
    out.push(
      `<line x1="${r(t.at)}" y1="${r(base)}" x2="${r(t.at)}" y2="${
        r(base + 4)
      }" stroke="#444444"/>`,
      text(t.at, base + 17, t.label, { anchor: "middle" }),
    );
  }
  return out;
}

/** The left and bottom axis lines. */
export function axisLines(box: Box): string {
  const b = box.y + box.h;
  return `<path d="M${r(box.x)} ${r(box.y)}V${r(b)}H${r(box.x + box.w)}" fill="none" ` +
    `stroke="#444444"/>`;
}

/**
 * A deterministic element id derived from `content` (FNV-1a), so that several inline SVGs on
 * one HTML page do not share `clipPath`/gradient ids unless their content is identical.
 */
export function uniqueId(prefix: string, content: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < content.length; i++) {
    h ^= content.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return `${prefix}-${(h >>> 0).toString(36)}`;
}
