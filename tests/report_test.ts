/**
 * `scripts/report.ts`: argument helpers, the index page, the HTML clean-up, and one end-to-end
 * run on the plot smoke notebook (skipped, with a message, when Jupyter is missing).
 */
/// <reference lib="dom" />
/// <reference lib="deno.webgpu" />
/// <reference lib="deno.ns" />
import { assert, assertEquals, assertMatch, assertThrowsMatch } from "@std/assert";
import {
  indexHtml,
  interactiveHtml,
  missingJupyter,
  notebookTitle,
  parseParam,
  rerunLink,
  resolvePathParams,
  selectNotebooks,
  selfContainedHtml,
} from "../scripts/report.ts";
import { chromiumSkip, hasChromium, launch, offlinePage } from "./_browser.ts";
import type { PageLog } from "./_browser.ts";
import type { Browser } from "puppeteer-core";
import { decodePng, imageStats } from "../lib/plot/png_decode.ts";
import { lineFigure } from "../lib/plot/figure.ts";

const ROOT = new URL("../", import.meta.url).pathname;

Deno.test("parseParam: JSON values, raw strings, bad input", () => {
  assertEquals(parseParam("steps=10"), ["steps", 10]);
  assertEquals(parseParam("lrs=[0.1,1]"), ["lrs", [0.1, 1]]);
  assertEquals(parseParam('skill="sort"'), ["skill", "sort"]);
  assertEquals(parseParam("skill=sort"), ["skill", "sort"]);
  assertEquals(parseParam("expr=a=b"), ["expr", "a=b"]);
  assertThrowsMatch(() => parseParam("steps"), /name=value/);
  assertThrowsMatch(() => parseParam("2x=1"), /not an identifier/);
});

Deno.test("resolvePathParams: only *Path / *Dir strings, relative ones", () => {
  const r = resolvePathParams(
    { modelPath: "./models/m.st", outDir: "out", absPath: "/x", steps: 3, skill: "a/b" },
    "/work",
  );
  assertEquals(r, {
    modelPath: "/work/models/m.st",
    outDir: "/work/out",
    absPath: "/x",
    steps: 3,
    skill: "a/b",
  });
});

Deno.test("selectNotebooks: prefixes, substrings, paths, errors", () => {
  const all = ["/n/01_quickstart.ipynb", "/n/02_state_tuning.ipynb", "/n/10_extra.ipynb"];
  assertEquals(selectNotebooks([], all), all);
  assertEquals(selectNotebooks(["01", "02"], all), all.slice(0, 2));
  assertEquals(selectNotebooks(["tuning"], all), [all[1]]);
  assertEquals(selectNotebooks(["x/y.ipynb"], all), ["x/y.ipynb"]);
  assertThrowsMatch(() => selectNotebooks(["99"], all), /"99" matches none of 01_quickstart/);
});

Deno.test("notebookTitle, selfContainedHtml, indexHtml", () => {
  const nb = {
    cells: [
      { cell_type: "code", source: "# not a heading" },
      { cell_type: "markdown", source: ["intro\n", "# Quickstart: a <state>\n"] },
    ],
  };
  assertEquals(notebookTitle(nb), "Quickstart: a <state>");
  assertEquals(notebookTitle({ cells: [] }), null);
  const html = selfContainedHtml(
    `<head><title>Notebook</title><script src="file:///usr/share/javascript/r.js"></script>` +
      `</head><body><img src="data:image/png;base64,AA"></body>`,
    "A & B",
  );
  assert(!html.includes("file://"), html);
  assertMatch(html, /<title>A &amp; B<\/title>/);
  assertMatch(html, /data:image\/png/);
  const index = indexHtml(
    [
      { name: "01_q", title: "Quick <1>", source: "n/01_q.ipynb", ok: true, seconds: 12.34 },
      { name: "02_s", title: "S", source: "n/02_s.ipynb", ok: false, seconds: 1, error: "boom" },
    ],
    { steps: 5 },
    new Date("2026-01-02T03:04:05Z"),
  );
  assertMatch(index, /href="01_q\.html">Quick &lt;1&gt;/);
  assertMatch(index, /href="02_s\.ipynb"/);
  assertMatch(index, /12\.3 s/);
  assertMatch(index, /FAILED/);
  assertMatch(index, /boom/);
  assertMatch(index, /steps = 5/);
  assertMatch(index, /1 of 2 notebooks ran without errors/);
});

Deno.test("rerunLink keeps the page's parameters; interactiveHtml adds plotly only to figure pages", () => {
  assertEquals(
    rerunLink({ steps: 10, skill: "sort", learningRates: [1], modelPath: "/x", outDir: "/o" }),
    "web/index.html?skill=sort&steps=10",
  );
  assertEquals(rerunLink({}, "../web/"), "../web/index.html");
  const plain = interactiveHtml("<html><head><title>x</title></head><body>text</body></html>", "T");
  assert(!plain.includes("plotly.min.js"));
  const fig = interactiveHtml(
    `<html><body>${lineFigure({ a: [1, 2] }).toHTML()}</body></html>`,
    "T",
  );
  assertMatch(fig, /<script src="plotly\.min\.js"/);
});

