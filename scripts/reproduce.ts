/**
 * The decisive ablation (docs/MATH.md §10; docs/EXPERIMENTS.md): a grid of testbed × variant × seed
 * cells — untuned, plain state, lifted memory (M sweep), lifted writes, + DBP, LoRA at equal
 * numbers — run whole, as one shard, in W local worker processes, or merged from shard folders.
 * Writes `rows.jsonl`, `manifest.json`, `table.md`, `summary.json` and figures into --out.
 *
 *     deno task reproduce --testbed facts|skill|add|jsonl [--seeds 5] [--shard i/n] [--out DIR]
 *     deno task reproduce --merge DIR… [--out DIR]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { getGpu } from "../lib/gpu/device.ts";
import { loadModel } from "../lib/model/load.ts";
import { GpuModel } from "../lib/model/gpu_model.ts";
import { resolveTokenizer } from "../lib/tokenizer/mod.ts";
import { loadDataset } from "../lib/train/data.ts";
import { CellOptionsSchema, defaultGrid, runCell } from "../lib/experiments/cells.ts";
import { type GridSpecInput, parseShard } from "../lib/experiments/grid.ts";
import { type Manifest, mergeShards, runShard, writeRows } from "../lib/experiments/fanout.ts";
import { writeReport } from "../lib/experiments/report.ts";
import type { CellRow } from "../lib/experiments/grid.ts";
import { harnessTask } from "../lib/experiments/testbeds.ts";
import { TaskNameSchema } from "../lib/eval/task_types.ts";
import { DEFAULT_MODEL, parseWith, runMain, UsageError } from "./_cli.ts";

const DEFAULT_DATA = new URL("../../shared/fixtures/data", import.meta.url).pathname;

const USAGE = `Usage: deno task reproduce --testbed facts|skill|add|jsonl [options]
       deno task reproduce --merge DIR [DIR…] [--out DIR]

The ablation grid — untuned, state, lifted-memory (M sweep), lifted-writes, lifted-dbp,
lora-eq-state, lora-eq-lifted — over seeds, paired (same seeds, batches, support vectors).

  --testbed    facts (K facts recalled from the state alone; also the instructed skills'
               accuracy after tuning), skill (no instruction line), add (instructed addition),
               jsonl (--data FILE with a held-out split)
  --seeds      seeds 0…n−1 (default 5)
  --K          facts: comma-separated K values (default 64; e.g. 16,32,64,128 for the curve)
  --M          lifted-memory: comma-separated features per head (default N,2N)
  --steps      steps per run (default facts 300/400/500/1200/2000 for K 16/32/64/128/256,
               others 150);  --batch (default 16)
  --variants   comma-separated variant names (default all)
  --engine     cpu (float64 reference; small models, default) or gpu (WebGPU, any model)
  --workers    local worker processes, each a shard i/W, merged at the end (default 2 on cpu)
  --shard      i/n: run every n-th cell from i (Slurm arrays, Kubernetes Indexed Jobs)
  --merge      join shard folders (each with rows.jsonl + manifest.json) into --out
  --resume     skip cells already in --out/rows.jsonl
  --target-loss  training loss for the steps-to-target column (trailing mean over 10 steps)
  --data       jsonl testbed: {"prompt","response"} rows;  --val-split (default 0.2)
  --harness    jsonl testbed: also score a harness task after tuning (e.g. arc_easy, mmlu,
               skill_choice);  --harness-limit N items (default 200);  --data-dir (the
               harness data, default ../shared/fixtures/data)
  --skill      skill testbed: which skill (default reverse)
  --model      checkpoint (default the embedded model);  --tokenizer (default beside the model)
  --out        output folder (default results/<testbed>)`;

const list = (re: RegExp, eg: string) => z.string().regex(re, `e.g. ${eg}`);
const Args = z.object({
  testbed: z.enum(["facts", "skill", "add", "jsonl"]).default("facts"),
  seeds: z.coerce.number().int().min(1).default(5),
  K: list(/^\d+(,\d+)*$/, "16,64,128").default("64"),
  M: list(/^\d+(,\d+)*$/, "64,128").optional(),
  steps: z.coerce.number().int().positive().optional(),
  batch: z.coerce.number().int().positive().optional(),
  variants: z.string().optional(),
  engine: z.enum(["cpu", "gpu"]).default("cpu"),
  workers: z.coerce.number().int().positive().optional(),
  shard: z.string().optional(),
  resume: z.boolean().default(false),
  "target-loss": z.coerce.number().positive().optional(),
  data: z.string().optional(),
  "val-split": z.coerce.number().positive().default(0.2),
  skill: z.string().default("reverse"),
  harness: TaskNameSchema.optional(),
  "harness-limit": z.coerce.number().int().positive().default(200),
  "data-dir": z.string().default(DEFAULT_DATA),
  model: z.string().default(DEFAULT_MODEL),
  tokenizer: z.string().optional(),
  out: z.string().optional(),
});
type Args = z.output<typeof Args>;

/** The grid the arguments describe. */
function gridOf(a: Args, headSize: number): GridSpecInput {
  const g = defaultGrid(a.testbed, a.seeds, headSize);
  const want = a.variants?.split(",").map((s) => s.trim());
  const unknown = want?.filter((w) => !g.variants.some((v) => v.name === w)) ?? [];
  if (unknown.length) {
    throw new UsageError(
      `--variants: unknown ${unknown.join(", ")}; known: ${g.variants.map((v) => v.name)}`,
    );
  }
  const variants = g.variants.filter((v) => !want || want.includes(v.name)).map((v) =>
    a.M && v.name === "lifted-memory"
      ? { ...v, sweep: { key: "M", values: a.M.split(",").map(Number) } }
      : v
  );
  const testbeds = a.testbed === "facts"
    ? [{ name: "facts", sweep: { key: "K", values: a.K.split(",").map(Number) } }]
    : g.testbeds;
  const options = {
    ...g.options,
    engine: a.engine,
    skill: a.skill,
    ...(a.steps ? { steps: a.steps } : {}),
    ...(a.batch ? { batch: a.batch } : {}),
  };
  return { ...g, testbeds, variants, options };
}

