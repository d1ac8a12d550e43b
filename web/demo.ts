/**
 * The demo of `deno task demo`, runnable in a browser tab: fetch the shaders and the model
 * beside the page, score the skill without its instruction line, state-tune, score again, and
 * serialise the tuned state in the PEFT (.pth) and web-rwkv (safetensors) formats. No DOM and
 * no `Deno.*`: the page (web/main.ts) shows the events; Deno runs it too, with file: URLs.
 *
 * @module
 */
import { requestGpu } from "../lib/gpu/device.ts";
import type { Gpu } from "../lib/gpu/device.ts";
import { provideShaderSources } from "../lib/gpu/pipeline.ts";
import { loadModelFromBytes } from "../lib/model/load.ts";
import { GpuModel } from "../lib/model/gpu_model.ts";
import { zeroState } from "../lib/model/types.ts";
import { ByteTokenizer } from "../lib/tokenizer/bytes.ts";
import { buildDataset } from "../lib/train/data.ts";
import { skillRows } from "../lib/train/synthetic.ts";
import { skillAccuracyGpu } from "../lib/train/skills_eval.ts";
import { type HistoryRow, lossFigure, tuneState } from "../lib/train/tune.ts";
import { serializeState } from "../lib/train/state_file.ts";
import type { PlotlyFigure } from "../lib/plot/plotly.ts";
import type { DemoParams } from "./params.ts";

/** What the demo reports as it runs. */
export interface DemoEvents {
  /** a line of the log */
  log(line: string): void;
  /** after each optimiser step: the history so far and the loss figure */
  step(done: number, total: number, history: HistoryRow[], fig: PlotlyFigure): void;
  /** accuracy measured: which one and its value */
  accuracy(which: "instructed" | "before" | "after", value: number): void;
}

/** The demo's outcome. */
export interface DemoResult {
  skill: string;
  testItems: number;
  accuracyWithInstruction: number;
  accuracyBefore: number;
  accuracyAfter: number;
  lossFirst: number;
  lossLast: number;
  steps: number;
  seconds: number;
  adapter: string;
  /** the tuned state, RWKV-PEFT `.pth` (f32) */
  peft: Uint8Array;
  /** the tuned state, web-rwkv safetensors (f16, key×value) */
  webRwkv: Uint8Array;
  /** a few held-out items after tuning */
  samples: { prompt: string; expected: string; got: string }[];
}

/**
 * Fetch `shaders/index.json` (the list of stems written by `deno task web`) and every
 * `shaders/<stem>.wgsl` relative to `base`, and hand them to the pipeline cache.
 *
 * @returns the number of shaders provided
 * @throws Error naming the URL that failed
 */
export async function fetchShaders(base: URL | string): Promise<number> {
  const list = JSON.parse(await fetchText(new URL("shaders/index.json", base))) as unknown;
  if (!Array.isArray(list) || !list.every((s) => typeof s === "string")) {
    throw new Error(`shaders/index.json must be a JSON array of shader names, got ${list}`);
  }
  const texts = await Promise.all(
    list.map((s) => fetchText(new URL(`shaders/${s}.wgsl`, base))),
  );
  provideShaderSources(Object.fromEntries(list.map((s, i) => [s, texts[i]])));
  return list.length;
}

async function fetchOk(url: URL): Promise<Response> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`fetch ${url.href} failed: HTTP ${r.status} ${r.statusText}`);
  return r;
}

async function fetchText(url: URL): Promise<string> {
  return await (await fetchOk(url)).text();
}

