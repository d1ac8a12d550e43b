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
 * (default 50), so even kill -9 loses at most that many. Parts beyond S0 (`--lifted`) are built
 * in {@link PART_FLAGS}: adding a part flag is one entry there plus its `parseArgs` option.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { getGpu } from "../lib/gpu/device.ts";
import { GpuModel } from "../lib/model/gpu_model.ts";
import { loadDataset } from "../lib/train/data.ts";
import type { Dataset } from "../lib/train/data.ts";
import { type HistoryRow, lossFigure, tune } from "../lib/train/tune.ts";
import { StatePart } from "../lib/train/state_part.ts";
import type { TrainablePart } from "../lib/train/parts.ts";
import { hasCheckpoint, loadCheckpoint, prepareOutDir } from "../lib/train/checkpoint.ts";
import { saveFigure } from "../lib/plot/figure.ts";
import { loadLifted } from "../lib/model/gpu_lifted.ts";
import type { RwkvWeights } from "../lib/model/types.ts";
import {
  type DbpConfig,
  DbpConfigSchema,
  type LiftedConfig,
  LiftedConfigSchema,
} from "../lib/parts/config.ts";
import { LiftedPart } from "../lib/parts/lifted_part.ts";
import { createLoraPart } from "../lib/parts/lora.ts";
import { type LoraConfig, LoraError, parseLoraSpec } from "../lib/model/lora.ts";
import { loadLora, saveLora } from "../lib/model/lora_file.ts";
import { initLiftedLayers } from "../lib/parts/support.ts";
import { Rng } from "../lib/util/rng.ts";
import { loadBundle, parseKeyValues, parseWith, runMain, UsageError } from "./_cli.ts";

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
  --lifted        also train a kernel-upscaled state (SPEC §6), written to DIR/lifted.safetensors:
                  FILE (a lifted.safetensors to start from), "on" (the defaults), or key=value
                  pairs: featureRatio=4, layers=all|1|0+1, featureMap=gaussian|identity,
                  headMeans=true, support=kmeans|random, rInit=identity|nystrom,
                  calibrationSequences=8, read=normalised|raw, writes=false (true: the writes
                  mode with a trained per-head gate), seed=0, lrScale=1 (Ŝ0's learning rate
                  relative to S0's); with FILE: file=FILE,lrScale=…
  --lora          also train LoRA adapters (SPEC §6), written to DIR/lora.safetensors: FILE (an
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

/** What a part flag builds: the part, and how its result is written into --out. */
interface BuiltPart {
  part: TrainablePart;
  /** write the tuned part into `out`; returns the path */
  save(out: string): Promise<string>;
}

/** What a part flag's builder may use. */
interface PartContext {
  a: z.output<typeof Args>;
  model: GpuModel;
  weights: RwkvWeights;
  ds: Dataset;
}

/**
 * A part flag beyond S0: `parse` checks the flag's value before anything is loaded (usage
 * errors come first), `build` makes the part once the model and data are there. The
 * coordinator adds `--lora` as one more entry (and its `parseArgs` option and `Args` field).
 */
interface PartFlag<Spec> {
  flag: "lifted" | "lora";
  parse(value: string, a: z.output<typeof Args>): Spec;
  build(spec: Spec, c: PartContext): Promise<BuiltPart>;
}

/** `--lifted` (and its `--dbp`) as parsed. */
interface LiftedSpec {
  file?: string;
  config?: LiftedConfig;
  lrScale: number;
  dbp: DbpConfig | false;
}

const LIFTED_FLAG: PartFlag<LiftedSpec> = {
  flag: "lifted",
  parse: parseLifted,
  build: buildLifted,
};

/** `--lora` as parsed: an adapter file (α for a .pth) or a fresh adapter's options. */
interface LoraSpec {
  file?: string;
  alpha?: number;
  config?: LoraConfig;
}

const LORA_FLAG: PartFlag<LoraSpec> = {
  flag: "lora",
  parse(v) {
    const fileSpec = /^file=([^,]+)(?:,alpha=([^,]+))?$/.exec(v);
    if (fileSpec) {
      const alpha = fileSpec[2] === undefined ? undefined : Number(fileSpec[2]);
      if (alpha !== undefined && !(alpha > 0)) {
        throw new UsageError(`--lora: alpha must be a positive number, got "${fileSpec[2]}"`);
      }
      return { file: fileSpec[1], alpha };
    }
    if (!v.includes("=")) return { file: v };
    try {
      return { config: parseLoraSpec(v) };
    } catch (e) {
      if (e instanceof LoraError) throw new UsageError(`--lora "${v}": ${e.message}`);
      throw e;
    }
  },
  async build(spec, c) {
    const source = spec.file !== undefined
      ? await loadLora(spec.file, { config: c.weights.config, alpha: spec.alpha })
      : spec.config!;
    const part = await createLoraPart(c.model, source);
    return {
      part,
      save: async (out) => {
        await saveLora(`${out}/lora.safetensors`, await part.adapter());
        return `${out}/lora.safetensors`;
      },
    };
  },
};

// deno-lint-ignore no-explicit-any
const PART_FLAGS: PartFlag<any>[] = [LIFTED_FLAG, LORA_FLAG];

/** `--lifted FILE | file=FILE,lrScale=… | on | key=value,…` and `--dbp on | key=value,…`. */
function parseLifted(v: string, a: z.output<typeof Args>): LiftedSpec {
  const raw = v.includes("=") || v === "on"
    ? parseKeyValues("--lifted", v, z.record(z.string(), z.unknown()))
    : { file: v };
  const { lrScale: lr, file, ...rest } = raw;
  const lrScale = parseKeyValues(
    "--lifted",
    lr === undefined ? "on" : `lrScale=${lr}`,
    z.object({ lrScale: z.number().min(0).default(1) }),
  ).lrScale;
  const dbp = a.dbp === undefined ? false : parseKeyValues("--dbp", a.dbp, DbpConfigSchema);
  if (file !== undefined) {
    if (Object.keys(rest).length) {
      throw new UsageError(`--lifted: with a file only lrScale may be given, got "${v}"`);
    }
    return { file: String(file), lrScale, dbp };
  }
  if (typeof rest.layers === "number") rest.layers = [rest.layers];
  const r = LiftedConfigSchema.safeParse({ ...rest, enabled: true });
  if (!r.success) {
    throw new UsageError(`--lifted "${v}": ${r.error.issues.map((i) => i.message).join("; ")}`);
  }
  return { config: r.data, lrScale, dbp };
}

/** The lifted part: from the file, or initialised on calibration rows of the training set. */
async function buildLifted(spec: LiftedSpec, c: PartContext): Promise<BuiltPart> {
  let layers;
  if (spec.file !== undefined) layers = await loadLifted(spec.file);
  else {
    const cfg = spec.config!, train = c.ds.train;
    const order = new Rng(cfg.seed * 7919 + 17).shuffle(train.map((_, i) => i));
    const calib = order.slice(0, cfg.calibrationSequences).map((i) => train[i].ids);
    layers = initLiftedLayers(c.weights, calib, cfg);
  }
  const part = await LiftedPart.create(c.model, { layers, dbp: spec.dbp, lrScale: spec.lrScale });
  return {
    part,
    save: async (out) => {
      await part.save(`${out}/lifted.safetensors`);
      return `${out}/lifted.safetensors`;
    },
  };
}

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
      lifted: s,
      lora: s,
      dbp: s,
      "fail-on-bad-rows": f,
      seed: s,
      help: { ...f, short: "h" },
    },
  });
  if (values.help) return console.log(USAGE);
  const a = parseWith(Args, values);
  const ckDir = `${a.out}/checkpoint`;
  if (a.dbp !== undefined && a.lifted === undefined) {
    throw new UsageError("--dbp moves the lifted state's R: it needs --lifted");
  }
  const specs = PART_FLAGS.flatMap((pf) => {
    const v = a[pf.flag];
    return v === undefined ? [] : [{ pf, spec: pf.parse(v, a) }];
  });
  if (a.resume) await loadCheckpoint(ckDir); // refuse early, naming the path
  else {
    await prepareOutDir(a.out, "--out");
    if (await hasCheckpoint(ckDir)) {
      throw new Error(
        `--out ${a.out} holds the checkpoint of an earlier run (${ckDir}/checkpoint.json): ` +
          `pass --resume to continue it, or pick another --out (nothing was overwritten)`,
      );
    }
    await prepareOutDir(ckDir, "--out");
  }
  const b = await loadBundle(a.model, a.tokenizer);
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
  const state = await StatePart.create(model);
  const extra: BuiltPart[] = [];
  for (const { pf, spec } of specs) {
    extra.push(await pf.build(spec, { a, model, weights: b.model.weights, ds }));
  }
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
    signal: abort.signal,
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
  for (const [sig, fn] of listeners) Deno.removeSignalListener(sig, fn);
  if (caught) Deno.exit(caught === "SIGINT" ? 130 : 143);
});
