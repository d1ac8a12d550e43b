/**
 * Forward-pass benchmark on WebGPU: prefill tokens/s and generation tokens/s (batched single-token
 * forwards per submit, and with a logits readback per token) for the tiny fixture model and a
 * random model of the official 0.1B shape.
 *
 *     deno task bench [--quick] [--shapes tiny,0.1B] [--json PATH]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { getGpu } from "../lib/gpu/device.ts";
import { createStorage, readF32, uploadStorage } from "../lib/gpu/buffers.ts";
import { Recorder } from "../lib/gpu/recorder.ts";
import { GpuModel } from "../lib/model/gpu_model.ts";
import { loadModel } from "../lib/model/load.ts";
import { OFFICIAL_SHAPES, randomWeights } from "../lib/model/random.ts";
import type { RwkvWeights } from "../lib/model/types.ts";

interface Row {
  shape: string;
  test: string;
  tokens: number;
  seconds: number;
  tokensPerSecond: number;
}

const TINY = new URL("../../shared/fixtures/models/tiny-rwkv7-834K.safetensors", import.meta.url)
  .pathname;

async function timeIt(reps: number, fn: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) await fn();
  return (performance.now() - t0) / 1000 / reps;
}

function seq(T: number, V: number): number[] {
  return Array.from({ length: T }, (_, i) => (i * 7919 + 13) % V);
}

async function prefill(model: GpuModel, T: number, reps: number): Promise<number> {
  const tokens = [seq(T, model.config.vocabSize)];
  const st = model.createState(1);
  await model.forward([tokens[0].slice(0, 1)], st); // warm-up (pipelines)
  model.workspace(T);
  const s = await timeIt(reps, async () => {
    st.reset();
    await model.forward(tokens, st);
  });
  st.destroy();
  return s;
}

/** `steps` single-token forwards recorded into one submit, logits read back once at the end. */
async function generateBatched(model: GpuModel, steps: number, reps: number): Promise<number> {
  const { gpu } = model, V = model.config.vocabSize;
  const tokens = uploadStorage(gpu, "bench.tokens", Uint32Array.from(seq(steps, V)));
  const out = createStorage(gpu, "bench.logits", steps * V * 4);
  const st = model.createState(1);
  const run = async () => {
    const rec = new Recorder(gpu, "bench.generate");
    for (let i = 0; i < steps; i++) {
      model.recordForward(rec, {
        B: 1,
        T: 1,
        tokens,
        tokOff: i,
        state: st,
        logits: "last",
        out,
        outOff: i * V,
      });
    }
    rec.submit();
    await readF32(gpu, out, V, (steps - 1) * V);
  };
  await run();
  const s = await timeIt(reps, run);
  tokens.destroy();
  out.destroy();
  st.destroy();
  return s / steps;
}

async function generateReadback(model: GpuModel, steps: number): Promise<number> {
  const sess = model.session();
  await sess.feed([1]);
  const toks = seq(steps, model.config.vocabSize);
  const s = await timeIt(1, async () => {
    for (const t of toks) await sess.feed([t]);
  });
  sess.destroy();
  return s / steps;
}

async function benchShape(
  shape: string,
  weights: RwkvWeights,
  prefillTs: number[],
  quick: boolean,
): Promise<Row[]> {
  const gpu = await getGpu();
  const model = await GpuModel.create(gpu, weights);
  const rows: Row[] = [];
  const add = (test: string, tokens: number, seconds: number) => {
    rows.push({ shape, test, tokens, seconds, tokensPerSecond: tokens / seconds });
    console.error(`  ${shape} ${test}: ${(tokens / seconds).toFixed(1)} tok/s`);
  };
  const reps = quick || model.config.vocabSize > 4096 ? 1 : 2;
  for (const T of prefillTs) add(`prefill T=${T}`, T, await prefill(model, T, reps));
  const big = model.config.vocabSize > 4096;
  const steps = big ? 4 : 16;
  add(`generate ×${steps}/submit`, 1, await generateBatched(model, steps, quick || big ? 1 : 2));
  add("generate + readback", 1, await generateReadback(model, quick || big ? 4 : 16));
  model.destroy();
  return rows;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      quick: { type: "boolean", default: false },
      shapes: { type: "string", default: "tiny,0.1B" },
      json: { type: "string" },
    },
  });
  const gpu = await getGpu();
  console.log(`adapter: ${gpu.description}${gpu.isFallback ? " (software)" : ""}`);
  const shapes = values.shapes!.split(",").map((s) => s.trim());
  const quick = values.quick!;
  const rows: Row[] = [];
  for (const shape of shapes) {
    if (shape === "tiny") {
      let weights: RwkvWeights;
      try {
        weights = (await loadModel(TINY)).weights;
      } catch {
        console.log(`skip tiny: fixture ${TINY} not found`);
        continue;
      }
      rows.push(...await benchShape("tiny", weights, quick ? [64] : [64, 512], quick));
    } else if (shape === "0.1B") {
      const weights = randomWeights(OFFICIAL_SHAPES["0.1B"], 1);
      rows.push(...await benchShape("0.1B", weights, [quick ? 16 : 64], quick));
    } else {
      throw new RangeError(`unknown shape "${shape}"; expected tiny or 0.1B`);
    }
  }
  console.log("| shape | test | tokens/s | s per call |");
  console.log("| ----- | ---- | -------: | ---------: |");
  for (const r of rows) {
    const line = [r.shape, r.test, r.tokensPerSecond.toFixed(1), r.seconds.toFixed(4)];
    console.log(`| ${line.join(" | ")} |`);
  }
  if (values.json) {
    const doc = { adapter: gpu.description, date: new Date().toISOString(), quick, rows };
    await Deno.writeTextFile(values.json, JSON.stringify(doc, null, 2) + "\n");
    console.log(`wrote ${values.json}`);
  }
}

if (import.meta.main) await main();
