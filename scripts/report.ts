/**
 * Execute the notebooks headlessly (through `scripts/run_notebook.py` and the project's
 * `rwkv-deno` kernel) with the given parameters, and write a report folder: each executed
 * `.ipynb` beside a self-contained HTML export (figures inline), an `index.html` linking
 * them and a `report.json` summary.
 *
 *     deno task report [--notebooks 01,02] [-p name=value ...] [--out results/report]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { findPython, listNotebooks, RUNNER, runNotebook } from "./run_notebooks.ts";
import { Figure } from "../lib/plot/figure.ts";
import { withPlotlyScripts, writePlotlyJs } from "../lib/plot/html.ts";
import { demoQuery, PARAM_NAMES } from "../web/params.ts";
import { buildWeb } from "./web.ts";

const ROOT = new URL("../", import.meta.url).pathname;

/** Debian packages the notebook runner needs (the same list as `.ci/run`). */
export const APT_PACKAGES = "jupyter-nbconvert python3-nbclient jupyter-client python3-ipykernel";

const USAGE = `Usage: deno task report [--notebooks 01,02] [-p name=value ...] [--out DIR]
                        [--timeout S] [--quiet]

Runs notebooks/*.ipynb top to bottom with the project's Deno kernel and writes, under DIR,
each executed notebook (.ipynb), its HTML export (interactive plotly figures over the static
images, offline: plotly.min.js is written once into DIR), an index.html linking them, and
DIR/web/, the in-browser demo, linked from the index as "rerun this here" with the report's
parameters. DIR can be zipped and mailed or served statically (the demo needs http://
localhost or https for WebGPU: \`deno task web --serve --out DIR/web\` or any static server).

  --notebooks   comma-separated name prefixes or substrings (01,02) or .ipynb paths;
                default: every notebook in notebooks/
  -p, --param   name=value, injected after each notebook's "parameters" cell as
                \`const name = value;\` (value parsed as JSON when it parses, else a string).
                Repeatable. Parameters whose name ends in "Path" or "Dir" (modelPath, outDir)
                are resolved against the current directory (the notebooks run in notebooks/).
                A notebook that does not use a parameter ignores it.
  --out         report folder (default results/report)
  --timeout     per-cell timeout in seconds (default 600)
  --no-web      do not build the in-browser demo into DIR/web
  --quiet       do not echo the runner's progress lines

Examples:
  deno task report
  deno task report --notebooks 01 -p steps=10 -p modelPath=tmp/t.safetensors

Needs Jupyter from Debian: apt-get install -y ${APT_PACKAGES}`;

/** One notebook's outcome in the report. */
export interface ReportEntry {
  /** File stem, e.g. `01_quickstart`. */
  name: string;
  /** The notebook's first `# heading`, or its stem. */
  title: string;
  /** Source notebook path. */
  source: string;
  /** Ran without error outputs. */
  ok: boolean;
  /** Wall time in seconds. */
  seconds: number;
  /** Error text (the runner's last lines) when it failed. */
  error?: string;
}

/**
 * Parse `name=value`: the value as JSON when it parses, else the raw string (as the runner).
 *
 * @throws RangeError when there is no `=` or the name is not an identifier
 */
export function parseParam(text: string): [string, unknown] {
  const at = text.indexOf("=");
  if (at <= 0) throw new RangeError(`-p expects name=value, got "${text}"`);
  const name = text.slice(0, at).trim(), raw = text.slice(at + 1);
  if (!/^[A-Za-z_$][\w$]*$/.test(name)) {
    throw new RangeError(`-p: parameter name "${name}" is not an identifier`);
  }
  try {
    return [name, JSON.parse(raw)];
  } catch {
    return [name, raw];
  }
}

/**
 * Make relative `*Path` / `*Dir` parameter values absolute against `cwd`, so that paths
 * typed at the command line mean the same inside the kernel (which runs in notebooks/).
 */
export function resolvePathParams(
  params: Record<string, unknown>,
  cwd: string = Deno.cwd(),
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(params)) {
    out[k] = /(Path|Dir)$/.test(k) && typeof v === "string" && v !== "" && !v.startsWith("/")
      ? `${cwd.replace(/\/$/, "")}/${v.replace(/^\.\//, "")}`
      : v;
  }
  return out;
}

/**
 * The notebooks a `--notebooks` list selects: `.ipynb` paths as given, other items as name
 * prefixes or substrings of `notebooks/*.ipynb`.
 *
 * @throws RangeError naming an item that selects nothing
 */
export function selectNotebooks(items: string[], available: string[] = listNotebooks()): string[] {
  if (!items.length) return available;
  const picked: string[] = [];
  for (const item of items) {
    if (item.endsWith(".ipynb")) {
      picked.push(item);
      continue;
    }
    const base = (p: string) => p.slice(p.lastIndexOf("/") + 1);
    const hits = available.filter((p) => base(p).startsWith(item));
    const found = hits.length ? hits : available.filter((p) => base(p).includes(item));
    if (!found.length) {
      throw new RangeError(
        `--notebooks: "${item}" matches none of ${available.map(base).join(", ") || "(none)"}`,
      );
    }
    picked.push(...found);
  }
  return [...new Set(picked)];
}

