/**
 * Progress reporting for long loops (training steps, evaluation batches, downloads of
 * tokens): a one-line bar with rate and ETA on a terminal, plain lines every few seconds
 * when stderr is a file or pipe (CI logs), and a live-updating output in Jupyter.
 *
 * @example
 * ```ts
 * import { createProgress } from "./progress.ts";
 * const p = createProgress({ total: 3, label: "train", unit: "step", silent: true });
 * for (let i = 1; i <= 3; i++) p.update(i, { loss: 1 / i });
 * await p.finish("done");
 * ```
 *
 * @module
 */
import { inJupyter } from "./jupyter.ts";
import { liveOutput } from "./live.ts";
import { esc } from "./scale.ts";

/** Options of `createProgress`. */
export interface ProgressOptions {
  /** Total count, if known (enables the bar, percentage and ETA). */
  total?: number;
  /** Shown before the bar (default "progress"). */
  label?: string;
  /** Unit of `done`, for the rate ("step" → "12.5 step/s"; default "it"). */
  unit?: string;
  /** Print nothing at all. */
  silent?: boolean;
  /** Where to draw: default "auto" (Jupyter, else TTY, else plain lines). */
  mode?: "auto" | "jupyter" | "tty" | "plain";
  /** Seconds between plain lines (default 5). */
  plainIntervalS?: number;
  /** Write function for terminal/plain modes (default: stderr). */
  write?: (text: string) => void;
}

/** Extra numbers or strings to show after the bar, e.g. `{ loss: 2.31, lr: 1e-3 }`. */
export type ProgressInfo = Record<string, number | string>;

/** A progress reporter. */
export interface Progress {
  /** Report that `done` units are complete (absolute, not an increment). */
  update(done: number, info?: ProgressInfo): void;
  /** Final line: total time and average rate, plus `summary`. Await it in notebooks. */
  finish(summary?: string | ProgressInfo): Promise<void>;
}

/** "1h02m", "3m05s", "12.3s". */
export function formatDuration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return "?";
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.round(s - m * 60)).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`;
}

function fmtValue(v: number | string): string {
  if (typeof v === "string") return v;
  if (Number.isInteger(v) && Math.abs(v) < 1e6) return String(v);
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e6) ? v.toExponential(2) : String(Number(v.toPrecision(4)));
}

function fmtInfo(info: string | ProgressInfo | undefined): string {
  if (info === undefined) return "";
  if (typeof info === "string") return info;
  return Object.entries(info).map(([k, v]) => `${k}=${fmtValue(v)}`).join(" ");
}

interface Snapshot {
  done: number;
  total?: number;
  elapsed: number;
  rate: number;
  eta: number;
  info: string;
}

function bar(frac: number, width: number): string {
  const n = Math.round(Math.min(1, Math.max(0, frac)) * width);
  return "█".repeat(n) + "░".repeat(width - n);
}

function textLine(label: string, unit: string, s: Snapshot, final: boolean): string {
  const parts = [label];
  if (s.total) {
    const frac = s.done / s.total;
    parts.push(`${bar(frac, 24)} ${(100 * frac).toFixed(0).padStart(3)}%`);
    parts.push(`${s.done}/${s.total}`);
  } else parts.push(`${s.done} ${unit}`);
  parts.push(`${fmtValue(s.rate)} ${unit}/s`);
  parts.push(final || !s.total ? formatDuration(s.elapsed) : `ETA ${formatDuration(s.eta)}`);
  if (s.info) parts.push(s.info);
  return parts.join("  ");
}

function htmlFrame(label: string, unit: string, s: Snapshot, final: boolean): string {
  const bar = s.total
    ? `<progress value="${s.done}" max="${s.total}" style="width:220px;vertical-align:middle"></progress> `
    : "";
  const line = textLine(label, unit, s, final).replace(/[█░]+/, "").replace(/\s{2,}/g, " · ");
  return `<div style="font-family:monospace;font-size:12px">${bar}${esc(line)}</div>`;
}

/**
 * Create a progress reporter.
 *
 * @param opts total, label, unit, silent, mode
 * @returns `{ update(done, info?), finish(summary?) }`
 */
export function createProgress(opts: ProgressOptions = {}): Progress {
  const label = opts.label ?? "progress", unit = opts.unit ?? "it";
  const total = opts.total && opts.total > 0 ? opts.total : undefined;
  if (opts.silent) return { update() {}, finish: () => Promise.resolve() };
  let mode = opts.mode ?? "auto";
  if (mode === "auto") {
    mode = inJupyter() ? "jupyter" : Deno.stderr.isTerminal() ? "tty" : "plain";
  }
  const enc = new TextEncoder();
  const write = opts.write ?? ((t: string) => void Deno.stderr.writeSync(enc.encode(t)));
  const t0 = performance.now();
  let lastPrint = -Infinity, done = 0, info = "";
  const live = mode === "jupyter" ? liveOutput({ minIntervalMs: 250 }) : null;

  const snap = (): Snapshot => {
    const elapsed = (performance.now() - t0) / 1000;
    const rate = elapsed > 0 ? done / elapsed : 0;
    const eta = total && rate > 0 ? (total - done) / rate : NaN;
    return { done, total, elapsed, rate, eta, info };
  };
  const frame = (final: boolean) => () => {
    const s = snap();
    return {
      "text/html": htmlFrame(label, unit, s, final),
      "text/plain": textLine(label, unit, s, final),
    };
  };

  return {
    update(d, extra) {
      done = d;
      if (extra) info = fmtInfo(extra);
      const now = performance.now();
      if (live) return live.update(frame(false));
      if (mode === "tty") {
        if (now - lastPrint < 100) return;
        lastPrint = now;
        write(`\r${textLine(label, unit, snap(), false)}\x1b[K`);
      } else if (now - lastPrint >= (opts.plainIntervalS ?? 5) * 1000) {
        lastPrint = now;
        write(textLine(label, unit, snap(), false) + "\n");
      }
    },
    async finish(summary) {
      if (summary !== undefined) info = fmtInfo(summary);
      if (live) return await live.finish(frame(true));
      const line = textLine(label, unit, snap(), true);
      write(mode === "tty" ? `\r${line}\x1b[K\n` : line + "\n");
    },
  };
}
