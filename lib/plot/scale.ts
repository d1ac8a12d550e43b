/**
 * Axis scales, tick placement, number formatting and colour maps for the SVG renderer.
 *
 * @module
 */

/** A linear or log10 mapping from data to pixels. */
export interface Scale {
  /** Data value → pixel (NaN for values a log scale cannot show). */
  map(v: number): number;
  ticks: number[];
  log: boolean;
}

/** Finite min/max of several arrays (NaN, ±Infinity and, for log, v ≤ 0 skipped). */
export function extent(arrays: ArrayLike<number>[], positiveOnly = false): [number, number] {
  let lo = Infinity, hi = -Infinity;
  for (const a of arrays) {
    for (let i = 0; i < a.length; i++) {
      const v = a[i];
      if (!Number.isFinite(v) || (positiveOnly && v <= 0)) continue;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  if (lo > hi) return positiveOnly ? [1, 10] : [0, 1];
  if (lo === hi) {
    if (positiveOnly) return [lo / 2, hi * 2];
    const d = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    return [lo - d, hi + d];
  }
  return [lo, hi];
}

/** About `count` round tick values covering [lo, hi] (steps of 1, 2, 5 × 10^k). */
export function niceTicks(lo: number, hi: number, count = 6): number[] {
  const span = hi - lo;
  if (!(span > 0) || !Number.isFinite(span)) return [lo];
  const raw = span / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const first = Math.ceil(lo / step - 1e-9), last = Math.floor(hi / step + 1e-9);
  const out: number[] = [];
  for (let k = first; k <= last; k++) out.push(Number((k * step).toPrecision(12)));
  return out;
}

/** Expand [lo, hi] outward to the nearest nice steps, so the ticks reach the frame. */
export function niceDomain(lo: number, hi: number, count = 6): [number, number] {
  const t = niceTicks(lo, hi, count);
  if (t.length < 2) return [lo, hi];
  const step = t[1] - t[0];
  return [Math.floor(lo / step + 1e-9) * step, Math.ceil(hi / step - 1e-9) * step];
}

/** Ticks for a log10 axis over [lo, hi] (both > 0): decades, plus 2, 5, … when too few. */
export function logTicks(lo: number, hi: number): number[] {
  const a = Math.floor(Math.log10(lo)), b = Math.ceil(Math.log10(hi));
  const within = (v: number) => v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9);
  let stride = 1;
  while ((b - a) / stride > 8) stride++;
  const decades: number[] = [];
  for (let e = a; e <= b; e += stride) decades.push(Number((10 ** e).toPrecision(12)));
  let out = decades.filter(within);
  for (const ms of [[1, 2, 5], [1, 2, 3, 5], [1, 2, 3, 4, 5, 6, 8]]) {
    if (out.length >= 4) break;
    const more: number[] = [];
    for (let e = a; e <= b; e++) {
      for (const m of ms) more.push(Number((m * 10 ** e).toPrecision(12)));
    }
    out = more.filter(within);
  }
  if (out.length < 2) {
    const t = niceTicks(lo, hi, 4).filter((v) => v > 0);
    if (t.length >= 2) return t;
  }
  return out;
}

/** Linear or log scale from domain [d0, d1] to range [r0, r1]. */
export function makeScale(
  d0: number,
  d1: number,
  r0: number,
  r1: number,
  opts: { log?: boolean; ticks?: number[] } = {},
): Scale {
  if (opts.log) {
    const l0 = Math.log10(d0), l1 = Math.log10(d1);
    const k = (r1 - r0) / (l1 - l0 || 1);
    return {
      log: true,
      ticks: opts.ticks ?? logTicks(d0, d1),
      map: (v) => (v > 0 ? r0 + (Math.log10(v) - l0) * k : NaN),
    };
  }
  const k = (r1 - r0) / (d1 - d0 || 1);
  return { log: false, ticks: opts.ticks ?? niceTicks(d0, d1), map: (v) => r0 + (v - d0) * k };
}

/** Short tick label: 0.001 → "0.001", 12000 → "12k", 1e-5 → "1e-5", 0.30000000000000004 → "0.3". */
export function formatNumber(v: number): string {
  if (v === 0) return "0";
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a >= 1e6 || a < 1e-3) {
    const [m, e] = v.toExponential(2).split("e");
    return `${String(Number(m))}e${Number(e)}`;
  }
  if (a >= 1e4) return `${Number((v / 1e3).toPrecision(4))}k`;
  return String(Number(v.toPrecision(4)));
}

/** Escape text for SVG/HTML content and attributes. */
export function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(
    /"/g,
    "&quot;",
  );
}

/** Estimated width in px of `text` at `size` px in DejaVu Sans (for layout only). */
export function textWidth(text: string, size: number): number {
  let w = 0;
  for (const ch of text) {
    if ("il.,:;|!'".includes(ch)) w += 0.32;
    else if ("mwMW@".includes(ch)) w += 0.9;
    else if (ch >= "A" && ch <= "Z") w += 0.7;
    else w += 0.6;
  }
  return w * size;
}

type Stops = [number, number, number][];

const VIRIDIS: Stops = [
  [68, 1, 84],
  [72, 40, 120],
  [62, 74, 137],
  [49, 104, 142],
  [38, 130, 142],
  [31, 158, 137],
  [53, 183, 121],
  [110, 206, 88],
  [181, 222, 43],
  [253, 231, 37],
];

const RDBU: Stops = [
  [5, 48, 97],
  [33, 102, 172],
  [67, 147, 195],
  [146, 197, 222],
  [209, 229, 240],
  [247, 247, 247],
  [253, 219, 199],
  [244, 165, 130],
  [214, 96, 77],
  [178, 24, 43],
  [103, 0, 31],
];

function stopsOf(name: "viridis" | "rdbu"): Stops {
  return name === "rdbu" ? RDBU : VIRIDIS;
}

function hex(c: [number, number, number]): string {
  return "#" + c.map((v) => Math.round(v).toString(16).padStart(2, "0")).join("");
}

/** RGB (0…255) at t ∈ [0, 1] of a colour map (NaN → light grey). */
export function rgbAt(name: "viridis" | "rdbu", t: number): [number, number, number] {
  if (!Number.isFinite(t)) return [221, 221, 221];
  const s = stopsOf(name);
  const x = Math.min(1, Math.max(0, t)) * (s.length - 1);
  const i = Math.min(s.length - 2, Math.floor(x)), f = x - i;
  return s[i].map((v, k) => Math.round(v + (s[i + 1][k] - v) * f)) as [number, number, number];
}

/** Colour at t ∈ [0, 1] of a colour map, as "#rrggbb" (NaN → light grey). */
export function colorAt(name: "viridis" | "rdbu", t: number): string {
  return hex(rgbAt(name, t));
}

/** A plotly `colorscale` array with the same stops as `colorAt`. */
export function plotlyColorscale(name: "viridis" | "rdbu"): [number, string][] {
  const s = stopsOf(name);
  return s.map((c, i) => [Number((i / (s.length - 1)).toFixed(4)), hex(c)]);
}

/** Colour with alpha, for bands: "#1f77b4" → "rgba(31,119,180,0.2)". Other CSS passes through. */
export function withAlpha(color: string, alpha: number): string {
  const m = /^#([0-9a-f]{6})$/i.exec(color);
  if (!m) return color;
  const n = parseInt(m[1], 16);
  return `rgba(${n >> 16},${(n >> 8) & 255},${n & 255},${alpha})`;
}
