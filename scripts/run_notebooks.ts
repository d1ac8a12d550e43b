/**
 * Run every notebook in `notebooks/` headlessly through `scripts/run_notebook.py` (nbclient +
 * the project's `rwkv-deno` kernel), writing executed copies (and HTML) under
 * `results/notebooks/`. Also exports the helpers the tests use.
 *
 * Usage: `deno task notebooks [--no-html] [--timeout S] [name-filter ...]`
 *
 * @module
 */
import { parseArgs } from "node:util";

const ROOT = new URL("../", import.meta.url).pathname;
/** Path of the Python runner. */
export const RUNNER: string = ROOT + "scripts/run_notebook.py";

let pythonCache: Promise<string | null> | undefined;

async function hasNbclient(python: string): Promise<boolean> {
  try {
    const out = await new Deno.Command(python, {
      args: ["-c", "import nbclient, nbformat, jupyter_client"],
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success;
  } catch {
    return false;
  }
}

/**
 * A Python 3 that can import nbclient (the `python3` on PATH, else Debian's
 * `/usr/bin/python3`, which is where apt puts python3-nbclient), or null.
 */
export function findPython(): Promise<string | null> {
  pythonCache ??= (async () => {
    for (const p of ["python3", "/usr/bin/python3"]) if (await hasNbclient(p)) return p;
    return null;
  })();
  return pythonCache;
}

/** Result of one runner invocation. */
export interface RunResult {
  /** Exit status 0. */
  success: boolean;
  /** Exit status. */
  code: number;
  /** Everything the runner wrote to stderr (progress and errors). */
  stderr: string;
  /** Wall time. */
  seconds: number;
}

/** Options of `runNotebook`. */
export interface RunOptions {
  /** Where to write the executed notebook. */
  out?: string;
  /** Where to write the HTML export. */
  html?: string;
  /** Parameters injected after the `parameters` cell. */
  params?: Record<string, unknown>;
  /** Per-cell timeout in seconds (default 600). */
  timeout?: number;
  /** Echo the runner's progress lines to our stderr. */
  verbose?: boolean;
}

/**
 * Execute a notebook with the runner.
 *
 * @param path the `.ipynb`
 * @param opts out/html paths, params, timeout
 * @returns exit status, stderr text and duration
 * @throws Error when no Python with nbclient is installed (message says what to install)
 */
export async function runNotebook(path: string, opts: RunOptions = {}): Promise<RunResult> {
  const python = await findPython();
  if (!python) {
    throw new Error(
      "no python3 with nbclient: apt-get install -y python3-nbclient jupyter-client " +
        "python3-ipykernel jupyter-nbconvert",
    );
  }
  const args = [RUNNER, path, "--timeout", String(opts.timeout ?? 600)];
  if (opts.out) args.push("--out", opts.out);
  if (opts.html) args.push("--html", opts.html);
  for (const [k, v] of Object.entries(opts.params ?? {})) {
    args.push("-p", `${k}=${JSON.stringify(v)}`);
  }
  const t0 = performance.now();
  const child = new Deno.Command(python, {
    args,
    stdout: "inherit",
    stderr: "piped",
    env: { XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp" },
  }).spawn();
  const chunks: string[] = [];
  const dec = new TextDecoder();
  for await (const chunk of child.stderr) {
    const text = dec.decode(chunk, { stream: true });
    chunks.push(text);
    if (opts.verbose) Deno.stderr.writeSync(chunk);
  }
  const status = await child.status;
  return {
    success: status.success,
    code: status.code,
    stderr: chunks.join(""),
    seconds: (performance.now() - t0) / 1000,
  };
}

/** What an executed notebook contains. */
export interface NotebookReport {
  /** Mime types of all display/execute outputs, with counts. */
  mimeCounts: Record<string, number>;
  /** Error texts (error outputs and stderr streams containing "error:"). */
  errors: string[];
}

/** One output of an executed notebook cell (the fields read here). */
export interface NbOutput {
  /** "stream", "display_data", "execute_result" or "error". */
  output_type: string;
  /** Stream name ("stdout"/"stderr"). */
  name?: string;
  /** Stream text. */
  text?: string | string[];
  /** Mime bundle of display/execute outputs. */
  data?: Record<string, unknown>;
  /** Error class name. */
  ename?: string;
  /** Error message. */
  evalue?: string;
}

/** Summarise an executed notebook (path or parsed JSON). */
export function inspectNotebook(
  nb: string | { cells: { outputs?: NbOutput[] }[] },
): NotebookReport {
  const doc = typeof nb === "string" ? JSON.parse(Deno.readTextFileSync(nb)) : nb;
  const report: NotebookReport = { mimeCounts: {}, errors: [] };
  doc.cells.forEach((cell: { outputs?: NbOutput[] }, i: number) => {
    for (const o of cell.outputs ?? []) {
      if (o.output_type === "error") report.errors.push(`cell ${i}: ${o.ename}: ${o.evalue}`);
      const text = Array.isArray(o.text) ? o.text.join("") : o.text ?? "";
      if (o.output_type === "stream" && o.name === "stderr" && /error:/i.test(text)) {
        report.errors.push(`cell ${i}: ${text.trim()}`);
      }
      for (const mime of Object.keys(o.data ?? {})) {
        report.mimeCounts[mime] = (report.mimeCounts[mime] ?? 0) + 1;
      }
    }
  });
  return report;
}

/**
 * Assert that an executed notebook has no error output and shows at least one plotly
 * figure (`application/vnd.plotly.v1+json`) and one `image/png`.
 *
 * @param nb path or parsed notebook
 * @throws Error listing what is missing
 */
export function assertNotebookHasFigures(nb: string | { cells: { outputs?: NbOutput[] }[] }): void {
  const r = inspectNotebook(nb);
  const problems: string[] = [];
  if (r.errors.length) problems.push(`error outputs: ${r.errors.join(" | ")}`);
  for (const mime of ["application/vnd.plotly.v1+json", "image/png"]) {
    if (!r.mimeCounts[mime]) problems.push(`no ${mime} output`);
  }
  if (problems.length) {
    const where = typeof nb === "string" ? nb : "notebook";
    throw new Error(
      `${where}: ${problems.join("; ")} (outputs seen: ${JSON.stringify(r.mimeCounts)})`,
    );
  }
}

/** Notebooks in `notebooks/` (sorted), optionally filtered by substrings of their names. */
export function listNotebooks(filters: string[] = []): string[] {
  const dir = ROOT + "notebooks/";
  let names: string[] = [];
  try {
    names = [...Deno.readDirSync(dir)].filter((e) => e.isFile && e.name.endsWith(".ipynb"))
      .map((e) => e.name).sort();
  } catch {
    return [];
  }
  return names.filter((n) => !filters.length || filters.some((f) => n.includes(f))).map((n) =>
    dir + n
  );
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    options: {
      "no-html": { type: "boolean" },
      timeout: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    allowPositionals: true,
  });
  if (values.help) {
    console.log(`Usage: deno task notebooks [NAME …] [--no-html] [--timeout SECONDS]

Executes notebooks/*.ipynb (or those whose names contain NAME) headless through the Deno
kernel (scripts/run_notebook.py), writing executed copies and HTML to results/notebooks/.
Fails on any error output.`);
    return 0;
  }
  const books = listNotebooks(positionals);
  if (!books.length) {
    console.error(
      `run_notebooks: no notebooks in ${ROOT}notebooks/ match ${positionals.join(" ") || "*"}`,
    );
    return positionals.length ? 1 : 0;
  }
  const outDir = ROOT + "results/notebooks/";
  await Deno.mkdir(outDir, { recursive: true });
  const failed: string[] = [];
  for (const nb of books) {
    const stem = nb.slice(nb.lastIndexOf("/") + 1).replace(/\.ipynb$/, "");
    console.error(`== ${stem}`);
    const r = await runNotebook(nb, {
      out: `${outDir}${stem}.ipynb`,
      html: values["no-html"] ? undefined : `${outDir}${stem}.html`,
      timeout: values.timeout ? Number(values.timeout) : undefined,
      verbose: true,
    });
    console.error(`== ${stem}: ${r.success ? "ok" : "FAILED"} in ${r.seconds.toFixed(1)}s`);
    if (!r.success) failed.push(stem);
  }
  console.error(`${books.length - failed.length} passed, ${failed.length} failed`);
  if (failed.length) console.error(`failed: ${failed.join(", ")}`);
  return failed.length ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main());