/** Fetch the shaders and the byte-level model named by `p`, and put the model on `gpu`. */
async function loadDemoModel(
  p: DemoParams,
  base: URL | string,
  ev: DemoEvents,
  gpu?: Gpu,
): Promise<{ model: GpuModel; gpu: Gpu }> {
  const n = await fetchShaders(base);
  const modelUrl = new URL(p.model, base);
  const bytes = new Uint8Array(await (await fetchOk(modelUrl)).arrayBuffer());
  const loaded = await loadModelFromBytes(bytes, modelUrl.pathname.split("/").pop() ?? p.model);
  const cfg = loaded.weights.config;
  if (cfg.vocabSize !== 256) {
    throw new Error(`the demo needs a byte-level model (V = 256), got V = ${cfg.vocabSize}`);
  }
  gpu ??= await requestGpu();
  ev.log(
    `${n} shaders; model ${p.model} (${(bytes.length / 1024).toFixed(0)} KiB): L${cfg.nLayer} ` +
      `C${cfg.nEmbd} H${cfg.nHead}; adapter ${gpu.description || "(unnamed)"}, ` +
      `${gpu.limits.maxStorageBuffersPerShaderStage} storage buffers per stage`,
  );
  return { model: await GpuModel.create(gpu, loaded.weights), gpu };
}

/** State-tune `model` on `p.trainItems` uninstructed items, reporting each step's loss curve. */
function tuneDemoState(model: GpuModel, p: DemoParams, ev: DemoEvents) {
  const rows = skillRows(p.skill, p.trainItems, p.seed, false);
  const ds = buildDataset(rows.map((r) => JSON.stringify(r)).join("\n"), new ByteTokenizer(), {
    valSplit: 0.1,
    seed: p.seed,
  });
  ev.log(
    `state tuning: ${ds.train.length} training items, ${p.steps} steps of ${p.batch}, ` +
      `lr ${p.lrInit} → ${p.lrFinal}`,
  );
  const history: HistoryRow[] = [];
  const title = `state tuning: ${p.skill} without instruction`;
  return tuneState(model, ds, {
    steps: p.steps,
    batch: p.batch,
    lrInit: p.lrInit,
    lrFinal: p.lrFinal,
    seed: p.seed,
    valEvery: Math.max(1, Math.floor(p.steps / 4)),
    progress: false,
    livePlot: false,
    onStep: (row) => {
      history.push(row);
      ev.step(history.length, p.steps, history, lossFigure(history, title).toPlotly());
    },
  });
}

/**
 * Run the demo.
 *
 * @param p parameters (from the URL)
 * @param base the page URL: shaders and the model are fetched relative to it
 * @param ev progress callbacks
 * @param gpu a device; default: `requestGpu()` (navigator.gpu)
 */
export async function runDemo(
  p: DemoParams,
  base: URL | string,
  ev: DemoEvents,
  gpu?: Gpu,
): Promise<DemoResult> {
  const t0 = performance.now();
  const secs = () => ((performance.now() - t0) / 1000).toFixed(1);
  const { model, gpu: g } = await loadDemoModel(p, base, ev, gpu);
  const cfg = model.config;
  try {
    ev.log(`model on the GPU after ${secs()} s`);
    const testSeed = 1_000_000 + p.seed;
    const ceiling = await skillAccuracyGpu(model, p.skill, p.testItems, testSeed, true);
    ev.accuracy("instructed", ceiling.accuracy);
    const before = await skillAccuracyGpu(model, p.skill, p.testItems, testSeed, false);
    ev.accuracy("before", before.accuracy);
    ev.log(`scored ${p.testItems} held-out items with and without the instruction (${secs()} s)`);
    const res = await tuneDemoState(model, p, ev);
    ev.log(`tuned after ${secs()} s`);
    const tuned = zeroState(cfg);
    res.states.forEach((w, l) => tuned[l].wkv.set(w));
    const after = await skillAccuracyGpu(model, p.skill, p.testItems, testSeed, false, tuned);
    ev.accuracy("after", after.accuracy);
    const first = res.history[0], last = res.history[res.history.length - 1];
    return {
      skill: p.skill,
      testItems: p.testItems,
      accuracyWithInstruction: ceiling.accuracy,
      accuracyBefore: before.accuracy,
      accuracyAfter: after.accuracy,
      lossFirst: first.loss,
      lossLast: last.loss,
      steps: res.steps,
      seconds: Number(secs()),
      adapter: g.description,
      peft: serializeState(res.states, cfg, "peft", "f32"),
      webRwkv: serializeState(res.states, cfg, "web-rwkv"),
      samples: after.samples,
    };
  } finally {
    model.destroy();
  }
}
