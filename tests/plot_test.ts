/**
 * Plotting: SVG well-formed and labelled, PNG valid and deterministic, plotly JSON shape,
 * saveFigure outputs, spec validation, live output and the progress reporter's text modes.
 */
import {
  assert,
  assertEquals,
  assertMatch,
  assertNotStrictEquals,
  assertStrictEquals,
  assertThrowsMatch,
} from "@std/assert";
import {
  display,
  Figure,
  figureHtmlPage,
  heatmapFigure,
  JUPYTER_DISPLAY,
  lineFigure,
  saveFigure,
} from "../lib/plot/figure.ts";
import { liveOutput, LivePlot } from "../lib/plot/live.ts";
import { FIGURE_JSON_CLASS, PLOTLY_JS, plotlyJsPath, withPlotlyScripts } from "../lib/plot/html.ts";
import { svgToPng } from "../lib/plot/png.ts";
import { logTicks, niceTicks } from "../lib/plot/scale.ts";
import { createProgress, formatDuration } from "../lib/plot/progress.ts";

const PLOTLY = "application/vnd.plotly.v1+json";

/** Minimal XML well-formedness: every tag closed in order, no stray `<`. */
function assertWellFormed(svg: string): void {
  const stack: string[] = [];
  const re = /<(\/?)([a-zA-Z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g;
  let pos = 0;
  for (let m = re.exec(svg); m; m = re.exec(svg)) {
    assert(!svg.slice(pos, m.index).includes("<"), `stray '<' near ${svg.slice(pos, pos + 60)}`);
    pos = re.lastIndex;
    const [, close, name, , self] = m;
    if (self) continue;
    if (close) assertStrictEquals(stack.pop(), name, `mismatched </${name}>`);
    else stack.push(name);
  }
  assert(!svg.slice(pos).includes("<"), "unparsed tag at the end");
  assertEquals(stack, [], "unclosed tags");
}

function pngSize(png: Uint8Array): { w: number; h: number } {
  const magic = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  assertEquals([...png.subarray(0, 8)], magic, "PNG signature");
  const dv = new DataView(png.buffer, png.byteOffset);
  return { w: dv.getUint32(16), h: dv.getUint32(20) };
}

const y = Array.from({ length: 50 }, (_, i) => 2 + Math.exp(-i / 10));
const lineFig = new Figure({
  title: "Loss <&> curve",
  xLabel: "step",
  yLabel: "loss",
  logY: true,
  series: [
    { type: "line", name: "train", y, band: y.map(() => 0.1) },
    { type: "scatter", name: "eval", x: [0, 10, 20], y: [3, 2.4, 2.1] },
  ],
});
const z = Array.from({ length: 6 }, (_, i) => Array.from({ length: 9 }, (_, j) => i - j));
const heat = heatmapFigure(z, { title: "heat", colorscale: "rdbu" });

Deno.test("SVG: well-formed, escaped title, axis labels, legend, heatmap cells", () => {
  const svg = lineFig.toSVG();
  assert(svg.startsWith("<svg "));
  assertWellFormed(svg);
  assert(svg.includes("Loss &lt;&amp;&gt; curve"), "escaped title");
  for (const s of ["step", "loss", "train", "eval"]) assert(svg.includes(`>${s}</text>`), s);
  const hs = heat.toSVG();
  assertWellFormed(hs);
  const img = /<image [^>]*href="data:image\/png;base64,([^"]+)"/.exec(hs);
  assert(img, "cells as one embedded PNG");
  const cells = Uint8Array.from(atob(img[1]), (c) => c.charCodeAt(0));
  assertEquals(pngSize(cells), { w: 9, h: 6 }, "one pixel per cell");
  assertStrictEquals(svg, lineFig.toSVG(), "deterministic");
});

