/**
 * State-tune a model on a jsonl dataset and write the tuned state for RWKV-PEFT / RWKV-Runner
 * (`--format peft`, a `.pth`) or web-rwkv / Ai00 (`--format web-rwkv`, safetensors).
 *
 *     deno task tune --model M --data D [--tokenizer …] --out DIR [--lr-init --lr-final --steps
 *                    --epochs --ctx --batch --val-split --save-every --resume --format peft|web-rwkv]
 *
 * Ctrl-C stops after the current step and saves a checkpoint; `--resume` continues it.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { getGpu } from "../lib/gpu/device.ts";
import { GpuModel } from "../lib/model/gpu_model.ts";
import { loadDataset } from "../lib/train/data.ts";
import { lossFigure, tuneState } from "../lib/train/tune.ts";
import { saveState } from "../lib/train/state_file.ts";
import { saveFigure } from "../lib/plot/figure.ts";
import { loadBundle, parseWith, runMain } from "./_cli.ts";

const USAGE = `Usage: deno task tune --model M --data D --out DIR [options]

  --model         RWKV-7 checkpoint (.pth / .safetensors)
  --data          jsonl: {"text"}, {"prompt","response"}, {"instruction","input","output"} or
                  {"messages":[{"role","content"}]} rows (loss only on the answer tokens)
  --tokenizer     vocabulary file or "bytes" (default: bytes when V = 256, else a vocab beside M)
  --out           output folder: state file, history.json/.csv, loss plot, checkpoint/
  --format        peft (default: .pth, value×key, bf16) or web-rwkv (safetensors f16, key×value)
  --state-dtype   bf16 (default) or f32 for --format peft
  --lr-init       default 1        --lr-final   default 0.01 (cosine)   --warmup  default 0
  --steps         optimiser steps (default: --epochs passes over the data)
  --epochs        default 1
  --batch         sequences per micro-batch (default 4)   --grad-accum  default 1
  --ctx           longest sequence in tokens (default 512); --overflow truncate|split|drop
  --clip          global gradient-norm clip (default 1; 0 = off)   --l2wrap
  --val-split     fraction (< 1) or count of held-out examples (default 0)
  --val-every     validation every N steps (default: only at the end)
  --save-every    checkpoint every N steps (default 0: only at the end)
  --resume        continue from DIR/checkpoint
  --fail-on-bad-rows   stop at the first malformed row (default: skip them and report a count)
  --seed          shuffle/batch seed (default 0)`;

const num = z.coerce.number();
const Args = z.object({
  model: z.string({ error: "--model is required" }),
  data: z.string({ error: "--data is required (a jsonl file)" }),
  tokenizer: z.string().optional(),
  out: z.string({ error: "--out is required (an output folder)" }),
  format: z.enum(["peft", "web-rwkv"]).default("peft"),
  "state-dtype": z.enum(["bf16", "f32"]).default("bf16"),
  "lr-init": num.positive().default(1),
  "lr-final": num.positive().default(0.01),
  warmup: num.int().min(0).default(0),
  steps: num.int().positive().optional(),
  epochs: num.positive().default(1),
  batch: num.int().positive().default(4),
  "grad-accum": num.int().positive().default(1),
  ctx: num.int().min(2).default(512),
  overflow: z.enum(["truncate", "split", "drop"]).default("truncate"),
  clip: num.min(0).default(1),
  l2wrap: z.boolean().default(false),
  "val-split": num.min(0).default(0),
  "val-every": num.int().min(0).default(0),
  "save-every": num.int().min(0).default(0),
  resume: z.boolean().default(false),
  "fail-on-bad-rows": z.boolean().default(false),
  seed: num.int().default(0),
});

await runMain(USAGE, async () => {
  const s = { type: "string" } as const, f = { type: "boolean" } as const;
  const { values } = parseArgs({
    options: {
      model: { ...s, short: "m" },
      data: s,
      tokenizer: s,
      out: s,
      format: s,
      "state-dtype": s,
      "lr-init": s,
      "lr-final": s,
      warmup: s,
      steps: s,
      epochs: s,
      batch: s,
      "grad-accum": s,
      ctx: s,
      overflow: s,
      clip: s,
      l2wrap: f,
      "val-split": s,
      "val-every": s,
      "save-every": s,
      resume: f,
      "fail-on-bad-rows": f,
      seed: s,
      help: { ...f, short: "h" },
    },
  });
  if (values.help) return console.log(USAGE);
  const a = parseWith(Args, values);
  const b = await loadBundle(a.model, a.tokenizer);
  const cfg = b.model.weights.config;
  const ds = await loadDataset(a.data, b.tokenizer, {
    ctx: a.ctx,
    overflow: a.overflow,
    valSplit: a["val-split"],
    seed: a.seed,
    onBadRow: a["fail-on-bad-rows"] ? "fail" : "skip",
  });
  console.error(
    `data ${a.data}: ${ds.train.length} training, ${ds.val.length} validation examples` +
      (ds.bad.length
        ? `; skipped ${ds.bad.length} malformed rows (first: line ${ds.bad[0].line}: ${
          ds.bad[0].reason
        })`
        : "") +
      (ds.dropped ? `; dropped ${ds.dropped} (too long or no answer tokens)` : ""),
  );
  const gpu = await getGpu();
  console.error(`adapter: ${gpu.description}`);
  const model = await GpuModel.create(gpu, b.model.weights);
  const abort = new AbortController();
  const onInt = () => {
    console.error("\ninterrupt: stopping after this step and saving a checkpoint (--resume)");
    abort.abort();
  };
  Deno.addSignalListener("SIGINT", onInt);
  const res = await tuneState(model, ds, {
    lrInit: a["lr-init"],
    lrFinal: a["lr-final"],
    warmupSteps: a.warmup,
    steps: a.steps,
    epochs: a.epochs,
    batch: a.batch,
    gradAccum: a["grad-accum"],
    clip: a.clip,
    l2wrap: a.l2wrap,
    seed: a.seed,
    valEvery: a["val-every"],
    outDir: `${a.out}/checkpoint`,
    saveEvery: a["save-every"],
    resume: a.resume,
    signal: abort.signal,
  });
  Deno.removeSignalListener("SIGINT", onInt);
  await Deno.mkdir(a.out, { recursive: true });
  const statePath = `${a.out}/state.${a.format === "peft" ? "pth" : "safetensors"}`;
  await saveState(statePath, res.states, cfg, a.format, a["state-dtype"]);
  await Deno.writeTextFile(`${a.out}/history.json`, JSON.stringify(res.history, null, 1) + "\n");
  const cols = [
    "step",
    "loss",
    "valLoss",
    "lr",
    "gradNorm",
    "tokensPerSecond",
    "elapsedMs",
  ] as const;
  await Deno.writeTextFile(
    `${a.out}/history.csv`,
    [cols.join(","), ...res.history.map((h) => cols.map((c) => h[c] ?? "").join(","))].join("\n") +
      "\n",
  );
  const plot = await saveFigure(lossFigure(res.history), `${a.out}/loss`);
  const last = res.history.at(-1);
  console.log(JSON.stringify({
    state: statePath,
    format: a.format,
    steps: res.steps,
    stopReason: res.stopReason,
    loss: last?.loss,
    valLoss: last?.valLoss,
    plot,
  }));
});
