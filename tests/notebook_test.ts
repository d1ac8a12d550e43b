/**
 * Notebooks run headlessly through `scripts/run_notebook.py` with the project's `rwkv-deno`
 * kernel: the plot smoke notebook must show plotly JSON and PNG outputs without errors, a
 * throwing cell must fail the run with its index, and every `notebooks/*.ipynb` must pass the
 * same checks. Skipped (with a message) when python3-nbclient or the Deno binary is missing.
 */
import { assert, assertEquals, assertMatch } from "@std/assert";
import {
  assertNotebookHasFigures,
  findPython,
  inspectNotebook,
  listNotebooks,
  runNotebook,
} from "../scripts/run_notebooks.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const DENO_BIN = ROOT + "node_modules/deno/deno";

function exists(p: string): boolean {
  try {
    Deno.statSync(p);
    return true;
  } catch {
    return false;
  }
}

const python = await findPython();
const skip = !python
  ? "no python3 with nbclient (apt-get install -y python3-nbclient jupyter-client " +
    "python3-ipykernel jupyter-nbconvert)"
  : !exists(DENO_BIN)
  ? `${DENO_BIN} is missing (run npm install): the rwkv-deno kernelspec calls it`
  : "";
if (skip) console.warn(`SKIP notebook tests: ${skip}`);

const opts = { sanitizeOps: false, sanitizeResources: false };

Deno.test({
  name: "plot_smoke.ipynb: plotly + PNG outputs, parameters injected, no errors",
  ignore: !!skip,
  ...opts,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const out = `${dir}/smoke.ipynb`;
      const r = await runNotebook(ROOT + "tests/data/plot_smoke.ipynb", {
        out,
        html: `${dir}/smoke.html`,
        params: { n: 12 },
        timeout: 120,
      });
      assert(r.success, `runner failed (exit ${r.code}):\n${r.stderr}`);
      console.log(`plot_smoke.ipynb ran in ${r.seconds.toFixed(1)} s`);
      assertNotebookHasFigures(out);
      const report = inspectNotebook(out);
      assert(report.mimeCounts["image/png"] >= 3, "line, heatmap and live plot PNGs");
      const nb = JSON.parse(await Deno.readTextFile(out));
      const text = nb.cells.flatMap((c: { outputs?: { text?: string | string[] }[] }) =>
        (c.outputs ?? []).map((o) => [o.text ?? ""].flat().join(""))
      ).join("");
      assertMatch(text, /n = 12/, "the injected parameter reached the notebook");
      const htmls = JSON.stringify(nb.cells.map((c: { outputs?: unknown[] }) => c.outputs ?? []));
      assertMatch(htmls, /<progress value=\\"12\\" max=\\"12\\"/, "final progress frame");
      const html = await Deno.readTextFile(`${dir}/smoke.html`);
      assert(html.includes("<svg") && html.includes("data:image/png;base64"), "HTML export");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "runner fails with the cell index when a cell throws",
  ignore: !!skip,
  ...opts,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const cell = (source: string) => ({
        cell_type: "code",
        execution_count: null,
        metadata: {},
        outputs: [],
        source,
      });
      const nb = {
        cells: [
          { cell_type: "markdown", metadata: {}, source: "# failing" },
          cell("1 + 1"),
          cell('throw new Error("deliberate failure 42");'),
          cell('"never reached"'),
        ],
        metadata: {
          kernelspec: { name: "rwkv-deno", display_name: "Deno", language: "typescript" },
        },
        nbformat: 4,
        nbformat_minor: 5,
      };
      await Deno.writeTextFile(`${dir}/bad.ipynb`, JSON.stringify(nb));
      const r = await runNotebook(`${dir}/bad.ipynb`, { out: `${dir}/bad.out.ipynb`, timeout: 60 });
      assertEquals(r.success, false);
      assertMatch(r.stderr, /FAILED: cell 2 of/);
      assertMatch(r.stderr, /deliberate failure 42/);
      const done = JSON.parse(await Deno.readTextFile(`${dir}/bad.out.ipynb`));
      assertEquals(done.cells[2].outputs.at(-1).output_type, "error", "error kept in the output");
      assertEquals(done.cells[3].outputs, [], "later cells are not run");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

const books = listNotebooks();
if (!skip && !books.length) console.warn("SKIP notebooks/*.ipynb: there are none yet");

Deno.test({
  name: "every notebooks/*.ipynb runs with plotly + PNG outputs and no errors",
  ignore: !!skip || !books.length,
  ...opts,
  async fn(t) {
    const dir = await Deno.makeTempDir();
    try {
      for (const book of books) {
        const name = book.slice(book.lastIndexOf("/") + 1);
        await t.step({
          name,
          ...opts,
          async fn() {
            const out = `${dir}/${name}`;
            const r = await runNotebook(book, { out, timeout: 600 });
            assert(r.success, `${name} failed (exit ${r.code}):\n${r.stderr}`);
            console.log(`${name} ran in ${r.seconds.toFixed(1)} s`);
            assertNotebookHasFigures(out);
          },
        });
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
