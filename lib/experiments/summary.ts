/**
 * The table of a grid (docs/MATH.md §10): per testbed, testbed sweep value and variant the mean of a
 * metric over seeds with its 95% interval, and against the baseline variant (plain state
 * tuning) the paired difference (same testbed, sweep value and seed) with its interval and
 * p-value — paired t over seeds, or for one seed a bootstrap over items with McNemar's p —
 * plus trainable numbers, wall time and the convergence measures of the loss curve.
 *
 * @module
 */
import {
  areaUnderCurve,
  bootstrapInterval,
  formatDifference,
  type Interval,
  mcnemarExact,
  meanInterval,
  type PairedDifference,
  pairedDifference,
  stepsToTarget,
} from "../util/stats.ts";
import type { CellRow } from "./grid.ts";

/** One line of the table. */
export interface SummaryLine {
  testbed: string;
  /** the testbed's sweep value, e.g. `{ K: 128 }` */
  testbedParams: Record<string, number>;
  variant: string;
  kind: string;
  /** the variant's sweep value, e.g. `{ M: 256 }` */
  variantParams: Record<string, number>;
  metric: string;
  value: Interval;
  /** against the baseline (absent for the baseline itself or without one) */
  diff?: PairedDifference;
  trainable: number | null;
  seconds: Interval;
  /** with `targetLoss`: steps to reach it (runs that never did are left out; see `reached`) */
  stepsToTarget?: Interval;
  reached?: number;
  /** mean training loss over the run (area under the loss curve / steps) */
  auc?: Interval;
}

/** Options of {@link summarise}. */
export interface SummaryOptions {
  /** the metric of the table, e.g. `recall`, `accuracy` */
  metric: string;
  /** the variant every other is compared with (default `state`) */
  baseline?: string;
  /** a training loss for steps-to-target */
  targetLoss?: number;
  /** trailing window for steps-to-target (default 10) */
  window?: number;
}

const key = (o: Record<string, number>) => JSON.stringify(Object.entries(o).sort());

/** Group rows into table lines (order: first appearance in `rows`, i.e. the grid's order). */
export function summarise(rows: CellRow[], o: SummaryOptions): SummaryLine[] {
  const baseline = o.baseline ?? "state";
  const groups = new Map<string, CellRow[]>();
  for (const r of rows) {
    const c = r.cell;
    const k = [c.testbed, key(c.testbedParams), c.variant, key(variantParams(r))].join("|");
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  const lines: SummaryLine[] = [];
  for (const rs of groups.values()) {
    const c = rs[0].cell;
    const vals = rs.map((r) => r.metrics[o.metric] ?? NaN);
    const value = rs.length === 1 && rs[0].items
      ? bootstrapInterval(rs[0].items, { seed: c.seed })
      : meanInterval(vals);
    const line: SummaryLine = {
      testbed: c.testbed,
      testbedParams: c.testbedParams,
      variant: c.variant,
      kind: c.kind,
      variantParams: variantParams(rs[0]),
      metric: o.metric,
      value,
      trainable: rs[0].metrics.trainable ?? null,
      seconds: meanInterval(rs.map((r) => r.seconds)),
    };
    const base = rows.filter((r) =>
      r.cell.variant === baseline && r.cell.testbed === c.testbed &&
      key(r.cell.testbedParams) === key(c.testbedParams)
    );
    if (c.variant !== baseline && base.length) line.diff = difference(rs, base, o.metric);
    const curves = rs.filter((r) => r.curve);
    if (curves.length) {
      line.auc = meanInterval(curves.map((r) => areaUnderCurve(r.curve!.steps, r.curve!.losses)));
      if (o.targetLoss !== undefined) {
        const st = curves.map((r) =>
          stepsToTarget(r.curve!.steps, r.curve!.losses, o.targetLoss!, o.window ?? 10)
        );
        const hit = st.filter((x): x is number => x !== null);
        line.stepsToTarget = meanInterval(hit);
        line.reached = hit.length;
      }
    }
    lines.push(line);
  }
  return lines;
}

function variantParams(r: CellRow): Record<string, number> {
  const tp = r.cell.testbedParams;
  return Object.fromEntries(Object.entries(r.cell.params).filter(([k]) => !(k in tp)));
}

/** Paired by seed; one seed with per-item outcomes: bootstrap over items and McNemar. */
function difference(rs: CellRow[], base: CellRow[], metric: string): PairedDifference | undefined {
  const pairs = rs.map((r) => [r, base.find((b) => b.cell.seed === r.cell.seed)] as const)
    .filter((p): p is readonly [CellRow, CellRow] => p[1] !== undefined);
  if (pairs.length === 0) return undefined;
  if (pairs.length === 1 && pairs[0][0].items && pairs[0][1].items) {
    const [a, b] = [pairs[0][0].items!, pairs[0][1].items!];
    const iv = bootstrapInterval(a.map((x, i) => x - b[i]), { seed: pairs[0][0].cell.seed });
    const p = mcnemarExact(a, b).p;
    return { ...iv, t: NaN, p, significant: iv.lo > 0 || iv.hi < 0 };
  }
  return pairedDifference(
    pairs.map(([r]) => r.metrics[metric] ?? NaN),
    pairs.map(([, b]) => b.metrics[metric] ?? NaN),
  );
}

const fmtParams = (p: Record<string, number>) =>
  Object.entries(p).map(([k, v]) => `${k}=${v}`).join(" ");

/**
 * The table as markdown: metric mean [95% interval] over seeds, Δ against the baseline, trainable
 * numbers, seconds per run, and steps-to-target / mean training loss when measured.
 *
 * @param scale multiply values (100 for percentages)
 */
export function markdownSummary(lines: SummaryLine[], scale = 1, digits = 1): string {
  const f = (x: number) => (Number.isFinite(x) ? (x * scale).toFixed(digits) : "–");
  const iv = (v: Interval) => `${f(v.mean)} [${f(v.lo)}, ${f(v.hi)}]`;
  const conv = lines.some((l) => l.auc);
  const head = ["testbed", "variant", `${lines[0]?.metric ?? "metric"} (95% CI)`, "Δ vs baseline"]
    .concat(["trainable", "s/run", "n"], conv ? ["steps to target", "mean loss"] : []);
  const out = [`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`];
  for (const l of lines) {
    const cells = [
      `${l.testbed} ${fmtParams(l.testbedParams)}`.trim(),
      `${l.variant} ${fmtParams(l.variantParams)}`.trim(),
      iv(l.value),
      l.diff ? formatDifference(l.diff, digits, scale) : "baseline",
      l.trainable === null ? "–" : String(l.trainable),
      l.seconds.mean.toFixed(1),
      String(l.value.n),
    ];
    if (conv) {
      const st = l.stepsToTarget;
      cells.push(
        !st
          ? "–"
          : st.n === 0
          ? `never (0/${l.value.n})`
          : `${st.mean.toFixed(0)} [${Number.isFinite(st.lo) ? st.lo.toFixed(0) : "–"}, ${
            Number.isFinite(st.hi) ? st.hi.toFixed(0) : "–"
          }] (${l.reached}/${l.value.n})`,
        l.auc ? `${l.auc.mean.toFixed(3)} [${l.auc.lo.toFixed(3)}, ${l.auc.hi.toFixed(3)}]` : "–",
      );
    }
    out.push(`| ${cells.join(" | ")} |`);
  }
  return out.join("\n") + "\n";
}
