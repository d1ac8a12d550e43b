/**
 * The decisive ablation's runner (issue 11; to become `deno task reproduce` once the trainable
 * parts of issue 10 land): a grid of testbed × variant × seed cells, run whole, as one shard,
 * in W local worker processes, or merged from shard folders. Writes `rows.jsonl`,
 * `manifest.json` and `table.md` into --out.
 *
 *     deno run -A scripts/ablate.ts --testbed facts [--seeds 5] [--K 128] [--steps N]
 *         [--variants untuned,state] [--engine cpu|gpu] [--workers 2] [--shard i/n]
 *         [--out results/facts]
 *     deno run -A scripts/ablate.ts --merge DIR… [--out results/facts]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { getGpu } from "../lib/gpu/device.ts";
import { loadModel } from "../lib/model/load.ts";
import { GpuModel } from "../lib/model/gpu_model.ts";
import { resolveTokenizer } from "../lib/tokenizer/mod.ts";
import {
  CellOptionsSchema,
  defaultGrid,
  runCell,
  VARIANT_KINDS,
} from "../lib/experiments/cells.ts";
import { type GridSpecInput, parseShard } from "../lib/experiments/grid.ts";
import { type Manifest, mergeShards, runShard, writeRows } from "../lib/experiments/fanout.ts";
import { markdownSummary, summarise } from "../lib/experiments/summary.ts";
import type { CellRow } from "../lib/experiments/grid.ts";
import { DEFAULT_MODEL, parseWith, runMain } from "./_cli.ts";

const USAGE = `Usage: deno run -A scripts/ablate.ts --testbed facts|skill|add [options]
       deno run -A scripts/ablate.ts --merge DIR [DIR…] [--out DIR]

  --testbed    facts (K recalled facts), skill (no instruction line), add (instructed addition)
  --seeds      seeds 0…n−1 (default 5)
  --K          facts: comma-separated K values (default 128)
  --steps      steps per run (default: facts 400/800/1200/2000 for K 16/64/128/256; else 400)
  --variants   comma-separated variant names (default: every variant whose kind runs today)
  --engine     cpu (float64 reference, default) or gpu (tuneState)
  --workers    run the grid in W local processes (shards i/W) and merge (default 1)
  --shard      i/n: run every n-th cell from i (Slurm arrays, Kubernetes Indexed Jobs)
  --merge      join shard folders (each with rows.jsonl + manifest.json) into --out
  --resume     skip cells already in --out/rows.jsonl
  --target-loss  training loss for the steps-to-target column (trailing mean over 10 steps)
  --model      checkpoint (default the embedded model);  --out  (default results/<testbed>)`;

const Args = z.object({
  testbed: z.enum(["facts", "skill", "add"]).default("facts"),
  seeds: z.coerce.number().int().positive().default(5),
  K: z.string().regex(/^\d+(,\d+)*$/, "e.g. 16,64,128").default("128"),
  steps: z.coerce.number().int().positive().optional(),
  variants: z.string().optional(),
  engine: z.enum(["cpu", "gpu"]).default("cpu"),
  workers: z.coerce.number().int().positive().default(1),
  shard: z.string().optional(),
  resume: z.boolean().default(false),
  model: z.string().default(DEFAULT_MODEL),
  out: z.string().optional(),
  /** a training loss for the steps-to-target column (DBP's convergence claim) */
  "target-loss": z.coerce.number().positive().optional(),
});

/** The grid the arguments describe. */
function gridOf(a: z.output<typeof Args>): GridSpecInput {
  const g = defaultGrid(a.testbed, a.seeds);
  const want = a.variants?.split(",").map((s) => s.trim());
  const variants = g.variants.filter((v) => want ? want.includes(v.name) : v.kind in VARIANT_KINDS);
  const unknown = want?.filter((w) => !g.variants.some((v) => v.name === w)) ?? [];
  if (unknown.length) {
    throw new RangeError(
      `--variants: unknown ${unknown.join(", ")}; known: ${g.variants.map((v) => v.name)}`,
    );
  }
  if (!want) {
    const later = g.variants.filter((v) => !(v.kind in VARIANT_KINDS)).map((v) => v.name);
    if (later.length) console.log(`not run yet (need issue 10's parts): ${later.join(", ")}`);
  }
  const testbeds = a.testbed === "facts"
    ? [{ name: "facts", sweep: { key: "K", values: a.K.split(",").map(Number) } }]
    : g.testbeds;
  const options = { ...g.options, engine: a.engine, ...(a.steps ? { steps: a.steps } : {}) };
  return { ...g, testbeds, variants, options };
}

async function report(
  out: string,
  rows: CellRow[],
  metric: string,
  targetLoss?: number,
): Promise<void> {
  const lines = summarise(rows, { metric, baseline: "state", targetLoss });
  const table = markdownSummary(lines, 100);
  await Deno.writeTextFile(`${out}/table.md`, table);
  console.log(
    `\n${metric} (%), mean [95% CI] over seeds; Δ = paired difference vs state\n${table}`,
  );
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
  if (bad.length) {
    throw new Error(`worker shard(s) ${bad.join(", ")} failed; see their output above`);
  }
  return dirs;
}

await runMain(USAGE, async () => {
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
  if (values.help) return console.log(USAGE);
  const { merge, help: _h, ...rest } = values;
  const a = parseWith(Args, rest);
  const out = a.out ?? `results/${a.testbed}`;
  const metric = a.testbed === "facts" ? "recall" : "accuracy";
  if (merge) {
    const m = await mergeShards(positionals);
    await writeRows(out, m.rows, m.manifest);
    return await report(out, m.rows, metric, a["target-loss"]);
  }
  const spec = gridOf(a);
  if (a.workers > 1) {
    const t0 = performance.now();
    const m = await mergeShards(await runWorkers(a.workers, out));
    const manifest: Manifest = {
      ...m.manifest,
      command: Deno.args,
      seconds: (performance.now() - t0) / 1000,
    };
    await writeRows(out, m.rows, manifest);
    console.log(
      `${m.rows.length} cells in ${manifest.seconds!.toFixed(0)} s wall (${a.workers} workers)`,
    );
    return await report(out, m.rows, metric, a["target-loss"]);
  }
  const { weights } = await loadModel(a.model);
  const tokenizer = await resolveTokenizer(a.model, weights.config.vocabSize);
  const model = await GpuModel.create(await getGpu(), weights);
  const options = CellOptionsSchema.parse(spec.options);
  const shard = a.shard ? parseShard(a.shard) : undefined;
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
        }% ` +
          `(${r.metrics.steps} steps, ${r.seconds.toFixed(1)} s)`,
      ),
  });
  model.destroy();
  console.log(`${rows.length} cells in ${manifest.seconds} s`);
  if (!shard) await report(out, rows, metric, a["target-loss"]);
});
