/**
 * State-tune a model on a jsonl dataset and write the tuned state for RWKV-PEFT / RWKV-Runner
 * (`--format peft`, a `.pth`) or web-rwkv / Ai00 (`--format web-rwkv`, safetensors).
 *
 *     deno task tune --model M --data D [--tokenizer …] --out DIR [--lr-init --lr-final --steps
 *                    --epochs --ctx --batch --val-split --save-every --resume --format peft|web-rwkv
 *                    --lifted … --dbp …]
 *
 * Ctrl-C (SIGINT) or SIGTERM stops after the current step and saves a checkpoint (exit 130 /
 * 143); `--resume` continues it. A checkpoint is also written every `--save-every` steps
 * (default 50), so even kill -9 loses at most that many. Parts beyond S0 (`--lifted`, `--lora`) are
 * built in `_tune_parts.ts`: adding a part flag is one entry in its `PART_FLAGS` plus the
 * `parseArgs` option and `Args` field here.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { getGpu } from "../lib/gpu/device.ts";
import { GpuModel } from "../lib/model/gpu_model.ts";
import { loadDataset } from "../lib/train/data.ts";
import type { Dataset } from "../lib/train/data.ts";
import type { Tokenizer } from "../lib/tokenizer/mod.ts";
import { type HistoryRow, lossFigure, tune } from "../lib/train/tune.ts";
import { StatePart } from "../lib/train/state_part.ts";
import { hasCheckpoint, loadCheckpoint, prepareOutDir } from "../lib/train/checkpoint.ts";
import { saveFigure } from "../lib/plot/figure.ts";
import { type BuiltPart, PART_FLAGS } from "./_tune_parts.ts";
import { loadBundle, parseWith, runMain, UsageError } from "./_cli.ts";

const USAGE = `Usage: deno task tune --model M --data D --out DIR [options]

  --model         RWKV-7 checkpoint (.pth / .safetensors)
  --data          jsonl: {"text"}, {"prompt","response"}, {"instruction","input","output"} or
                  {"messages":[{"role","content"}]} rows (loss only on the answer tokens)
  --tokenizer     vocabulary file or "bytes" (default: bytes when V = 256, else a vocab beside M)
  --out           output folder: state file, history.json/.csv, loss plot, checkpoint/ (checked
                  before anything runs; one holding an earlier run's checkpoint needs --resume)
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
  --save-every    checkpoint every N steps (default 50; 0 = only on a signal and at the end)
  --resume        continue from DIR/checkpoint (refused when there is none, or when --steps,
                  --epochs, --lr-*, --warmup, --batch, --grad-accum or --seed differ)
  --lifted        also train a kernel-upscaled state (docs/MATH.md §5), written to DIR/lifted.safetensors:
                  FILE (a lifted.safetensors to start from), "on" (the defaults), or key=value
                  pairs: featureRatio=4, layers=all|1|0+1, featureMap=gaussian|identity,
                  headMeans=true, support=kmeans|random, rInit=identity|nystrom,
                  calibrationSequences=8, read=normalised|raw, writes=false (true: the writes
                  mode with a trained per-head gate), seed=0, lrScale=1 (Ŝ0's learning rate
                  relative to S0's); with FILE: file=FILE,lrScale=…
  --lora          also train LoRA adapters (docs/MATH.md §7), written to DIR/lora.safetensors: FILE (an
                  adapter to start from; .pth needs alpha=… too: file=F,alpha=A) or key=value
                  pairs: r=8,alpha=16,targets=att.receptance+att.key+att.value+att.output+
                  ffn.key+ffn.value,layers=all|0+1,seed=0,lrScale=1e-2
  --dbp           decorrelated backpropagation of the lifted R (needs --lifted): "on" or
                  lr=1e-3,kappa=0.5,sample=0,seed=0,enabled=true (enabled=false: R fixed, the
                  decorrelation loss recorded)
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
  "save-every": num.int().min(0).default(50),
  lifted: z.string().optional(),
  lora: z.string().optional(),
  dbp: z.string().optional(),
  resume: z.boolean().default(false),
  "fail-on-bad-rows": z.boolean().default(false),
  seed: num.int().default(0),
});

/** history.json and history.csv (the base columns, then any a part added). */
async function writeHistory(out: string, history: HistoryRow[]): Promise<void> {
  await Deno.writeTextFile(`${out}/history.json`, JSON.stringify(history, null, 1) + "\n");
  const base = ["step", "loss", "valLoss", "lr", "gradNorm", "tokensPerSecond", "elapsedMs"];
  const cols = [...new Set([...base, ...history.flatMap((h) => Object.keys(h))])];
  await Deno.writeTextFile(
    `${out}/history.csv`,
    [cols.join(","), ...history.map((h) => cols.map((c) => h[c] ?? "").join(","))].join("\n") +
      "\n",
  );
}