/** The first `# heading` of a notebook's markdown cells, or null. */
export function notebookTitle(nb: { cells: { cell_type: string; source: string | string[] }[] }) {
  for (const c of nb.cells) {
    if (c.cell_type !== "markdown") continue;
    const text = Array.isArray(c.source) ? c.source.join("") : c.source;
    const m = /^#\s+(.+)$/m.exec(text);
    if (m) return m[1].trim();
  }
  return null;
}

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(
    /"/g,
    "&quot;",
  );
}

/**
 * Make nbconvert's HTML self-contained: drop `<script src="file://…">` tags (require.js and
 * MathJax from the local Debian install, which nothing in these notebooks needs) and set the
 * page title. Figures are already inline (SVG / base64 PNG).
 */
export function selfContainedHtml(html: string, title: string): string {
  return html
    .replace(/<script\s+src="file:\/\/[^"]*"[^>]*>\s*<\/script>/g, "")
    .replace(/<title>[^<]*<\/title>/, `<title>${esc(title)}</title>`);
}

/**
 * {@link selfContainedHtml}, then the plotly.js tags (`plotly.min.js` beside the page) when the
 * page holds figures, so each figure's static image becomes an interactive chart.
 */
export function interactiveHtml(html: string, title: string): string {
  return withPlotlyScripts(selfContainedHtml(html, title));
}

/**
 * The "rerun this here" link: the demo page under `webDir` (relative to the index) with the
 * report's parameters that the page knows (skill, steps, batch, trainItems, testItems, seed…).
 */
export function rerunLink(params: Record<string, unknown>, webDir = "web"): string {
  const known = Object.fromEntries(
    Object.entries(params).filter(([k, v]) =>
      PARAM_NAMES.includes(k) && k !== "model" && ["string", "number"].includes(typeof v)
    ),
  );
  return `${webDir.replace(/\/$/, "")}/index.html${demoQuery(known)}`;
}

/** The index's figure: each notebook's run time (a bar per notebook, interactive). */
export function timeFigure(entries: ReportEntry[]): Figure {
  return new Figure({
    title: "run time per notebook",
    yLabel: "seconds",
    width: 640,
    height: 300,
    series: [{
      type: "bar",
      name: "seconds",
      x: entries.map((e) => e.name),
      y: entries.map((e) => e.seconds),
    }],
  });
}

