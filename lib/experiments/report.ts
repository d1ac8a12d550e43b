/**
 * What `deno task reproduce` writes after a grid (or a merge): `table.md` (the metric per
 * variant with its 95% interval and the paired difference against plain state, side scores
 * such as the instructed skills' accuracy after tuning, and the equal-numbers pairs),
 * `summary.json` (the same lines as data) and the figures (`metric`, `loss`, and for a swept
 * testbed `capacity`) as svg/png/html.
 *
 * @module
 */
import { saveFigure } from "../plot/figure.ts";
import { areaUnderCurve, formatDifference, pairedDifference } from "../util/stats.ts";
import type { CellRow } from "./grid.ts";
import { capacityFigure, intervalFigure, label, lossBandFigure } from "./figures.ts";
import { markdownSummary, summarise, type SummaryLine } from "./summary.ts";

/** Options of {@link writeReport}. */
export interface ReportOptions {
  /** the table's metric (recall, accuracy, exact) */
  metric: string;
  /** a training loss for the steps-to-target column */
  targetLoss?: number;
  /** a heading line (testbed, model) */
  title?: string;
}

/**
 * The side metrics present in every row: `skill.mean` of the facts testbed, the harness task's
 * metrics (`arc_easy.acc_norm`) of the jsonl testbed.
 */
function sideMetrics(rows: CellRow[], metric: string): string[] {
  const skip = new Set([metric, "trainable", "steps", "finalLoss", "tuneSeconds", "heldOutLoss"]);
  const keys = Object.keys(rows[0]?.metrics ?? {}).filter((k) => !skip.has(k));
  const side = (k: string) => k.startsWith("skill.") ? k === "skill.mean" : k.includes(".");
  return keys.filter((k) => side(k) && rows.every((r) => r.metrics[k] !== undefined));
}

/** Pairs of lines whose trainable numbers are within 15% (the equal-numbers comparison). */
function equalNumberPairs(lines: SummaryLine[]): [SummaryLine, SummaryLine][] {
  const out: [SummaryLine, SummaryLine][] = [];
  for (const a of lines) {
    for (const b of lines) {
      if (a === b || !a.trainable || !b.trainable || a.testbed !== b.testbed) continue;
      if (JSON.stringify(a.testbedParams) !== JSON.stringify(b.testbedParams)) continue;
      if (!(a.kind === "lora") || b.kind === "lora") continue;
      if (Math.abs(a.trainable - b.trainable) / b.trainable <= 0.15) out.push([b, a]);
    }
  }
  return out;
}

const name = (l: SummaryLine) => label(l.variant, l.variantParams);
const where = (l: SummaryLine) => label(l.testbed, l.testbedParams);

/**
 * The default target of steps-to-target: the loss plain state tuning reaches, as the mean over
 * seeds of its mean over the last tenth of steps (so the column asks how soon each variant gets
 * where plain state ends); undefined without plain-state curves.
 */
export function defaultTargetLoss(rows: CellRow[]): number | undefined {
  const tails = rows.filter((r) => r.cell.variant === "state" && r.curve?.losses.length).map(
    (r) => {
      const l = r.curve!.losses, n = Math.max(1, Math.floor(l.length / 10));
      return l.slice(-n).reduce((a, b) => a + b, 0) / n;
    },
  );
  return tails.length ? tails.reduce((a, b) => a + b, 0) / tails.length : undefined;
}

