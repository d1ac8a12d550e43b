/**
 * Guided test-time scaling (docs/MATH.md §5): per test item a guide continues the prompt, the
 * student's state takes K steps on it, and the student answers from the tuned state; accuracy
 * before and after is printed beside the guide's cost.
 *
 *     deno task test-time --model M --guide (local:PATH | http://URL) --tasks arc_challenge
 *                   [--limit N] [--steps K] [--lr X] [--out DIR]
 *     deno task test-time --guide self --guide-preamble 'reverse\n' --tasks skill_answer --limit 100 \
 *                   --ks 0,1,2,4,8 --guide-tokens 1,2,4,8 --out results/tts   # a curve
 *
 * @module
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { getGpu } from "../lib/gpu/device.ts";
import { GpuModel } from "../lib/model/gpu_model.ts";
import { Scorer } from "../lib/eval/scorer.ts";
import { prepareTask, TASK_NAMES, TaskNameSchema } from "../lib/eval/tasks.ts";
import {
  compareResults,
  evaluateTask,
  type PairedComparison,
  type TaskResult,
} from "../lib/eval/evaluate.ts";
import { formatComparisons, formatResults, writeResults } from "../lib/eval/report.ts";
import type { Guide } from "../lib/test_time/guide.ts";
import { HttpGuide } from "../lib/test_time/http_guide.ts";
import { LocalGuide } from "../lib/test_time/local_guide.ts";
import { guidedEvaluate, type TtsResult } from "../lib/test_time/tts.ts";
import { PromptedGuide } from "../lib/test_time/prompted_guide.ts";
import { formatScaling, scalingCurve, scalingFigure } from "../lib/test_time/scaling.ts";
import { saveFigure } from "../lib/plot/figure.ts";
import { SKILLS } from "../lib/train/synthetic.ts";
import { DEFAULT_MODEL, loadBundle, parseWith, runMain, UsageError } from "./_cli.ts";

const DEFAULT_DATA = new URL("../../shared/fixtures/data", import.meta.url).pathname;

const USAGE =
  `Usage: deno task test-time --guide G --tasks T1,T2 [--model M] [--limit N] [--steps K]
                     [--lr X] [--out DIR] [options]

  --model             the student checkpoint; default: the embedded model
  --tokenizer         the student's vocabulary file or "bytes" (default: from the model)
  --state             the student's starting state file (default: zero state)
  --guide             local:PATH (an RWKV-7 checkpoint), self (the student model itself, e.g.
                      with --guide-preamble), or http(s)://HOST[:PORT][/v1/completions
                      | /v1/chat/completions] (an OpenAI-compatible endpoint)
  --guide-preamble    text the guide sees before every prompt (what it knows that the student
                      does not; "\n" is a newline), e.g. 'reverse\n' for the skill tasks
  --ks                a curve: comma-separated K values (0 = untuned); prints accuracy with a
                      95% Wilson interval per K (and saves the figures with --out)
  --guide-tokens      with --ks: comma-separated guide lengths, run at the largest K (the
                      accuracy-against-cost curve)
  --skill             skill of skill_choice / skill_answer: ${SKILLS.join(", ")} (default reverse)
  --guide-tokenizer   vocabulary of a local guide (default: from its checkpoint)
  --api               completions | chat, for a base URL (default completions)
  --guide-model       the "model" field sent to an HTTP guide
  --api-key-env       name of the environment variable holding the HTTP guide's API key
  --top-logprobs      top log-probs asked of an HTTP guide (0 = none; default 0)
  --timeout-ms        per-request timeout of an HTTP guide (default 60000)
  --retries           retries on 429 / 5xx / network errors (default 3)
  --temperature       guide sampling temperature (default 0: greedy)
  --tasks             comma-separated: ${TASK_NAMES.join(", ")}
  --limit             the first N items of each task
  --steps             K, optimiser steps per item (default 2)
  --lr                Adam learning rate of the test-time steps (default 0.1)
  --objective         ce (teacher-forced cross-entropy) | kl (needs a guide with the student's
                      vocabulary and its distributions) (default ce)
  --kl-rows           copies per sequence for KL (default 8)
  --guide-max-tokens  tokens the guide writes per item (default 64)
  --reinforce-steps   REINFORCE steps after the alignment (default 0: off)
  --samples           student answers sampled per REINFORCE step (default 4)
  --reward            guide (agree with the guide's answer) | oracle (the gold label: an upper
                      bound, not a test-time method) (default guide)
  --data-dir          folder holding llm-foundry/, gsm8k/, mmlu/ (default ${DEFAULT_DATA})
  --out               write results.json, per-item jsonl and tts.json (costs) here
  --seed              seed (GSM8K shots, sampling) (default 1234)
  --max-gen-tokens    GSM8K generation length (default 256)
  --quiet             no progress lines`;

const int = (min: number) =>
  z.coerce.number().refine((v) => Number.isInteger(v) && v >= min, {
    error: (i) => `must be an integer ≥ ${min}, got ${JSON.stringify(i.input)}`,
  });
const num = () =>
  z.coerce.number().refine((v) => Number.isFinite(v) && v > 0, {
    error: (i) => `must be a positive number, got ${JSON.stringify(i.input)}`,
  });

const intList = (flag: string) =>
  z.string().transform((s, ctx) => {
    const xs = s.split(",").map((x) => Number(x.trim()));
    if (!xs.length || xs.some((x) => !Number.isInteger(x) || x < 0)) {
      ctx.addIssue({
        code: "custom",
        message: `${flag} wants integers ≥ 0 like 0,1,2,4; got "${s}"`,
      });
    }
    return xs;
  });

/** Tasks that read no files (the synthetic skills). */
const NO_DATA = new Set(["skill_choice", "skill_answer"]);