/**
 * Open `file` offline (only file: URLs load) and check that every figure became a plotly chart
 * (`.main-svg` inside the figure), with no console errors and no blocked requests.
 */
async function checkOffline(browser: Browser, file: string, shot?: string): Promise<PageLog> {
  const { page, log } = await offlinePage(browser, ["file://"]);
  await page.setViewport({ width: 1000, height: 900 });
  await page.goto(`file://${file}`, { waitUntil: "load" });
  const figures = await page.$$eval(".rwkv-figure", (e) => e.length);
  assert(figures > 0, `${file}: no figures`);
  await page.waitForFunction(
    (n: number) => document.querySelectorAll('.rwkv-figure[data-rendered="plotly"]').length === n,
    { timeout: 60_000, polling: 200 },
    figures,
  );
  const rendered = await page.$$eval(".rwkv-figure .rwkv-plotly .main-svg", (e) => e.length);
  assert(rendered >= figures, `${file}: ${rendered} plotly SVGs for ${figures} figures`);
  const hidden = await page.$$eval(
    ".rwkv-figure .rwkv-static",
    (e) => e.every((x) => (x as HTMLElement).style.display === "none"),
  );
  assert(hidden, "the static images give way to the interactive charts");
  if (shot) {
    const png = await page.screenshot({ path: shot, fullPage: true });
    const st = imageStats(await decodePng(new Uint8Array(png)));
    assert(st.variance > 200, `blank screenshot ${shot}: ${JSON.stringify(st)}`);
  }
  await page.close();
  assertEquals(log.errors, [], `${file}: console errors`);
  assertEquals(log.blocked, [], `${file}: requests outside the folder`);
  return log;
}

const missing = await missingJupyter();
if (missing) console.warn(`SKIP report end-to-end test: ${missing.split("\n")[0]}`);

/** `deno task report` on the plot smoke notebook with n = 7 into dir; it must succeed. */
async function runReport(dir: string) {
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
  assert(run.success, `report failed (exit ${run.code}):\n${err}`);
}

/** The report folder: its files, the web/ copy, the inlined HTML, the notebook, the index. */
async function checkReportFiles(dir: string) {
  const files = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
  assertEquals(files, [
    "index.html",
    "plot_smoke.html",
    "plot_smoke.ipynb",
    "plotly.min.js",
    "report.json",
    "web",
  ]);
  for (const f of ["index.html", "main.js", "plotly.min.js", "shaders/index.json"]) {
    assert(Deno.statSync(`${dir}/web/${f}`).isFile, `web/${f} in the report`);
  }
  const html = await Deno.readTextFile(`${dir}/plot_smoke.html`);
  assert(html.includes("<svg") && html.includes("data:image/png;base64"), "figures inline");
  assert(!html.includes('src="file://'), "no local script references");
  assertMatch(html, /<title>Plot smoke test<\/title>/);
  const nb = await Deno.readTextFile(`${dir}/plot_smoke.ipynb`);
  assertMatch(nb, /n = 7/, "the parameter reached the notebook");
  const index = await Deno.readTextFile(`${dir}/index.html`);
  assertMatch(index, /href="plot_smoke\.html"/);
  assertMatch(index, /href="web\/index\.html"[^>]*>.*Rerun this here/, "rerun link");
}

/** The index and the notebook page offline in Chromium (skipped, with a message, without it). */
async function checkReportOffline(dir: string) {
  if (!hasChromium) console.warn(`SKIP the offline Chromium check: ${chromiumSkip}`);
  else {
    const browser = await launch();
    try {
      await Deno.mkdir(`${ROOT}results/report-test`, { recursive: true });
      await checkOffline(browser, `${dir}/index.html`, `${ROOT}results/report-test/index.png`);
      await checkOffline(
        browser,
        `${dir}/plot_smoke.html`,
        `${ROOT}results/report-test/page.png`,
      );
    } finally {
      await browser.close();
    }
  }
}

Deno.test({
  name:
    "deno task report on the plot smoke notebook: .ipynb, HTML, index, web/; offline in Chromium",
  ignore: !!missing,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      await runReport(dir);
      await checkReportFiles(dir);
      await checkReportOffline(dir);
      const summary = JSON.parse(await Deno.readTextFile(`${dir}/report.json`));
      assertEquals(summary.notebooks[0].ok, true);
      assertEquals(summary.params, { n: 7 });
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
  assert(help.success);
  assertMatch(new TextDecoder().decode(help.stdout), /deno task report/);
  const bad = await run(["--notebooks", "no_such_notebook"]);
  assertEquals(bad.code, 2);
  assertMatch(new TextDecoder().decode(bad.stderr), /matches none of/);
});