/** Summary lines per testbed and sweep value, each with its own (or the given) target loss. */
function summariseGroups(rows: CellRow[], o: ReportOptions) {
  const groups = new Map<string, CellRow[]>();
  for (const r of rows) {
    const k = `${r.cell.testbed}|${JSON.stringify(r.cell.testbedParams)}`;
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  const lines: SummaryLine[] = [], targets: string[] = [];
  for (const [k, rs] of groups) {
    const targetLoss = o.targetLoss ?? defaultTargetLoss(rs);
    if (targetLoss !== undefined) {
      targets.push(`${k.replace("|", " ").replace(/[{}"]/g, "")}: ${targetLoss.toFixed(4)}`);
    }
    lines.push(...summarise(rs, { metric: o.metric, baseline: "state", targetLoss }));
  }
  return { lines, targets };
}

/** The markdown of the report (see the module doc). */
export function reportMarkdown(rows: CellRow[], o: ReportOptions): {
  markdown: string;
  lines: SummaryLine[];
} {
  const { lines, targets } = summariseGroups(rows, o);
  const parts = [
    o.title ? `# ${o.title}\n` : "",
    `## ${o.metric} (%) at equal steps\n`,
    "Mean [95% interval] over seeds; Δ = paired difference against plain state tuning (same " +
    "seeds, batches and support vectors), with its 95% interval and p (paired t); " +
    '"no significant difference" where the interval covers 0. s/run = compute seconds per ' +
    "run. Steps to target: the first step whose trailing 10-step mean loss reaches the target " +
    `(${o.targetLoss === undefined ? "plain state's final loss" : "--target-loss"}; ` +
    `${targets.join(", ") || "none"}), over the runs that reached it; mean loss = area under ` +
    "the loss curve / steps.\n",
    markdownSummary(lines, 100),
  ];
  for (const side of sideMetrics(rows, o.metric)) {
    const sl = summarise(rows, { metric: side, baseline: "untuned" });
    parts.push(
      `\n## ${side} (%) after tuning (what tuning costs elsewhere)\n`,
      "Δ against the untuned model, paired by seed.\n",
      markdownSummary(sl, 100),
    );
  }
  const pairs = equalNumberPairs(lines);
  if (pairs.length) {
    parts.push(
      "\n## Equal trainable numbers\n",
      `| testbed | variant | trainable | ${o.metric} | LoRA at equal numbers | trainable | ${o.metric} |`,
      "|---|---|---|---|---|---|---|",
    );
    const f = (l: SummaryLine) =>
      `${(100 * l.value.mean).toFixed(1)} [${(100 * l.value.lo).toFixed(1)}, ${
        (100 * l.value.hi).toFixed(1)
      }]`;
    for (const [a, b] of pairs) {
      parts.push(
        `| ${where(a)} | ${name(a)} | ${a.trainable} | ${f(a)} | ${name(b)} | ${b.trainable} | ${
          f(b)
        } |`,
      );
    }
    parts.push("");
  }
  parts.push(...dbpSection(rows, o.metric));
  const diffs = lines.filter((l) => l.diff);
  if (diffs.length) {
    parts.push("\n## In words\n");
    for (const l of diffs) {
      const d = l.diff!;
      const verdict = !Number.isFinite(d.lo)
        ? "too few paired seeds for an interval"
        : d.significant
        ? (d.mean > 0 ? "better than plain state" : "worse than plain state")
        : "no significant difference from plain state";
      parts.push(
        `- ${where(l)}, ${name(l)}: ${verdict}; Δ ${
          formatDifference(d, 1, 100).replace(" (no significant difference)", "")
        }.`,
      );
    }
  }
  return { markdown: parts.join("\n") + "\n", lines };
}

/** M of a lifted row: its sweep value or option, else N (undefined when unknown). */
const rowM = (r: CellRow) => r.cell.params.M ?? (r.cell.options.M as number | undefined);

/**
 * DBP's own effect: each `dbp` row paired by seed with the `lifted-memory` row of the same
 * testbed, sweep value and M (the same support vectors; R fixed there), on the metric and on
 * the mean training loss (area under the curve / steps).
 */
function dbpSection(rows: CellRow[], metric: string): string[] {
  const out: string[] = [];
  const dbp = rows.filter((r) => r.cell.kind === "dbp" && r.curve);
  const groups = new Map<string, [CellRow, CellRow][]>();
  for (const r of dbp) {
    const base = rows.find((b) =>
      b.cell.kind === "lifted-memory" && b.cell.testbed === r.cell.testbed &&
      b.cell.seed === r.cell.seed && rowM(b) === rowM(r) &&
      JSON.stringify(b.cell.testbedParams) === JSON.stringify(r.cell.testbedParams) && b.curve
    );
    if (!base) continue;
    const k = `${label(r.cell.testbed, r.cell.testbedParams)}, ${r.cell.variant} vs ` +
      `${base.cell.variant} M=${rowM(r) ?? "N"}`;
    groups.set(k, [...(groups.get(k) ?? []), [r, base]]);
  }
  if (!groups.size) return out;
  out.push(
    "\n## DBP against the same lifted state without it\n",
    "Paired by seed (same batches and support vectors; R fixed in the base). Mean loss = area " +
      "under the training-loss curve / steps (lower converges faster).\n",
    `| comparison | n | Δ ${metric} (pp) | Δ mean loss |`,
    "|---|---|---|---|",
  );
  const auc = (r: CellRow) => areaUnderCurve(r.curve!.steps, r.curve!.losses);
  for (const [k, ps] of groups) {
    const dm = pairedDifference(
      ps.map(([a]) => a.metrics[metric] ?? NaN),
      ps.map(([, b]) => b.metrics[metric] ?? NaN),
    );
    const dl = pairedDifference(ps.map(([a]) => auc(a)), ps.map(([, b]) => auc(b)));
    out.push(
      `| ${k} | ${ps.length} | ${formatDifference(dm, 1, 100)} | ${formatDifference(dl, 4)} |`,
    );
  }
  out.push("");
  return out;
}

/** Write `table.md`, `summary.json` and the figures into `dir`; returns the markdown. */
export async function writeReport(dir: string, rows: CellRow[], o: ReportOptions) {
  const { markdown, lines } = reportMarkdown(rows, o);
  await Deno.writeTextFile(`${dir}/table.md`, markdown);
  await Deno.writeTextFile(`${dir}/summary.json`, JSON.stringify(lines, null, 1) + "\n");
  const figures: Record<string, unknown> = {
    metric: await saveFigure(intervalFigure(lines), `${dir}/metric`),
  };
  if (rows.some((r) => r.curve?.steps.length)) {
    figures.loss = await saveFigure(lossBandFigure(rows), `${dir}/loss`);
  }
  const swept = new Set(lines.map((l) => JSON.stringify(l.testbedParams))).size > 1;
  if (swept) figures.capacity = await saveFigure(capacityFigure(lines), `${dir}/capacity`);
  return { markdown, lines, figures };
}