const Args = z.object({
  model: z.string().default(DEFAULT_MODEL),
  tokenizer: z.string().optional(),
  state: z.string().optional(),
  guide: z.string({ error: "--guide is required (local:PATH, self or http://URL)" }).refine(
    (g) => g === "self" || /^local:.+/.test(g) || /^https?:\/\/\S+$/.test(g),
    { error: (i) => `must be local:PATH, self or http(s)://URL, got ${JSON.stringify(i.input)}` },
  ),
  "guide-preamble": z.string().default("").transform((t) => t.replace(/\\n/g, "\n")),
  ks: intList("--ks").optional(),
  "guide-tokens": intList("--guide-tokens").optional(),
  skill: z.enum(SKILLS).default("reverse"),
  "guide-tokenizer": z.string().optional(),
  api: z.enum(["completions", "chat"]).optional(),
  "guide-model": z.string().optional(),
  "api-key-env": z.string().optional(),
  "top-logprobs": int(0).default(0),
  "timeout-ms": int(1).default(60_000),
  retries: int(0).default(3),
  temperature: z.coerce.number().min(0).max(2).default(0),
  tasks: z.string({ error: "--tasks is required" })
    .transform((s) => s.split(",").map((x) => x.trim()).filter(Boolean))
    .pipe(z.array(TaskNameSchema).min(1, "--tasks lists no task")),
  limit: int(1).optional(),
  steps: int(0).default(2),
  lr: num().default(0.1),
  objective: z.enum(["ce", "kl"]).default("ce"),
  "kl-rows": int(1).default(8),
  "guide-max-tokens": int(1).default(64),
  "reinforce-steps": int(0).default(0),
  samples: int(2).default(4),
  reward: z.enum(["guide", "oracle"]).default("guide"),
  "data-dir": z.string().default(DEFAULT_DATA),
  out: z.string().optional(),
  seed: int(0).default(1234),
  "max-gen-tokens": int(1).default(256),
  quiet: z.boolean().default(false),
});
type Args = z.output<typeof Args>;

async function makeGuide(
  a: Args,
  student: GpuModel,
  studentTok: Scorer["tokenizer"],
): Promise<Guide> {
  const inner = await innerGuide(a, student, studentTok);
  return a["guide-preamble"] || a.ks
    ? new PromptedGuide(inner, { preamble: a["guide-preamble"], memoize: !!a.ks })
    : inner;
}

