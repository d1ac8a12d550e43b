/**
 * Figures of a grid: training loss against step per variant with its 95% band over seeds
 * (DBP's convergence), the table's metric per variant with its interval, and the capacity curve
 * (metric against a testbed sweep value, e.g. recall against K, one line per variant, bands).
 *
 * @module
 */
import { type Figure, figure } from "../plot/figure.ts";
import { PALETTE, type Series } from "../plot/types.ts";
import { meanInterval } from "../util/stats.ts";
import type { CellRow } from "./grid.ts";
import type { SummaryLine } from "./summary.ts";

/** `name k=v …`, e.g. `lifted-memory M=64` (table rows, legends). */
export const label = (name: string, p: Record<string, number>): string =>
  [name, ...Object.entries(p).map(([k, v]) => `${k}=${v}`)].join(" ");

/** Rows grouped by variant label (the variant and its sweep value), in the grid's order. */
function byVariant(rows: CellRow[]): Map<string, CellRow[]> {
  const out = new Map<string, CellRow[]>();
  for (const r of rows) {
    const tp = r.cell.testbedParams;
    const vp = Object.fromEntries(Object.entries(r.cell.params).filter(([k]) => !(k in tp)));
    const k = label(r.cell.variant, vp);
    out.set(k, [...(out.get(k) ?? []), r]);
  }
  return out;
}

/**
 * Mean training loss (or another history field recorded in `curve`) against step per variant,
 * with the 95% t interval over seeds as a band; `points` thins long curves.
 */
export function lossBandFigure(
  rows: CellRow[],
  o: {
    title?: string;
    points?: number;
    logY?: boolean;
    /** which curve: the training loss (default) or DBP's decorrelation / correlation loss */
    field?: "losses" | "decorrelation" | "correlation";
  } = {},
): Figure {
  const series: Series[] = [];
  const field = o.field ?? "losses";
  const ok = (r: CellRow) => (r.curve?.[field]?.length ?? 0) > 0;
  for (const [name, rs] of byVariant(rows.filter(ok))) {
    const n = Math.min(...rs.map((r) => r.curve!.steps.length));
    const every = Math.max(1, Math.ceil(n / (o.points ?? 120)));
    const x: number[] = [], y: number[] = [], lo: number[] = [], hi: number[] = [];
    for (let i = every - 1; i < n; i += every) {
      const iv = meanInterval(rs.map((r) => r.curve![field]![i]));
      x.push(rs[0].curve!.steps[i]);
      y.push(iv.mean);
      lo.push(Number.isFinite(iv.lo) ? iv.lo : iv.mean);
      hi.push(Number.isFinite(iv.hi) ? iv.hi : iv.mean);
    }
    series.push({ type: "line", name: `${name} (n=${rs.length})`, x, y, band: { lo, hi } });
  }
  return figure({
    title: o.title ??
      `${field === "losses" ? "training" : field} loss, mean and 95% band over seeds`,
    xLabel: "step",
    yLabel: field === "losses" ? "training loss" : `${field} loss`,
    logY: o.logY,
    series,
  });
}

/**
 * The table's metric per variant: the mean as a point and the 95% interval as a vertical bar,
 * variants left to right in table order (legend names them).
 */
export function intervalFigure(lines: SummaryLine[], o: { title?: string; scale?: number } = {}) {
  const s = o.scale ?? 100;
  const series: Series[] = [];
  const many = new Set(lines.map((l) => JSON.stringify(l.testbedParams))).size > 1;
  lines.forEach((l, i) => {
    const where = Object.entries(l.testbedParams).map(([k, v]) => `${k}=${v}`).join(" ");
    const name = label(l.variant, l.variantParams) + (many ? ` (${where})` : "");
    const color = PALETTE[i % PALETTE.length];
    const lo = Number.isFinite(l.value.lo) ? l.value.lo : l.value.mean;
    const hi = Number.isFinite(l.value.hi) ? l.value.hi : l.value.mean;
    series.push({ type: "line", x: [i, i], y: [lo * s, hi * s], width: 3, color });
    series.push({ type: "scatter", name, x: [i], y: [l.value.mean * s], size: 6, color });
  });
  return figure({
    title: o.title ?? `${lines[0]?.metric ?? "metric"}: mean and 95% interval over seeds`,
    xLabel: "variant (legend order)",
    yLabel: `${lines[0]?.metric ?? "metric"}${s === 100 ? " (%)" : ""}`,
    series,
  });
}

/**
 * The capacity curve: the metric against the testbed's sweep value (e.g. K facts), one line per
 * variant with its 95% band.
 */
export function capacityFigure(lines: SummaryLine[], o: { title?: string; scale?: number } = {}) {
  const s = o.scale ?? 100;
  const groups = new Map<string, SummaryLine[]>();
  for (const l of lines) {
    const k = label(l.variant, l.variantParams);
    groups.set(k, [...(groups.get(k) ?? []), l]);
  }
  const key = Object.keys(lines[0]?.testbedParams ?? {})[0] ?? "sweep";
  const series: Series[] = [...groups].map(([name, ls]) => {
    const sorted = ls.slice().sort((a, b) => a.testbedParams[key] - b.testbedParams[key]);
    const fin = (v: number, m: number) => (Number.isFinite(v) ? v : m) * s;
    return {
      type: "line",
      name,
      x: sorted.map((l) => l.testbedParams[key]),
      y: sorted.map((l) => l.value.mean * s),
      band: {
        lo: sorted.map((l) => fin(l.value.lo, l.value.mean)),
        hi: sorted.map((l) => fin(l.value.hi, l.value.mean)),
      },
    };
  });
  return figure({
    title: o.title ?? `capacity: ${lines[0]?.metric ?? "metric"} against ${key}`,
    xLabel: key,
    yLabel: `${lines[0]?.metric ?? "metric"}${s === 100 ? " (%)" : ""}`,
    series,
  });
}
