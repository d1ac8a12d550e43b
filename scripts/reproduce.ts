/**
 * The ablation grid of the paper's extensions (SPEC §6) on one model and task: untuned, state
 * tuning, + kernel upscaling, + DBP, over several seeds. Writes under `results/<name>/`:
 * `runs.json` (every run with its history), `runs.csv`, `table.md` (mean ± std over seeds),
 * the plots (`loss`, `val_loss`, `decorrelation`, `accuracy` as svg/png/html) and
 * `manifest.json` (configuration, model SHA-256, adapter, Deno version, git commit).
 *
 *     deno task reproduce [--model M] [--data D] [--seeds 3] [--steps 20] [--name NAME]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { describeGpu, getGpu } from "../lib/gpu/device.ts";
import { loadModel } from "../lib/model/load.ts";
import { GpuModel } from "../lib/model/gpu_model.ts";
import { resolveTokenizer } from "../lib/tokenizer/mod.ts";
import { loadDataset } from "../lib/train/data.ts";
import { SKILLS } from "../lib/train/synthetic.ts";
import { saveFigure } from "../lib/plot/figure.ts";
import {
  type AblationOptionsInput,
  type AblationTask,
  curveFigure,
  datasetTask,
  type GridCell,
  markdownTable,
  runGrid,
  runsToCsv,
  skillTask,
  summariseRuns,
  summaryBarFigure,
  VARIANT_LABELS,
  VARIANTS,
} from "../lib/experiments/ablation.ts";
import { DEFAULT_MODEL, parseWith, runMain } from "./_cli.ts";

const USAGE =
  `Usage: deno task reproduce [--model M] [--data D] [--seeds 3] [--steps 20] [--name NAME]
                           [options]

The ablation grid (untuned, state tuning, + kernel upscaling, + DBP) × seeds, written under
results/<name>/ (runs.json, runs.csv, table.md, plots, manifest.json).

  --model          checkpoint (default: the embedded models/default.safetensors)
  --tokenizer      tokenizer for --data (default: bytes for V = 256, else the vocab beside the model)
  --data           jsonl dataset; default: the synthetic skill --skill WITHOUT its instruction line
  --val-split      held-out share or count of --data (default 0.1)
  --skill          ${SKILLS.join(", ")} (default reverse)
  --train-items    skill training items (default 200);  --val-items (default 16)
  --test-items     skill test items scored by greedy exact match (default 50)
  --seeds          number of seeds 0…n−1 (default 3)
  --steps          optimiser steps per run (default 20);  --batch (default 8)
  --lr-init        default 1;  --lr-final  default 0.01
  --m              M / N, features per head over head size (default 1; the SPEC's default 4 is
                   ~4× slower per step on a software GPU)
  --lifted-layers  "all" or comma-separated layer indices (default all)
  --lr-scale       Ŝ0's learning rate relative to S0's (default 1)
  --read           the lifted read (SPEC §6 v2): normalised ‖r‖ R φ(r/‖r‖) (default) or raw
                   R φ(r) (version 1, for that comparison); --normalised-read = --read normalised
  --writes         writes mode: v uᵀ written into Ŝ, a per-head gate trained (default memory mode)
  --dbp-lr         η_R (default 1e-3);  --dbp-kappa  κ (default 0.5)
  --variants       comma-separated subset of ${VARIANTS.join(",")} (default all)
  --name           results/<name> (default ablation)
  --out            parent folder (default results)`;

const num = z.coerce.number();
const BOOLEANS = ["normalised-read", "writes"];
const Args = z.object({
  model: z.string().default(DEFAULT_MODEL),
  tokenizer: z.string().optional(),
  data: z.string().optional(),
  "val-split": num.positive().default(0.1),
  skill: z.enum(SKILLS).default("reverse"),
  "train-items": num.int().positive().default(200),
  "val-items": num.int().positive().default(16),
  "test-items": num.int().positive().default(50),
  seeds: num.int().positive().default(3),
  steps: num.int().positive().default(20),
  batch: num.int().positive().default(8),
  "lr-init": num.positive().default(1),
  "lr-final": num.positive().default(0.01),
  m: num.positive().default(1),
  "lifted-layers": z.string().regex(/^(all|\d+(,\d+)*)$/, 'expected "all" or e.g. "0,1"')
    .default("all"),
  "lr-scale": num.positive().default(1),
  read: z.enum(["normalised", "raw"]).default("normalised"),
  "normalised-read": z.boolean().default(false),
  writes: z.boolean().default(false),
  "dbp-lr": num.min(0).default(1e-3),
  "dbp-kappa": num.min(0).max(1).default(0.5),
  variants: z.string().default(VARIANTS.join(",")).transform((s, ctx) => {
    const v = s.split(",").map((x) => x.trim());
    const bad = v.filter((x) => !(VARIANTS as readonly string[]).includes(x));
    if (bad.length) {
      ctx.addIssue({ code: "custom", message: `unknown variant(s) ${bad.join(", ")}` });
    }
    return v as (typeof VARIANTS)[number][];
  }),
  name: z.string().regex(/^[\w.-]+$/, "letters, digits, '.', '-' and '_' only").default("ablation"),
  out: z.string().default("results"),
});

await runMain(USAGE, async () => {
  const s = { type: "string" } as const;
  const { values } = parseArgs({
    options: {
      ...Object.fromEntries(
        Object.keys(Args.shape).filter((k) => !BOOLEANS.includes(k)).map((k) => [k, s]),
      ),
      ...Object.fromEntries(BOOLEANS.map((k) => [k, { type: "boolean" } as const])),
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) return console.log(USAGE);
  const a = parseWith(Args, values);
  const t0 = performance.now();
  const dir = `${a.out}/${a.name}`;
  const loaded = await loadModel(a.model);
  const weights = loaded.weights, cfg = weights.config;
  const gpu = await getGpu();
  const model = await GpuModel.create(gpu, weights);
  console.log(
    `model ${a.model}: L${cfg.nLayer} C${cfg.nEmbd} H${cfg.nHead} N${cfg.headSize}; ` +
      describeGpu(gpu),
  );
  const task: AblationTask = a.data
    ? datasetTask(
      await loadDataset(
        a.data,
        await resolveTokenizer(a.model, cfg.vocabSize, a.tokenizer),
        { valSplit: a["val-split"] },
      ),
      a.data,
    )
    : skillTask({
      skill: a.skill,
      trainItems: a["train-items"],
      valItems: a["val-items"],
      testItems: a["test-items"],
    });
  if (!a.data && cfg.vocabSize !== 256) {
    throw new Error(`skill tasks need a byte-level model (V = 256), got V = ${cfg.vocabSize}`);
  }
  const base: AblationOptionsInput = {
    steps: a.steps,
    batch: a.batch,
    lrInit: a["lr-init"],
    lrFinal: a["lr-final"],
    featureRatio: a.m,
    liftedLayers: a["lifted-layers"] === "all" ? "all" : a["lifted-layers"].split(",").map(Number),
    lrScale: a["lr-scale"],
    read: a["normalised-read"] ? "normalised" : a.read,
    writes: a.writes,
    dbpLr: a["dbp-lr"],
    dbpKappa: a["dbp-kappa"],
  };
  const cells: GridCell[] = a.variants.map((v) => ({ name: VARIANT_LABELS[v], variant: v }));
  const seeds = Array.from({ length: a.seeds }, (_, i) => i);
  console.log(
    `task ${task.name}: ${task.dataset.train.length} train / ${task.dataset.val.length} held-out` +
      (task.skill ? ` / ${task.skill.testItems} test items` : "") +
      `; ${cells.length} variants × ${seeds.length} seeds, ${a.steps} steps of ${a.batch}`,
  );
  const runs = await runGrid(model, weights, task, cells, seeds, base, (r, done, total) => {
    console.log(
      `[${done}/${total}] seed ${r.seed} ${r.name}: ` +
        (r.accuracy !== undefined ? `accuracy ${(100 * r.accuracy).toFixed(1)}%, ` : "") +
        `held-out loss ${r.heldOutLoss.toFixed(3)}` +
        (r.finalLoss !== undefined ? `, train loss ${r.finalLoss.toFixed(3)}` : "") +
        ` (${r.seconds.toFixed(1)} s)`,
    );
  });
  await Deno.mkdir(dir, { recursive: true });
  const summary = summariseRuns(runs);
  const table = markdownTable(summary);
  await Deno.writeTextFile(`${dir}/runs.json`, JSON.stringify(runs, null, 1) + "\n");
  await Deno.writeTextFile(`${dir}/runs.csv`, runsToCsv(runs));
  await Deno.writeTextFile(
    `${dir}/table.md`,
    `# Ablation: ${task.name}\n\nModel \`${a.model}\`, ${seeds.length} seed(s), ${a.steps} ` +
      `steps of ${a.batch}, M = ${a.m}·N, mean ± std over seeds.\n\n${table}`,
  );
  const plots = {
    loss: await saveFigure(
      curveFigure(runs, "loss", { title: `training loss: ${task.name}`, yLabel: "loss" }),
      `${dir}/loss`,
    ),
    valLoss: await saveFigure(
      summaryBarFigure(summary, "heldOutLoss", {
        title: `held-out loss: ${task.name}`,
        yLabel: "held-out loss",
      }),
      `${dir}/held_out_loss`,
    ),
    accuracy: await saveFigure(
      task.skill
        ? summaryBarFigure(summary, "accuracy", {
          title: `held-out accuracy: ${task.name}`,
          yLabel: "exact-match accuracy",
        })
        : summaryBarFigure(summary, "tokenAccuracy", {
          title: `held-out next-token accuracy: ${task.name}`,
          yLabel: "token accuracy",
        }),
      `${dir}/accuracy`,
    ),
    ...(runs.some((r) => r.decorrelationLoss !== undefined)
      ? {
        decorrelation: await saveFigure(
          curveFigure(runs, "decorrelationLoss", {
            title: "decorrelation loss ‖offdiag(C)‖²/M²",
            yLabel: "decorrelation loss",
          }),
          `${dir}/decorrelation`,
        ),
      }
      : {}),
  };
  const manifest = {
    command: ["deno task reproduce", ...Deno.args].join(" "),
    config: a,
    options: base,
    task: {
      name: task.name,
      train: task.dataset.train.length,
      heldOut: task.dataset.val.length,
      ...(task.skill ? { test: task.skill } : {}),
    },
    model: {
      path: a.model,
      sha256: await sha256File(a.model),
      config: cfg,
      dtype: loaded.dtype,
    },
    adapter: gpu.description,
    deno: Deno.version,
    gitCommit: await gitCommit(),
    seconds: Number(((performance.now() - t0) / 1000).toFixed(1)),
    files: ["runs.json", "runs.csv", "table.md", "manifest.json", plots],
  };
  await Deno.writeTextFile(`${dir}/manifest.json`, JSON.stringify(manifest, null, 2) + "\n");
  console.log(`\n${table}\nwritten to ${dir}/ in ${manifest.seconds} s`);
});

async function sha256File(path: string): Promise<string> {
  const bytes = await Deno.readFile(path);
  const h = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return [...h].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function gitCommit(): Promise<string | null> {
  try {
    const out = await new Deno.Command("git", { args: ["rev-parse", "HEAD"], stderr: "null" })
      .output();
    return out.success ? new TextDecoder().decode(out.stdout).trim() : null;
  } catch {
    return null;
  }
}