const metricOf = (t: Args["testbed"]) =>
  t === "facts" ? "recall" : t === "jsonl" ? "exact" : "accuracy";

async function report(out: string, rows: CellRow[], a: Args): Promise<void> {
  const { markdown } = await writeReport(out, rows, {
    metric: metricOf(a.testbed),
    targetLoss: a["target-loss"],
    title: `Ablation: ${a.testbed} (${a.model.split("/").pop()})`,
  });
  console.log(`\n${markdown}\nwritten to ${out}/ (table.md, summary.json, figures)`);
}

/** Run shards i/W as child processes of this script and wait for all. */
async function runWorkers(W: number, out: string): Promise<string[]> {
  const dirs = Array.from({ length: W }, (_, i) => `${out}/shard-${i}`);
  const base = Deno.args.filter((x, i, all) => x !== "--workers" && all[i - 1] !== "--workers");
  const procs = dirs.map((dir, i) =>
    new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL(import.meta.url).pathname,
        ...base,
        "--workers",
        "1",
        "--shard",
        `${i}/${W}`,
        "--out",
        dir,
      ],
      stdout: "inherit",
      stderr: "inherit",
    }).spawn()
  );
  const codes = await Promise.all(procs.map((p) => p.status));
  const bad = codes.map((c, i) => (c.success ? -1 : i)).filter((i) => i >= 0);
  if (bad.length) throw new Error(`worker shard(s) ${bad.join(", ")} failed; see their output`);
  return dirs;
}

/** The command line: the typed options, --merge and the shard folders; null for --help. */
function parseCli(): { a: Args; merge: boolean; positionals: string[] } | null {
  const s = { type: "string" } as const;
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      ...Object.fromEntries(
        Object.keys(Args.shape).filter((k) => k !== "resume").map((k) => [k, s]),
      ),
      resume: { type: "boolean" },
      merge: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) return null;
  const { merge, help: _h, ...rest } = values;
  return { a: parseWith(Args, rest), merge: !!merge, positionals };
}