async function innerGuide(a: Args, student: GpuModel, studentTok: Scorer["tokenizer"]) {
  if (a.guide === "self") {
    return new LocalGuide(student, studentTok, {
      name: "self",
      temperature: a.temperature,
      maxTokens: a["guide-max-tokens"],
      seed: a.seed,
    });
  }
  if (a.guide.startsWith("local:")) {
    const path = a.guide.slice("local:".length);
    try {
      await Deno.stat(path);
    } catch {
      throw new UsageError(`--guide ${a.guide}: ${path} does not exist`);
    }
    return await LocalGuide.load(path, {
      tokenizer: a["guide-tokenizer"],
      gpu: student.gpu,
      temperature: a.temperature,
      maxTokens: a["guide-max-tokens"],
      seed: a.seed,
    });
  }
  return new HttpGuide({
    url: a.guide,
    api: a.api,
    model: a["guide-model"],
    apiKeyEnv: a["api-key-env"],
    topLogprobs: a["top-logprobs"],
    timeoutMs: a["timeout-ms"],
    retries: a.retries,
    temperature: a.temperature,
    maxTokens: a["guide-max-tokens"],
  }, studentTok);
}

const ms = (x: number) => `${(x / 1000).toFixed(1)} s`;

/** The cost table: one row per task (guide tokens / requests / time, steps, tuning time). */
function formatCosts(runs: TtsResult[]): string {
  const rows = [["task", "items", "guide tokens", "requests", "guide time", "steps", "tuning"]];
  for (const { result, items, total: t } of runs) {
    const counts = [items.length, t.guideTokens, t.guideRequests].map(String);
    rows.push([result.task, ...counts, ms(t.guideMs), String(t.optimiserSteps), ms(t.tuneMs)]);
  }
  const w = rows[0].map((_, j) => Math.max(...rows.map((r) => r[j].length)));
  return rows.map((r) => r.map((c, j) => c.padEnd(w[j])).join("  ")).join("\n");
}