Deno.test("SVG: gaps at NaN, categorical bars, clip ids differ between figures", () => {
  const f = new Figure({ series: [{ type: "line", y: [1, 2, NaN, 3, 4] }] });
  const path = /<path d="(M[^"]*)" fill="none" stroke="#1f77b4"/.exec(f.toSVG());
  assert(path, "line path");
  assertEquals(path[1].split("M").length - 1, 2, "two segments around the NaN");
  const bars = new Figure({
    series: [
      { type: "bar", name: "a", x: ["x", "y"], y: [1, 2] },
      { type: "bar", name: "b", x: ["x", "y"], y: [2, -1] },
    ],
  }).toSVG();
  assertWellFormed(bars);
  assert(bars.includes(">x</text>") && bars.includes(">y</text>"));
  const id = (s: string) => /clipPath id="([^"]+)"/.exec(s)?.[1];
  assertNotStrictEquals(id(bars), id(f.toSVG()));
});

Deno.test("PNG: signature, size = pngScale × SVG size, deterministic, fast", async () => {
  await lineFig.toPNG(); // warm up the renderer
  const t0 = performance.now();
  const png = await lineFig.toPNG();
  const ms = performance.now() - t0;
  assertEquals(pngSize(png), { w: 1280, h: 800 });
  assertEquals(await lineFig.toPNG(), png, "deterministic");
  const small = new Figure({ ...lineFig.spec, width: 300, height: 200, pngScale: 1 });
  assertEquals(pngSize(await small.toPNG()), { w: 300, h: 200 });
  console.log(`PNG render (warm): ${ms.toFixed(0)} ms`);
  assert(ms < 2000, `PNG render took ${ms.toFixed(0)} ms`);
});

Deno.test("PNG: the wasm fallback renders too", async () => {
  const png = await svgToPng(heat.toSVG(), 1, "wasm");
  assertEquals(pngSize(png), { w: 640, h: 400 });
});

Deno.test("plotly JSON: traces, band fill, log axis, heatmap colorscale", () => {
  const p = lineFig.toPlotly();
  assertEquals(p.data.length, 4, "band lo, band hi, line, scatter");
  assertEquals(p.data[1].fill, "tonexty");
  assertEquals((p.layout.yaxis as { type: string }).type, "log");
  assertEquals((p.layout.title as { text: string }).text, "Loss <&> curve");
  const h = heat.toPlotly();
  assertEquals(h.data[0].type, "heatmap");
  assert(Array.isArray(h.data[0].colorscale));
  const nan = new Figure({ series: [{ type: "line", y: new Float32Array([1, NaN]) }] }).toPlotly();
  assertEquals(nan.data[0].y, [1, null]);
  JSON.parse(JSON.stringify(p));
});

Deno.test("mime bundle: plotly, png, svg, html, text; Jupyter.display hook", async () => {
  const b = await lineFig[JUPYTER_DISPLAY]();
  for (const k of [PLOTLY, "image/png", "image/svg+xml", "text/html", "text/plain"]) {
    assert(k in b, `bundle has ${k}`);
  }
  const png = Uint8Array.from(atob(b["image/png"] as string), (c) => c.charCodeAt(0));
  pngSize(png);
  assert((b["text/html"] as string).includes("<svg"));
  assertEquals("image/png" in await lineFig.bundle({ png: false }), false);
});