/** `--workers W`: W shards in parallel processes, merged into `out`. */
async function runWithWorkers(workers: number, out: string, a: Args): Promise<void> {
  const t0 = performance.now();
  const m = await mergeShards(await runWorkers(workers, out));
  const manifest: Manifest = {
    ...m.manifest,
    command: Deno.args,
    seconds: (performance.now() - t0) / 1000,
  };
  await writeRows(out, m.rows, manifest);
  const compute = m.rows.reduce((t, r) => t + r.seconds, 0);
  console.log(
    `${m.rows.length} cells in ${manifest.seconds!.toFixed(0)} s wall (${workers} workers; ` +
      `${compute.toFixed(0)} s compute)`,
  );
  await report(out, m.rows, a);
}

/** Run the grid (or one --shard of it) in this process; the report unless a shard. */
async function runHere(out: string, a: Args): Promise<void> {
  const { weights } = await loadModel(a.model);
  const tokenizer = await resolveTokenizer(a.model, weights.config.vocabSize, a.tokenizer);
  const dataset = a.data
    ? await loadDataset(a.data, tokenizer, { valSplit: a["val-split"] })
    : undefined;
  if (a.harness && a.testbed !== "jsonl") {
    throw new UsageError("--harness scores a harness task beside the jsonl testbed only");
  }
  const harness = a.harness
    ? harnessTask(tokenizer, a.harness, {
      dataDir: a["data-dir"],
      limit: a["harness-limit"],
    })
    : undefined;
  const spec = gridOf(a, weights.config.headSize);
  const model = await GpuModel.create(await getGpu(), weights);
  const options = CellOptionsSchema.parse(spec.options);
  const shard = a.shard ? parseShard(a.shard) : undefined;
  const metric = metricOf(a.testbed);
  const { rows, manifest } = await runShard({
    spec,
    shard,
    outDir: out,
    resume: a.resume,
    runner: (cell) =>
      runCell({
        weights,
        model,
        tokenizer,
        options,
        dataset,
        harness,
        progressEvery: 100,
        onProgress: (c, row, steps) =>
          console.log(
            `  ${c.id}: step ${row.step}/${steps}, loss ${row.loss.toFixed(4)}, ` +
              `${(row.elapsedMs / row.step).toFixed(0)} ms/step`,
          ),
      }, cell),
    extra: { model: a.model, engine: a.engine },
    onRow: (r, done, total) =>
      console.log(
        `[${done}/${total}] ${r.cell.id}: ${metric} ${
          (100 * (r.metrics[metric] ?? NaN)).toFixed(1)
        }% (${r.metrics.steps} steps, ${r.seconds.toFixed(1)} s compute)`,
      ),
  });
  model.destroy();
  console.log(`${rows.length} cells in ${manifest.seconds} s`);
  if (!shard) await report(out, rows, a);
}

await runMain(USAGE, async () => {
  const cli = parseCli();
  if (cli === null) return console.log(USAGE);
  const { a, merge, positionals } = cli;
  const out = a.out ?? `results/${a.testbed}`;
  if (merge) {
    if (positionals.length === 0) throw new UsageError("--merge needs the shard folders");
    const m = await mergeShards(positionals);
    await writeRows(out, m.rows, m.manifest);
    return await report(out, m.rows, a);
  }
  if (a.testbed === "jsonl" && !a.data) {
    throw new UsageError('--testbed jsonl needs --data FILE.jsonl ({"prompt","response"} rows)');
  }
  const workers = a.workers ?? (a.engine === "cpu" && !a.shard ? 2 : 1);
  if (workers > 1 && a.shard) throw new UsageError("use --workers or --shard, not both");
  if (workers > 1) return await runWithWorkers(workers, out, a);
  await runHere(out, a);
});
