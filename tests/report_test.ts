/**
 * `scripts/report.ts`: argument helpers, the index page, the HTML clean-up, and one end-to-end
 * run on the plot smoke notebook (skipped, with a message, when Jupyter is missing).
 */
import assert from "node:assert/strict";
import {
  indexHtml,
  missingJupyter,
  notebookTitle,
  parseParam,
  resolvePathParams,
  selectNotebooks,
  selfContainedHtml,
} from "../scripts/report.ts";

const ROOT = new URL("../", import.meta.url).pathname;

Deno.test("parseParam: JSON values, raw strings, bad input", () => {
  assert.deepEqual(parseParam("steps=10"), ["steps", 10]);
  assert.deepEqual(parseParam("lrs=[0.1,1]"), ["lrs", [0.1, 1]]);
  assert.deepEqual(parseParam('skill="sort"'), ["skill", "sort"]);
  assert.deepEqual(parseParam("skill=sort"), ["skill", "sort"]);
  assert.deepEqual(parseParam("expr=a=b"), ["expr", "a=b"]);
  assert.throws(() => parseParam("steps"), /name=value/);
  assert.throws(() => parseParam("2x=1"), /not an identifier/);
});

Deno.test("resolvePathParams: only *Path / *Dir strings, relative ones", () => {
  const r = resolvePathParams(
    { modelPath: "./models/m.st", outDir: "out", absPath: "/x", steps: 3, skill: "a/b" },
    "/work",
  );
  assert.deepEqual(r, {
    modelPath: "/work/models/m.st",
    outDir: "/work/out",
    absPath: "/x",
    steps: 3,
    skill: "a/b",
  });
});

Deno.test("selectNotebooks: prefixes, substrings, paths, errors", () => {
  const all = ["/n/01_quickstart.ipynb", "/n/02_state_tuning.ipynb", "/n/10_extra.ipynb"];
  assert.deepEqual(selectNotebooks([], all), all);
  assert.deepEqual(selectNotebooks(["01", "02"], all), all.slice(0, 2));
  assert.deepEqual(selectNotebooks(["tuning"], all), [all[1]]);
  assert.deepEqual(selectNotebooks(["x/y.ipynb"], all), ["x/y.ipynb"]);
  assert.throws(() => selectNotebooks(["99"], all), /"99" matches none of 01_quickstart/);
});

Deno.test("notebookTitle, selfContainedHtml, indexHtml", () => {
  const nb = {
    cells: [
      { cell_type: "code", source: "# not a heading" },
      { cell_type: "markdown", source: ["intro\n", "# Quickstart: a <state>\n"] },
    ],
  };
  assert.equal(notebookTitle(nb), "Quickstart: a <state>");
  assert.equal(notebookTitle({ cells: [] }), null);
  const html = selfContainedHtml(
    `<head><title>Notebook</title><script src="file:///usr/share/javascript/r.js"></script>` +
      `</head><body><img src="data:image/png;base64,AA"></body>`,
    "A & B",
  );
  assert.ok(!html.includes("file://"), html);
  assert.match(html, /<title>A &amp; B<\/title>/);
  assert.match(html, /data:image\/png/);
  const index = indexHtml(
    [
      { name: "01_q", title: "Quick <1>", source: "n/01_q.ipynb", ok: true, seconds: 12.34 },
      { name: "02_s", title: "S", source: "n/02_s.ipynb", ok: false, seconds: 1, error: "boom" },
    ],
    { steps: 5 },
    new Date("2026-01-02T03:04:05Z"),
  );
  assert.match(index, /href="01_q\.html">Quick &lt;1&gt;/);
  assert.match(index, /href="02_s\.ipynb"/);
  assert.match(index, /12\.3 s/);
  assert.match(index, /FAILED/);
  assert.match(index, /boom/);
  assert.match(index, /steps = 5/);
  assert.match(index, /1 of 2 notebooks ran without errors/);
});

const missing = await missingJupyter();
if (missing) console.warn(`SKIP report end-to-end test: ${missing.split("\n")[0]}`);

Deno.test({
  name: "deno task report on the plot smoke notebook writes .ipynb, HTML and index",
  ignore: !!missing,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const run = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          ROOT + "scripts/report.ts",
          "--notebooks",
          ROOT + "tests/data/plot_smoke.ipynb",
          "-p",
          "n=7",
          "--out",
          dir,
          "--quiet",
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const err = new TextDecoder().decode(run.stderr);
      assert.ok(run.success, `report failed (exit ${run.code}):\n${err}`);
      const files = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
      assert.deepEqual(files, ["index.html", "plot_smoke.html", "plot_smoke.ipynb", "report.json"]);
      const html = await Deno.readTextFile(`${dir}/plot_smoke.html`);
      assert.ok(html.includes("<svg") && html.includes("data:image/png;base64"), "figures inline");
      assert.ok(!html.includes('src="file://'), "no local script references");
      assert.match(html, /<title>Plot smoke test<\/title>/);
      const nb = await Deno.readTextFile(`${dir}/plot_smoke.ipynb`);
      assert.match(nb, /n = 7/, "the parameter reached the notebook");
      const index = await Deno.readTextFile(`${dir}/index.html`);
      assert.match(index, /href="plot_smoke\.html"/);
      const summary = JSON.parse(await Deno.readTextFile(`${dir}/report.json`));
      assert.equal(summary.notebooks[0].ok, true);
      assert.deepEqual(summary.params, { n: 7 });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("report --help and bad arguments", async () => {
  const run = (args: string[]) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", ROOT + "scripts/report.ts", ...args],
      stdout: "piped",
      stderr: "piped",
    }).output();
  const help = await run(["--help"]);
  assert.ok(help.success);
  assert.match(new TextDecoder().decode(help.stdout), /deno task report/);
  const bad = await run(["--notebooks", "no_such_notebook"]);
  assert.equal(bad.code, 2);
  assert.match(new TextDecoder().decode(bad.stderr), /matches none of/);
});
