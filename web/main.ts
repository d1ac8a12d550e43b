/// <reference lib="dom" />
/// <reference lib="deno.webgpu" />
/**
 * The browser page of the demo (`deno task web`): reads the parameters from the URL, runs
 * {@link runDemo} on the tab's WebGPU, draws the live loss curve with plotly.js (loaded by
 * index.html from plotly.min.js beside it), a progress bar, the accuracies, and offers the
 * tuned state as downloads. `document.body.dataset.state` is "running", "done" or "error";
 * `window.demoResult` holds the summary (for the browser test).
 *
 * @module
 */
import { parseDemoParams } from "./params.ts";
import type { DemoParams } from "./params.ts";
import { type DemoResult, runDemo } from "./demo.ts";
import type { PlotlyFigure } from "../lib/plot/plotly.ts";

declare const Plotly: {
  react(div: HTMLElement, data: unknown[], layout: unknown, config?: unknown): Promise<unknown>;
};

const $ = (id: string) => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`index.html lacks the element #${id}`);
  return el;
};

function log(line: string) {
  const el = $("log");
  el.textContent += `${line}\n`;
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

function download(id: string, bytes: Uint8Array, name: string) {
  const a = $(id) as HTMLAnchorElement;
  a.href = URL.createObjectURL(new Blob([bytes as BlobPart], { type: "application/octet-stream" }));
  a.download = name;
  a.hidden = false;
}

let lastDraw = 0;
function draw(fig: PlotlyFigure, force: boolean) {
  const now = performance.now();
  if (!force && now - lastDraw < 200) return;
  lastDraw = now;
  void Plotly.react($("plot"), fig.data, { ...fig.layout, width: undefined, autosize: true }, {
    responsive: true,
    displaylogo: false,
  });
}

async function run(p: DemoParams) {
  document.body.dataset.state = "running";
  ($("run") as HTMLButtonElement).disabled = true;
  const bar = $("progress") as HTMLProgressElement;
  bar.max = p.steps;
  const t0 = performance.now();
  try {
    const res: DemoResult = await runDemo(p, location.href, {
      log,
      step(done, total, history, fig) {
        bar.value = done;
        const last = history[history.length - 1];
        $("progress-text").textContent = `step ${done}/${total} · loss ${last.loss.toFixed(3)} · ${
          ((performance.now() - t0) / 1000).toFixed(0)
        } s`;
        draw(fig, done === total);
      },
      accuracy(which, value) {
        $(`acc-${which}`).textContent = pct(value);
      },
    });
    download("dl-peft", res.peft, `state-${p.skill}.pth`);
    download("dl-webrwkv", res.webRwkv, `state-${p.skill}.safetensors`);
    for (const s of res.samples.slice(0, 3)) {
      log(`  ${JSON.stringify(s.prompt)} → ${JSON.stringify(s.got)} (expected ${s.expected})`);
    }
    log(`done in ${res.seconds} s`);
    const { peft: _p, webRwkv: _w, ...summary } = res;
    (globalThis as unknown as { demoResult: unknown }).demoResult = summary;
    document.body.dataset.state = "done";
  } catch (e) {
    const msg = (e as Error).message ?? String(e);
    $("error").textContent = msg;
    (globalThis as unknown as { demoError: string }).demoError = msg;
    document.body.dataset.state = "error";
    console.error(`demo failed: ${msg}`);
  } finally {
    ($("run") as HTMLButtonElement).disabled = false;
  }
}

function main() {
  let p: DemoParams;
  try {
    p = parseDemoParams(location.search);
  } catch (e) {
    $("error").textContent = (e as Error).message;
    document.body.dataset.state = "error";
    return;
  }
  $("params").textContent =
    `skill ${p.skill} · ${p.steps} steps of ${p.batch} · lr ${p.lrInit} → ` +
    `${p.lrFinal} · ${p.trainItems} training / ${p.testItems} held-out items · seed ${p.seed}`;
  if (!("gpu" in navigator)) {
    $("error").textContent = "This browser has no WebGPU (navigator.gpu is undefined). Use a " +
      "recent Chrome/Edge, or Chromium with --enable-unsafe-webgpu, over http://127.0.0.1 or https.";
    document.body.dataset.state = "error";
    return;
  }
  $("run").addEventListener("click", () => void run(p));
  document.body.dataset.state = "ready";
  if (p.autorun) void run(p);
}

main();