/** The command line, parsed and checked; undefined after --help. */
function parseCli(): Args | undefined {
  const str = { type: "string" } as const;
  const names = Object.keys(Args.shape).filter((n) => n !== "quiet");
  let values;
  try {
    values = parseArgs({
      options: {
        ...Object.fromEntries(names.map((n) => [n, str])),
        quiet: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
    }).values;
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (values.help) return void console.log(USAGE);
  return parseWith(Args, values);
}

/** A progress printer for one task (none with --quiet). */
const progress = (a: Args, label: string, task: string) =>
  a.quiet ? undefined : (done: number, total: number) => {
    if (done === total || done % 10 === 0) console.error(`[${label}] ${task}: ${done}/${total}`);
  };

type Task = Awaited<ReturnType<typeof prepareTask>>;
type Base = Scorer["options"]["initial"];

/** One task at one K: the harness score before, then the guided run. */
async function beforeAfter(
  a: Args,
  scorer: Scorer,
  task: Task,
  guide: Guide,
  state: { label: string; base: Base },
): Promise<{ before: TaskResult; run: TtsResult }> {
  const before = await evaluateTask(scorer, task, {
    state: state.label,
    maxGenTokens: a["max-gen-tokens"],
    onProgress: progress(a, state.label, task.name),
  });
  const run = await guidedEvaluate(
    scorer,
    task,
    guide,
    {
      steps: a.steps,
      lr: a.lr,
      objective: a.objective,
      klRows: a["kl-rows"],
      guideMaxTokens: a["guide-max-tokens"],
      maxGenTokens: a["max-gen-tokens"],
      seed: a.seed,
      label: `tts(K=${a.steps})`,
      reinforce: a["reinforce-steps"] > 0
        ? { steps: a["reinforce-steps"], samples: a.samples, reward: a.reward }
        : undefined,
    },
    state.base,
    { onProgress: progress(a, `tts K=${a.steps}`, task.name) },
  );
  return { before, run };
}

/** Print the tables and, with --out, write results.json, the per-item files and tts.json. */
async function report(
  a: Args,
  runs: TtsResult[],
  results: TaskResult[],
  comparisons: PairedComparison[],
  meta: { guide: string; tokenizer: string; adapter: string },
): Promise<void> {
  console.log(formatResults(results));
  console.log("\nBefore → after test-time scaling (McNemar's exact test on per-item outcomes):");
  console.log(formatComparisons(comparisons));
  console.log(`\nGuide ${meta.guide}, cost:`);
  console.log(formatCosts(runs));
  if (!a.out) return;
  const paths = await writeResults(a.out, results, comparisons, {
    model: a.model,
    ...meta,
    limit: a.limit ?? null,
    steps: a.steps,
    lr: a.lr,
    objective: a.objective,
    seed: a.seed,
  });
  const tts = runs.map((r) => ({ task: r.result.task, total: r.total, items: r.items }));
  await Deno.writeTextFile(`${a.out}/tts.json`, JSON.stringify(tts, null, 1) + "\n");
  console.error(`wrote ${paths.length + 1} files to ${a.out}`);
}

await runMain(USAGE, async () => {
  const a = parseCli();
  if (!a) return;
  if (a.tasks.some((t) => !NO_DATA.has(t))) {
    try {
      await Deno.stat(a["data-dir"]);
    } catch {
      throw new UsageError(`--data-dir ${a["data-dir"]} does not exist`);
    }
  }
  const b = await loadBundle(a.model, a.tokenizer, a.state);
  const gpu = await getGpu();
  const model = await GpuModel.create(gpu, b.model.weights);
  const guide: Guide = await makeGuide(a, model, b.tokenizer);
  const scorer = new Scorer(model, b.tokenizer, { initial: b.state });
  const results: TaskResult[] = [], comparisons: PairedComparison[] = [];
  const runs: TtsResult[] = [];
  try {
    for (const name of a.tasks) {
      const task = await prepareTask(name, {
        dataDir: a["data-dir"],
        limit: a.limit,
        seed: a.seed,
        skill: a.skill,
      });
      if (a.ks) {
        await curve(a, scorer, task, guide, b.state);
        continue;
      }
      const state = { label: b.statePath ?? "none", base: b.state };
      const { before, run } = await beforeAfter(a, scorer, task, guide, state);
      results.push(before, run.result);
      comparisons.push(...compareResults(before, run.result));
      runs.push(run);
    }
  } finally {
    scorer.destroy();
    await guide.close();
  }
  if (!a.ks) {
    const meta = { guide: guide.name, tokenizer: b.tokenizer.name, adapter: gpu.description };
    await report(a, runs, results, comparisons, meta);
  }
  model.destroy();
});

/** The --ks sweep (and the --guide-tokens sweep) of one task: tables, figures, curve.json. */
async function curve(
  a: Args,
  scorer: Scorer,
  task: Task,
  guide: Guide,
  base: Base,
): Promise<void> {
  const c = await scalingCurve(scorer, task, guide, {
    ks: a.ks!,
    guideTokens: a["guide-tokens"],
    guideMaxTokens: a["guide-max-tokens"],
    base,
    tts: {
      lr: a.lr,
      objective: a.objective,
      klRows: a["kl-rows"],
      maxGenTokens: a["max-gen-tokens"],
      seed: a.seed,
    },
    onPoint: a.quiet ? undefined : (p, sweep) =>
      console.error(
        `[${task.name} ${sweep}] K=${p.k} guide≤${p.guideMaxTokens}: ` +
          `${p.correct}/${p.n} (${p.seconds.toFixed(1)} s)`,
      ),
  });
  console.log(
    `${task.name} (${task.split}, n = ${task.items.length}), guide ${guide.name}, lr ${a.lr}:`,
  );
  console.log(`accuracy against K (guide ≤ ${a["guide-max-tokens"]} tokens):`);
  console.log(formatScaling(c.byK));
  if (c.byCost.length) {
    console.log(`\naccuracy against the guide's length (K = ${Math.max(...a.ks!)}):`);
    console.log(formatScaling(c.byCost));
  }
  if (a.out) {
    await Deno.mkdir(a.out, { recursive: true });
    const figs = scalingFigure(c.byK, c.byCost, `${task.name} (${a.skill})`);
    const paths = [await saveFigure(figs[0], `${a.out}/${task.name}_by_k`)];
    if (figs[1]) paths.push(await saveFigure(figs[1], `${a.out}/${task.name}_by_cost`));
    await Deno.writeTextFile(
      `${a.out}/${task.name}_curve.json`,
      JSON.stringify(
        { task: task.name, split: task.split, guide: guide.name, lr: a.lr, ...c },
        null,
        1,
      ) + "\n",
    );
    console.error(`wrote ${paths.map((p) => p.html).join(", ")} and ${task.name}_curve.json`);
  }
}
