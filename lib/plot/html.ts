/**
 * Interactive HTML without a network: figures are written as their static SVG plus the plotly
 * JSON, and a small script (`HYDRATE_JS`) replaces each static image by a live plotly.js chart
 * (pan, zoom, hover) once `plotly.min.js` — npm `plotly.js-dist-min`, pinned in package.json,
 * written once beside the pages — has loaded. Viewers without scripts keep the SVG.
 *
 * @module
 */

/** File name of the plotly.js bundle written beside the pages. */
export const PLOTLY_JS = "plotly.min.js";

/** Class of a figure's wrapper; its children are `.rwkv-static` and the JSON block. */
export const FIGURE_CLASS = "rwkv-figure";

/** Class of the `<script type="application/json">` block that holds a figure's plotly JSON. */
export const FIGURE_JSON_CLASS = "rwkv-plotly-json";

/**
 * JSON text safe inside `<script>`: `<` is escaped as `\u003c` so "</script>" in a string
 * cannot close the block.
 */
export function scriptJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, "\\u003c");
}

/**
 * The figure fragment: static SVG in `.rwkv-static`, plotly JSON in a data block. The same
 * fragment is a notebook output's `text/html`, so report pages become interactive.
 *
 * @param svg the static SVG document
 * @param plotly the plotly `{ data, layout }`
 */
export function figureFragment(svg: string, plotly: unknown): string {
  return `<div class="${FIGURE_CLASS}" style="max-width:100%;overflow-x:auto">` +
    `<div class="rwkv-static">` +
    svg.replace("<svg ", `<svg style="max-width:100%;height:auto" `) +
    `</div><script type="application/json" class="${FIGURE_JSON_CLASS}">${
      scriptJson(plotly)
    }</script></div>`;
}

/**
 * Browser script: for every `.rwkv-figure` with a JSON block, draw it with `Plotly.newPlot`
 * and hide the static SVG once drawn. Runs at DOMContentLoaded; does nothing without Plotly.
 */
export const HYDRATE_JS = `(function () {
  function hydrate() {
    if (!window.Plotly) return;
    document.querySelectorAll(".${FIGURE_CLASS}").forEach(function (el) {
      if (el.getAttribute("data-rendered")) return;
      var block = el.querySelector("script.${FIGURE_JSON_CLASS}");
      if (!block) return;
      var fig = JSON.parse(block.textContent);
      var div = document.createElement("div");
      div.className = "rwkv-plotly";
      el.appendChild(div);
      el.setAttribute("data-rendered", "pending");
      Plotly.newPlot(div, fig.data, fig.layout, { displaylogo: false }).then(function () {
        var still = el.querySelector(".rwkv-static");
        if (still) still.style.display = "none";
        el.setAttribute("data-rendered", "plotly");
      });
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", hydrate);
  else hydrate();
})();`;

/**
 * The `<script>` tags a page needs: plotly.js from `src` (relative to the page) and the
 * hydration script.
 *
 * @param src where the page finds the bundle (default `plotly.min.js` beside it)
 */
export function plotlyScripts(src: string = PLOTLY_JS): string {
  return `<script src="${src.replace(/"/g, "&quot;")}" charset="utf-8"></script>\n` +
    `<script>${HYDRATE_JS}</script>`;
}

/** Insert {@link plotlyScripts} before `</body>` (or at the end) of an HTML page. */
export function withPlotlyScripts(html: string, src: string = PLOTLY_JS): string {
  if (html.includes(`class="${FIGURE_JSON_CLASS}"`) === false) return html;
  const tags = plotlyScripts(src);
  const at = html.lastIndexOf("</body>");
  return at < 0 ? `${html}\n${tags}\n` : `${html.slice(0, at)}${tags}\n${html.slice(at)}`;
}

/** Path of plotly.min.js in the installed npm package `plotly.js-dist-min`. */
export async function plotlyJsPath(): Promise<string> {
  const { createRequire } = await import("node:module");
  const require = createRequire(import.meta.url);
  try {
    return require.resolve("plotly.js-dist-min/plotly.min.js");
  } catch (e) {
    throw new Error(
      `cannot find plotly.js-dist-min (${(e as Error).message.split("\n")[0]}); install the ` +
        "npm dependencies with `npm ci` in the project root",
    );
  }
}

/**
 * Write `plotly.min.js` into `dir` unless a file of the same size is already there.
 *
 * @returns the path written or found
 */
export async function writePlotlyJs(dir: string): Promise<string> {
  const src = await plotlyJsPath();
  const dest = `${dir.replace(/\/$/, "") || "."}/${PLOTLY_JS}`;
  const size = (await Deno.stat(src)).size;
  const have = await Deno.stat(dest).then((s) => s.size, () => -1);
  if (have !== size) await Deno.copyFile(src, dest);
  return dest;
}