/** The command line as typed options, or null for --help. */
function parseCli(): z.output<typeof Args> | null {
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
      lifted: s,
      lora: s,
      dbp: s,
      "fail-on-bad-rows": f,
      seed: s,
      help: { ...f, short: "h" },
    },
  });
  if (values.help) return null;
  return parseWith(Args, values);
}

/**
 * Check --out before anything is loaded: with --resume the checkpoint must load; without it,
 * --out must not hold an earlier run's checkpoint (nothing is overwritten).
 */
async function checkOut(a: z.output<typeof Args>, ckDir: string): Promise<void> {
  if (a.resume) {
    await loadCheckpoint(ckDir); // refuse early, naming the path
    return;
  }
  await prepareOutDir(a.out, "--out");
  if (await hasCheckpoint(ckDir)) {
    throw new Error(
      `--out ${a.out} holds the checkpoint of an earlier run (${ckDir}/checkpoint.json): ` +
        `pass --resume to continue it, or pick another --out (nothing was overwritten)`,
    );
  }
  await prepareOutDir(ckDir, "--out");
}

/** The dataset of --data, with a line on stderr saying what was kept, skipped and dropped. */
async function loadData(a: z.output<typeof Args>, tokenizer: Tokenizer): Promise<Dataset> {
  const ds = await loadDataset(a.data, tokenizer, {
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
  return ds;
}

/**
 * SIGINT and SIGTERM abort the run after the current step (a checkpoint is saved in `ckDir`):
 * the signal, which signal came (if one did), and `remove()` for the listeners.
 */
function stopOnSignal(ckDir: string) {
  const abort = new AbortController();
  let caught: "SIGINT" | "SIGTERM" | undefined;
  const listeners = (["SIGINT", "SIGTERM"] as const).map((sig) => {
    const fn = () => {
      if (caught) return;
      caught = sig;
      console.error(
        `\n${sig}: stopping after this step and saving a checkpoint in ${ckDir} ` +
          `(continue with --resume)`,
      );
      abort.abort();
    };
    Deno.addSignalListener(sig, fn);
    return [sig, fn] as const;
  });
  return {
    signal: abort.signal,
    caught: () => caught,
    remove: () => {
      for (const [sig, fn] of listeners) Deno.removeSignalListener(sig, fn);
    },
  };
}

await runMain(USAGE, async () => {
  const a = parseCli();
  if (a === null) return console.log(USAGE);
  const ckDir = `${a.out}/checkpoint`;
  if (a.dbp !== undefined && a.lifted === undefined) {
    throw new UsageError("--dbp moves the lifted state's R: it needs --lifted");
  }
  const specs = PART_FLAGS.flatMap((pf) => {
    const v = a[pf.flag];
    return v === undefined ? [] : [{ pf, spec: pf.parse(v, a) }];
  });
  await checkOut(a, ckDir);
  const b = await loadBundle(a.model, a.tokenizer);
  const ds = await loadData(a, b.tokenizer);
  const gpu = await getGpu();
  console.error(`adapter: ${gpu.description}`);
  const model = await GpuModel.create(gpu, b.model.weights);
  const state = await StatePart.create(model);
  const extra: BuiltPart[] = [];
  for (const { pf, spec } of specs) {
    extra.push(await pf.build(spec, { model, weights: b.model.weights, ds }));
  }
  const stop = stopOnSignal(ckDir);
  const res = await tune(model, ds, {
    parts: [state, ...extra.map((x) => x.part)],
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
    outDir: ckDir,
    saveEvery: a["save-every"],
    resume: a.resume,
    signal: stop.signal,
  });
  const statePath = `${a.out}/state.${a.format === "peft" ? "pth" : "safetensors"}`;
  await state.save(statePath, a.format, a["state-dtype"]);
  const files: Record<string, string> = {};
  for (const x of extra) files[x.part.kind] = await x.save(a.out);
  await writeHistory(a.out, res.history);
  const plot = await saveFigure(lossFigure(res.history), `${a.out}/loss`);
  const last = res.history.at(-1);
  console.log(JSON.stringify({
    state: statePath,
    ...files,
    format: a.format,
    steps: res.steps,
    stopReason: res.stopReason,
    loss: last?.loss,
    valLoss: last?.valLoss,
    plot,
  }));
  stop.remove();
  const caught = stop.caught();
  if (caught) Deno.exit(caught === "SIGINT" ? 130 : 143);
});
