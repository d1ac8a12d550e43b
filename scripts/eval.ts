/**
 * Evaluate a model (and tuned states) on ARC, WinoGrande, MMLU, GSM8K and LAMBADA, scored as
 * lm-evaluation-harness does (docs/MATH.md §9).
 *
 *     deno task eval --model M [--state S ...] --tasks arc_challenge,mmlu [--limit N]
 *                    [--out DIR] [--data-dir D] [--seed N]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { getGpu } from "../lib/gpu/device.ts";
import { GpuModel } from "../lib/model/gpu_model.ts";
import { loadState } from "../lib/train/state_file.ts";
import { type RwkvState, zeroState } from "../lib/model/types.ts";
import { Scorer } from "../lib/eval/scorer.ts";
import { prepareTask, TASK_NAMES, TaskNameSchema } from "../lib/eval/tasks.ts";
import {
  compareResults,
  evaluateTask,
  type PairedComparison,
  type TaskResult,
} from "../lib/eval/evaluate.ts";
import {
  formatComparisons,
  formatResults,
  formatSubjects,
  writeResults,
} from "../lib/eval/report.ts";
import { prepareOutDir } from "../lib/train/checkpoint.ts";
import { SKILLS } from "../lib/train/synthetic.ts";
import { DEFAULT_MODEL, loadBundle, parseWith, runMain, UsageError } from "./_cli.ts";

const DEFAULT_DATA = new URL("../../shared/fixtures/data", import.meta.url).pathname;

const USAGE = `Usage: deno task eval --tasks T1,T2 [--model M] [--state S ...] [--limit N]
                      [--out DIR] [--data-dir D] [--seed N] [--subjects S1,S2]

  --model           RWKV-7 checkpoint; default: the embedded model
  --tokenizer       vocabulary file or "bytes" (default: bytes when V = 256, else a vocab beside M)
  --state           a tuned state file, or "none" for the untuned model (repeatable; with two or
                    more, each is compared with the first on the same items, McNemar's exact test)
  --tasks           comma-separated: ${TASK_NAMES.join(", ")}
  --limit           evaluate the first N items of each task (MMLU: subjects alphabetically)
  --subjects        MMLU subjects to keep (comma-separated; default all)
  --data-dir        folder holding llm-foundry/, gsm8k/, mmlu/ (default ${DEFAULT_DATA})
  --out             write results.json and per-item <task>.<state>.jsonl here
  --seed            seed for GSM8K's 5 few-shot examples (default 1234)
  --max-gen-tokens  GSM8K generation length (default 256)
  --skill           skill of skill_choice / skill_answer (the synthetic skills as harness tasks,
                    no data files): ${SKILLS.join(", ")} (default reverse)
  --instruction     skill tasks: show the skill's instruction line (the ceiling)
  --quiet           no progress lines`;

const int = (name: string, min: number) =>
  z.coerce.number().refine((v) => Number.isInteger(v) && v >= min, {
    error: (i) => `${name} must be an integer ≥ ${min}, got ${JSON.stringify(i.input)}`,
  });

const Args = z.object({
  model: z.string().default(DEFAULT_MODEL),
  tokenizer: z.string().optional(),
  state: z.array(z.string()).default(["none"]),
  tasks: z.string({ error: "--tasks is required" })
    .transform((s) => s.split(",").map((x) => x.trim()).filter(Boolean))
    .pipe(z.array(TaskNameSchema).min(1, "--tasks lists no task")),
  limit: int("--limit", 1).optional(),
  subjects: z.string().transform((s) => s.split(",").map((x) => x.trim()).filter(Boolean))
    .optional(),
  "data-dir": z.string().default(DEFAULT_DATA),
  out: z.string().optional(),
  seed: int("--seed", 0).default(1234),
  "max-gen-tokens": int("--max-gen-tokens", 1).default(256),
  quiet: z.boolean().default(false),
  skill: z.enum(SKILLS).default("reverse"),
  instruction: z.boolean().default(false),
});

async function stateFor(label: string, model: GpuModel, base: RwkvState): Promise<RwkvState> {
  if (label === "none") return base;
  const cfg = model.config;
  const st = zeroState(cfg);
  const { states } = await loadState(label, cfg);
  states.forEach((s, l) => st[l].wkv.set(s));
  return st;
}

type EvalArgs = z.output<typeof Args>;
type Task = Awaited<ReturnType<typeof prepareTask>>;
type Bundle = Awaited<ReturnType<typeof loadBundle>>;

/** The command line as typed options, or null for --help. */
function parseCli(): EvalArgs | null {
  const str = { type: "string" } as const;
  const { values } = parseArgs({
    options: {
      model: { ...str, short: "m" },
      tokenizer: str,
      state: { type: "string", multiple: true },
      tasks: { ...str, short: "t" },
      limit: str,
      subjects: str,
      "data-dir": str,
      out: str,
      seed: str,
      "max-gen-tokens": str,
      quiet: { type: "boolean" },
      skill: str,
      instruction: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) return null;
  return parseWith(Args, values);
}

/** Every --tasks task with its items loaded. */
async function prepareTasks(a: EvalArgs): Promise<Task[]> {
  const tasks = [];
  for (const t of a.tasks) {
    tasks.push(
      await prepareTask(t, {
        dataDir: a["data-dir"],
        limit: a.limit,
        seed: a.seed,
        subjects: a.subjects,
        skill: a.skill,
        instruction: a.instruction,
      }),
    );
  }
  return tasks;
}

/**
 * Score every task from every --state; each state after the first is compared, item by item,
 * with the first.
 */
async function scoreAll(model: GpuModel, b: Bundle, tasks: Task[], a: EvalArgs) {
  const results: TaskResult[] = [];
  const comparisons: PairedComparison[] = [];
  for (const label of a.state) {
    const initial = await stateFor(label, model, b.state);
    const scorer = new Scorer(model, b.tokenizer, { initial });
    for (const task of tasks) {
      const r = await evaluateTask(scorer, task, {
        state: label,
        maxGenTokens: a["max-gen-tokens"],
        onProgress: a.quiet ? undefined : (done, total) => {
          if (done === total || done % 10 === 0) {
            console.error(`[${label}] ${task.name}: ${done}/${total}`);
          }
        },
      });
      results.push(r);
      if (!a.quiet) console.error(`[${label}] ${task.name}: ${r.seconds.toFixed(1)} s`);
      const base = results.find((x) => x.task === r.task && x.state === a.state[0]);
      if (base && base !== r) comparisons.push(...compareResults(base, r));
    }
    scorer.destroy();
  }
  return { results, comparisons };
}

await runMain(USAGE, async () => {
  const a = parseCli();
  if (a === null) return console.log(USAGE);
  if (a.tasks.some((t) => t !== "skill_choice" && t !== "skill_answer")) {
    try {
      await Deno.stat(a["data-dir"]);
    } catch {
      throw new UsageError(`--data-dir ${a["data-dir"]} does not exist`);
    }
  }
  if (a.out) await prepareOutDir(a.out, "--out"); // before any work, not after it
  const b = await loadBundle(a.model, a.tokenizer);
  const gpu = await getGpu();
  const model = await GpuModel.create(gpu, b.model.weights);
  const { results, comparisons } = await scoreAll(model, b, await prepareTasks(a), a);
  console.log(formatResults(results));
  for (const r of results) if (r.subjects && r.subjects.length > 1) console.log(formatSubjects(r));
  if (comparisons.length) {
    console.log("\nPaired differences (b − a), McNemar's exact test on per-item 0/1 outcomes:");
    console.log(formatComparisons(comparisons));
  }
  if (a.out) {
    const paths = await writeResults(a.out, results, comparisons, {
      model: a.model,
      tokenizer: b.tokenizer.name,
      adapter: gpu.description,
      limit: a.limit ?? null,
      seed: a.seed,
      maxGenTokens: a["max-gen-tokens"],
      dataDir: a["data-dir"],
    });
    console.error(`wrote ${paths.length} files to ${a.out}`);
  }
  model.destroy();
});