Deno.test("saveFigure writes .svg, .png, an offline .html and plotly.min.js beside it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const paths = await saveFigure(
      lineFigure({ a: [1, 2, 3], b: { y: [3, 2, 1], band: [1, 1, 1] } }, { title: "t" }),
      `${dir}/sub/fig.png`,
    );
    assertStrictEquals(paths.svg, `${dir}/sub/fig.svg`);
    pngSize(await Deno.readFile(paths.png));
    assertWellFormed(await Deno.readTextFile(paths.svg));
    const html = await Deno.readTextFile(paths.html);
    assert(html.includes("<svg"), "the static SVG stays for viewers without scripts");
    const srcs = [...html.matchAll(/<script[^>]+src="([^"]+)"/g)].map((m) => m[1]);
    assertEquals(srcs, [PLOTLY_JS], "only the local plotly.js, no CDN");
    const bundle = await Deno.stat(`${dir}/sub/${PLOTLY_JS}`);
    const pkg = await Deno.stat(await plotlyJsPath());
    assertStrictEquals(bundle.size, pkg.size, "plotly.min.js copied from the npm package");
    assert(bundle.size > 1e6, `plotly.min.js is ${bundle.size} bytes`);
    const json = new RegExp(
      `<script type="application/json" class="${FIGURE_JSON_CLASS}">(.*?)` +
        "</script>",
    ).exec(html);
    assert(json);
    assertEquals(JSON.parse(json[1]).data.length, 4, "a, b band lo/hi, b");
    assertMatch(html, /Plotly\.newPlot/);
    assert(figureHtmlPage(heat).includes("heat"));
    // a second figure in the same folder reuses the bundle
    await saveFigure(heat, `${dir}/sub/heat`);
    assertStrictEquals(
      (await Deno.stat(`${dir}/sub/${PLOTLY_JS}`)).mtime?.getTime(),
      bundle.mtime?.getTime(),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("figure fragment: JSON block cannot close the script; withPlotlyScripts", () => {
  const fig = lineFigure({ "</script><b>x": [1, 2] }, { title: "a </script> title" });
  const html = fig.toHTML();
  assertEquals(html.match(/<\/script>/g)?.length, 1, "only the block's own closing tag");
  const page = withPlotlyScripts(`<html><body>${html}</body></html>`);
  assert(page.indexOf(`src="${PLOTLY_JS}"`) < page.indexOf("</body>"));
  assertEquals(
    withPlotlyScripts("<html><body>no figures</body></html>"),
    "<html><body>no figures</body></html>",
  );
});

Deno.test("spec validation names the series and the problem", () => {
  assertThrowsMatch(
    () => new Figure({ series: [{ type: "line", x: [1, 2], y: [1] }] }),
    /series\[0\].*x has 2/,
  );
  assertThrowsMatch(
    () => new Figure({ series: [{ type: "heatmap", z: [[1]] }, { type: "line", y: [1] }] }),
    /only series/,
  );
  assertThrowsMatch(() => heatmapFigure([1, 2, 3], { cols: 2 }), /opts.cols/);
  assertThrowsMatch(() => new Figure({ series: [], width: 10 }), /50…8000/);
});

Deno.test("ticks: nice linear steps and log decades", () => {
  assertEquals(niceTicks(0, 1, 5), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assertEquals(logTicks(1e-3, 10), [0.001, 0.01, 0.1, 1, 10]);
  assert(logTicks(0.5, 3).length >= 3);
});

Deno.test("outside Jupyter: display, liveOutput and LivePlot are no-ops", async () => {
  await display(lineFig);
  const live = liveOutput();
  assertEquals(live.id, null);
  live.update("x");
  await live.finish();
  const lp = new LivePlot();
  assertEquals(lp.active, false);
  lp.update(() => {
    throw new Error("must not render outside Jupyter");
  });
  await lp.finish();
});

Deno.test("progress: plain lines, tty bar with rate/ETA, silent, durations", async () => {
  const lines: string[] = [];
  const p = createProgress({
    total: 10,
    label: "eval",
    unit: "batch",
    mode: "plain",
    write: (t) => lines.push(t),
  });
  for (let i = 1; i <= 10; i++) p.update(i, { loss: 1 / i });
  await p.finish({ ppl: 12.5 });
  assertEquals(lines.length, 2, "first update, then the final line (throttled in between)");
  assertMatch(lines[0], /eval .* 10%\s+1\/10 .*batch\/s\s+ETA .* loss=1\n$/);
  assertMatch(lines[1], /100%\s+10\/10 .* ppl=12\.5\n$/);
  const tty: string[] = [];
  const q = createProgress({ label: "gen", unit: "tok", mode: "tty", write: (t) => tty.push(t) });
  q.update(5);
  await q.finish();
  assertMatch(tty[0], /^\rgen\s+5 tok/);
  assert(tty.at(-1)!.endsWith("\n"));
  const s = createProgress({ total: 3, silent: true });
  s.update(1);
  await s.finish();
  assertEquals(formatDuration(75), "1m15s");
  assertEquals(formatDuration(3725), "1h02m");
});
