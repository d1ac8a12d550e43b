/**
 * Reproduce the embedded default model `models/default.safetensors`: a small byte-level RWKV-7
 * pretrained from a seed on the synthetic multi-skill corpus of `lib/train/synthetic.ts`
 * (copy, reverse, sort, add, recall; each item preceded by its instruction line).
 *
 *     deno task pretrain-default [--steps 2500] [--seed 0] [--out models/default.safetensors]
 *
 * Writes the weights, `models/default.json` (config, recipe, loss, per-skill accuracy) and the
 * corpus it trained on under `results/default-corpus.jsonl` (the corpus is not committed).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { randomWeights, tinyConfig } from "../lib/model/random.ts";
import type { RwkvConfig } from "../lib/model/types.ts";
import { getGpu } from "../lib/gpu/device.ts";
import { GpuModel } from "../lib/model/gpu_model.ts";
import { pretrainGpu } from "../lib/train/pretrain_gpu.ts";
import { tensorsFromWeights } from "../lib/model/load.ts";
import { serializeSafetensors } from "../lib/model/safetensors.ts";
import { pretrain } from "../lib/train/pretrain.ts";
import { pretrainCorpus } from "../lib/train/synthetic.ts";
import { skillAccuracy } from "../lib/train/skills_eval.ts";
import { SKILLS } from "../lib/train/synthetic.ts";
import { parseWith, runMain } from "./_cli.ts";

const USAGE = `Usage: deno task pretrain-default [--steps N] [--batch B] [--seed S] [--layers L]
                                  [--width C] [--out PATH]

  --steps   optimiser steps (default 2500)
  --batch   sequences per step (default 16)
  --seed    seed of the weights and the corpus (default 0)
  --layers  L (default 2);  --width  C (default 64, head size 64)
  --engine  cpu (default: the float64 reference backward, what made the committed model) or
            gpu (the WebGPU backward with weight gradients; same losses, faster on a real GPU)
  --out     weights path (default models/default.safetensors)`;

const Args = z.object({
  steps: z.coerce.number().int().positive().default(2500),
  batch: z.coerce.number().int().positive().default(16),
  seed: z.coerce.number().int().default(0),
  layers: z.coerce.number().int().positive().default(2),
  width: z.coerce.number().int().positive().multipleOf(64).default(64),
  out: z.string().default("models/default.safetensors"),
  engine: z.enum(["cpu", "gpu"]).default("cpu"),
});

type PretrainArgs = z.output<typeof Args>;

/** The command line as typed options, or null for --help. */
function parseCli(): PretrainArgs | null {
  const { values } = parseArgs({
    options: {
      steps: { type: "string" },
      batch: { type: "string" },
      seed: { type: "string" },
      layers: { type: "string" },
      width: { type: "string" },
      out: { type: "string" },
      engine: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) return null;
  return parseWith(Args, values);
}

/** What the run did and how the model does, for the .json beside the weights. */
function manifestOf(
  a: PretrainArgs,
  config: RwkvConfig,
  history: { loss: number }[],
  accuracy: Record<string, number>,
  minutes: number,
) {
  const tail = history.slice(-50);
  return {
    weights: a.out,
    config,
    recipe: {
      script: "scripts/pretrain_default.ts",
      corpus: `pretrainCorpus(${a.steps * a.batch}, seed ${a.seed}) from lib/train/synthetic.ts`,
      engine: a.engine === "cpu"
        ? "cpu reference backward (lib/ref, float64, weight gradients on)"
        : "WebGPU backward with weight gradients (lib/train/pretrain_gpu.ts)",
      optimizer: "Adam β 0.9/0.99, lr 3e-3 → 1e-4 cosine, 50 warmup steps, clip 1",
      steps: a.steps,
      batch: a.batch,
      seed: a.seed,
    },
    finalLoss: tail.reduce((s, h) => s + h.loss, 0) / tail.length,
    instructedAccuracy: accuracy,
    minutes: Number(minutes.toFixed(1)),
  };
}

await runMain(USAGE, async () => {
  const a = parseCli();
  if (a === null) return console.log(USAGE);
  const config = tinyConfig({
    nLayer: a.layers,
    nEmbd: a.width,
    headSize: 64,
    vocabSize: 256,
    dimW: 16,
    dimA: 16,
    dimV: 16,
    dimG: 32,
  });
  const corpus = pretrainCorpus(a.steps * a.batch, a.seed);
  await Deno.mkdir("results", { recursive: true });
  await Deno.writeTextFile("results/default-corpus.jsonl", corpus);
  const enc = new TextEncoder();
  const items = corpus.trim().split("\n").map((l) => [...enc.encode(JSON.parse(l).text)]);
  const t0 = performance.now();
  const source = (step: number, B: number) => items.slice(step * B, (step + 1) * B);
  const opts = { steps: a.steps, batch: a.batch, seed: a.seed };
  const { weights, history } = a.engine === "cpu"
    ? pretrain(config, source, opts)
    : await pretrainGpu(
      await GpuModel.create(await getGpu(), randomWeights(config, a.seed), { textures: false }),
      source,
      opts,
    );
  const minutes = (performance.now() - t0) / 60000;
  const accuracy: Record<string, number> = {};
  for (const s of SKILLS) accuracy[s] = skillAccuracy(weights, s, 50, 12345, true);
  await Deno.mkdir(a.out.replace(/\/[^/]*$/, "") || ".", { recursive: true });
  await Deno.writeFile(
    a.out,
    serializeSafetensors(tensorsFromWeights(weights), "f32", {
      recipe: "scripts/pretrain_default.ts",
    }),
  );
  const manifest = manifestOf(a, config, history, accuracy, minutes);
  await Deno.writeTextFile(
    a.out.replace(/\.safetensors$/, ".json"),
    JSON.stringify(manifest, null, 2) + "\n",
  );
  console.log(JSON.stringify(manifest, null, 2));
});
