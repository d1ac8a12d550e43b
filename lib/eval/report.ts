/**
 * Reporting: the results table (n-shot, split, metric and item count always beside the score),
 * the comparison table, and the files written to `--out` (results JSON, per-item jsonl).
 *
 * @module
 */
import type { PairedComparison, TaskResult } from "./evaluate.ts";

function pad(rows: string[][]): string {
  const w = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((x, c) => x.padEnd(w[c])).join("  ").trimEnd()).join("\n");
}

const fmt = (x: number, d = 4) => (Number.isFinite(x) ? x.toFixed(d) : "-");

/**
 * The results table: one line per task, state and metric.
 *
 * @example
 * ```ts
 * import { formatResults } from "./report.ts";
 * const t = formatResults([{
 *   task: "arc_easy", state: "none", nShot: 0, split: "test", n: 2, seconds: 1, items: [],
 *   metrics: [{ metric: "acc", value: 0.5, stderr: 0.5, n: 2 }],
 * }]);
 * console.assert(t.includes("arc_easy") && t.includes("0.5000"));
 * ```
 */
export function formatResults(results: TaskResult[]): string {
  const rows = [["task", "state", "n-shot", "split", "metric", "n", "value", "± stderr"]];
  for (const r of results) {
    for (const m of r.metrics) {
      rows.push([
        r.task,
        r.state,
        String(r.nShot),
        r.split,
        m.metric,
        String(m.n),
        fmt(m.value),
        fmt(m.stderr),
      ]);
    }
    if (r.subjects) {
      const macro = r.subjects.reduce((s, x) => s + x.acc, 0) / r.subjects.length;
      rows.push([
        r.task,
        r.state,
        String(r.nShot),
        r.split,
        `acc (mean of ${r.subjects.length} subjects)`,
        String(r.n),
        fmt(macro),
        "-",
      ]);
    }
  }
  return pad(rows);
}

/** MMLU's per-subject lines. */
export function formatSubjects(r: TaskResult): string {
  if (!r.subjects) return "";
  const rows = [["subject", "n", "acc", "± stderr"]];
  for (const s of r.subjects) rows.push([s.subject, String(s.n), fmt(s.acc), fmt(s.stderr)]);
  return pad(rows);
}

/** The comparison table: difference (b − a) and the paired test. */
export function formatComparisons(cs: PairedComparison[]): string {
  const rows = [["task", "metric", "n", "a", "b", "b − a", "test", "a only", "b only", "p"]];
  for (const c of cs) {
    rows.push([
      c.task,
      c.metric,
      String(c.n),
      c.a,
      c.b,
      (c.diff >= 0 ? "+" : "") + fmt(c.diff),
      c.test,
      c.aOnly === undefined ? "-" : String(c.aOnly),
      c.bOnly === undefined ? "-" : String(c.bOnly),
      fmt(c.p),
    ]);
  }
  return pad(rows);
}

/** A file-name-safe version of a state label. */
export function slug(label: string): string {
  return label.replace(/^.*[\\/]/, "").replace(/[^A-Za-z0-9._-]+/g, "_") || "state";
}

/**
 * Write `results.json` (everything but the per-item records) and one
 * `<task>.<state>.jsonl` per result (one item per line) into `dir`.
 *
 * @returns the paths written.
 */
export async function writeResults(
  dir: string,
  results: TaskResult[],
  comparisons: PairedComparison[],
  meta: Record<string, unknown>,
): Promise<string[]> {
  await Deno.mkdir(dir, { recursive: true });
  const paths: string[] = [];
  for (const r of results) {
    const path = `${dir}/${r.task}.${slug(r.state)}.jsonl`;
    await Deno.writeTextFile(path, r.items.map((it) => JSON.stringify(it)).join("\n") + "\n");
    paths.push(path);
  }
  const summary = {
    ...meta,
    results: results.map(({ items: _items, ...rest }) => rest),
    comparisons,
  };
  const path = `${dir}/results.json`;
  await Deno.writeTextFile(path, JSON.stringify(summary, null, 2) + "\n");
  paths.push(path);
  return paths;
}