/** The report's index page: one row per notebook with links, status and time. */
export function indexHtml(
  entries: ReportEntry[],
  params: Record<string, unknown>,
  when: Date = new Date(),
  rerun?: string,
): string {
  const rows = entries.map((e) => {
    const status = e.ok ? "ok" : "FAILED";
    const err = e.error ? `<pre class="err">${esc(e.error)}</pre>` : "";
    return `<tr><td><a href="${esc(e.name)}.html">${esc(e.title)}</a><br><code>${
      esc(e.name)
    }</code>${err}</td><td class="${e.ok ? "ok" : "bad"}">${status}</td><td>${
      e.seconds.toFixed(1)
    } s</td><td><a href="${esc(e.name)}.html">HTML</a> · <a href="${
      esc(e.name)
    }.ipynb">.ipynb</a></td></tr>`;
  }).join("\n");
  const paramText = Object.keys(params).length
    ? Object.entries(params).map(([k, v]) => `<code>${esc(k)} = ${esc(JSON.stringify(v))}</code>`)
      .join(", ")
    : "the notebooks' defaults";
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Notebook report</title>
<style>
body { font-family: sans-serif; margin: 2em; max-width: 60em; }
table { border-collapse: collapse; width: 100%; }
td, th { border-bottom: 1px solid #ddd; padding: 0.5em; text-align: left; vertical-align: top; }
.ok { color: #1a7f37; } .bad { color: #cf222e; font-weight: bold; }
pre.err { white-space: pre-wrap; font-size: 0.85em; color: #cf222e; }
</style></head>
<body>
<h1>Notebook report</h1>
<p>Executed ${esc(when.toISOString())} with ${paramText}.
${entries.filter((e) => e.ok).length} of ${entries.length} notebooks ran without errors.</p>
${
    rerun
      ? `<p class="rerun"><a href="${esc(rerun)}"><b>Rerun this here</b></a>: the state-tuning ` +
        `demo in this browser tab (WebGPU), with these parameters. It needs the folder served ` +
        `over http://localhost or https (e.g. <code>deno task web --serve --out web</code> ` +
        `here, or <code>python3 -m http.server</code>), not opened as a file.</p>`
      : ""
  }
<table>
<tr><th>notebook</th><th>status</th><th>time</th><th>files</th></tr>
${rows}
</table>
${entries.length ? timeFigure(entries).toHTML() : ""}
</body></html>
`;
}

/** Why the notebooks cannot run here (a message saying what to install), or null. */
export async function missingJupyter(): Promise<string | null> {
  const python = await findPython();
  const install = `apt-get install -y ${APT_PACKAGES}`;
  if (!python) {
    return `Jupyter is missing: no python3 can import nbclient, nbformat and jupyter_client ` +
      `(needed by ${RUNNER}).\nInstall it with: ${install}`;
  }
  const nbconvert = await new Deno.Command(python, {
    args: ["-c", "import nbconvert"],
    stdout: "null",
    stderr: "null",
  }).output().then((o) => o.success, () => false);
  if (!nbconvert) {
    return `nbconvert is missing (${python} cannot import it); it writes the HTML export.\n` +
      `Install it with: ${install}`;
  }
  try {
    Deno.statSync(ROOT + "node_modules/deno/deno");
  } catch {
    return `${ROOT}node_modules/deno/deno is missing: the rwkv-deno kernelspec runs it. ` +
      `Run \`npm ci\` first.`;
  }
  return null;
}

function stem(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1).replace(/\.ipynb$/, "");
}

/** The command line, checked: what to run and where, or the exit code to stop with. */
interface ReportArgs {
  books: string[];
  params: Record<string, unknown>;
  timeout: number;
  out: string;
  quiet: boolean;
  web: boolean;
}

function parseCli(args: string[]): ReportArgs | number {
  try {
    const { values } = parseArgs({
      args,
      options: {
        notebooks: { type: "string" },
        param: { type: "string", short: "p", multiple: true },
        out: { type: "string" },
        timeout: { type: "string" },
        quiet: { type: "boolean" },
        "no-web": { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const timeout = values.timeout === undefined ? 600 : Number(values.timeout);
    const params = resolvePathParams(Object.fromEntries((values.param ?? []).map(parseParam)));
    const items = (values.notebooks ?? "").split(",").map((s) => s.trim()).filter(Boolean);
    const books = selectNotebooks(items);
    if (!books.length) throw new RangeError(`no notebooks in ${ROOT}notebooks/`);
    for (const b of books) Deno.statSync(b);
    if (!Number.isFinite(timeout) || timeout <= 0) {
      throw new RangeError(`--timeout must be a positive number of seconds, got ${values.timeout}`);
    }
    const out = (values.out ?? "results/report").replace(/\/$/, "");
    return { books, params, timeout, out, quiet: !!values.quiet, web: !values["no-web"] };
  } catch (e) {
    console.error(`error: ${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
}

/** Run one notebook into `a.out` (ipynb and interactive HTML) and say how it went. */
async function runEntry(book: string, a: ReportArgs): Promise<ReportEntry> {
  const name = stem(book);
  const ipynb = `${a.out}/${name}.ipynb`, html = `${a.out}/${name}.html`;
  console.error(`== ${name}`);
  const r = await runNotebook(book, {
    out: ipynb,
    html,
    params: a.params,
    timeout: a.timeout,
    verbose: !a.quiet,
  });
  let title = name;
  try {
    const nb = JSON.parse(await Deno.readTextFile(ipynb));
    title = notebookTitle(nb) ?? name;
    await Deno.writeTextFile(html, interactiveHtml(await Deno.readTextFile(html), title));
  } catch {
    // The runner failed before writing: the entry below records the error.
  }
  const seconds = Number(r.seconds.toFixed(1));
  const entry: ReportEntry = { name, title, source: book, ok: r.success, seconds };
  if (!r.success) {
    entry.error = r.stderr.split("\n").filter((l) => !l.startsWith("[run_notebook] cell"))
      .slice(-25).join("\n").trim();
    if (a.quiet) console.error(entry.error);
  }
  console.error(`== ${name}: ${r.success ? "ok" : "FAILED"} in ${seconds} s`);
  return entry;
}

/** Write index.html (with the rerun link and web demo unless --no-web) and report.json. */
async function writeReport(a: ReportArgs, entries: ReportEntry[]): Promise<void> {
  const { out, params } = a;
  await writePlotlyJs(out);
  let rerun: string | undefined;
  if (a.web) {
    await buildWeb(`${out}/web`);
    rerun = rerunLink(params, "web");
  }
  await Deno.writeTextFile(
    `${out}/index.html`,
    withPlotlyScripts(indexHtml(entries, params, new Date(), rerun)),
  );
  await Deno.writeTextFile(
    `${out}/report.json`,
    JSON.stringify({ params, notebooks: entries }, null, 2) + "\n",
  );
}

async function main(): Promise<number> {
  const a = parseCli(Deno.args);
  if (typeof a === "number") return a;
  const missing = await missingJupyter();
  if (missing) {
    console.error(`error: ${missing}`);
    return 1;
  }
  await Deno.mkdir(a.out, { recursive: true });
  const entries: ReportEntry[] = [];
  for (const book of a.books) entries.push(await runEntry(book, a));
  await writeReport(a, entries);
  const failed = entries.filter((e) => !e.ok);
  console.error(
    `${
      entries.length - failed.length
    } of ${entries.length} notebooks ok; report: ${a.out}/index.html`,
  );
  if (failed.length) console.error(`failed: ${failed.map((e) => e.name).join(", ")}`);
  return failed.length ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main());
