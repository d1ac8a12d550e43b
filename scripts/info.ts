/**
 * Print what a checkpoint holds: the config inferred from its shapes, the parameter count, the
 * file's dtype and size, the GPU memory its weights need in f32 and f16, and the GPU memory plan
 * of a forward and of a state-tuning step (weights, activations, workspace, state, gradients,
 * optimiser) with f32 and f16 weights, and whether each fits the budget (8 GB by default).
 * `--shape` prints the same for an official shape without any checkpoint.
 *
 *     deno task info --model RWKV-x070-World-0.1B.pth
 *     deno task info --model tiny.safetensors --json
 *     deno task info --shape 1.5B --plan-T 512 --plan-B 1
 *
 * @module
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { countParams, loadModel } from "../lib/model/load.ts";
import type { LoadedModel } from "../lib/model/load.ts";
import {
  configParams,
  fits,
  formatBytes,
  type MemoryPlan,
  memoryPlan,
  PLAN_CATEGORIES,
  type PlanItem,
} from "../lib/model/memory_plan.ts";
import { OFFICIAL_SHAPES } from "../lib/model/random.ts";
import type { RwkvConfig } from "../lib/model/types.ts";
import { parseWith, runMain, UsageError } from "./_cli.ts";

const SHAPES = Object.keys(OFFICIAL_SHAPES) as (keyof typeof OFFICIAL_SHAPES)[];

const USAGE = `Usage: deno task info (--model PATH | --shape NAME) [options]

  --model         an RWKV-7 checkpoint (.pth or .safetensors; the format is read from the file)
  --shape         an official shape instead of a checkpoint: ${SHAPES.join(", ")}
                  (the config only; nothing is downloaded)
  --plan-T        tokens per sequence of the memory plan (default 512)
  --plan-B        sequences per batch of the memory plan (default 1)
  --budget-gb     GPU memory the plan is checked against, GB = 10⁹ bytes (default 8)
  --json          print the same facts as JSON (the plan under "memoryPlan")
  -h, --help      show this help`;

const posInt = (what: string) =>
  z.coerce.number({ error: `expected ${what}` }).int({ error: `expected ${what}` })
    .positive({ error: `expected ${what}` });

const ArgsSchema = z.object({
  model: z.string().min(1, { error: "must not be empty" }).optional(),
  shape: z.enum(SHAPES, { error: `expected one of ${SHAPES.join(", ")}` }).optional(),
  "plan-T": posInt("a positive integer (tokens per sequence)").default(512),
  "plan-B": posInt("a positive integer (sequences per batch)").default(1),
  "budget-gb": z.coerce.number({ error: "expected a number of GB" })
    .positive({ error: "expected a positive number of GB" }).default(8),
  json: z.boolean().default(false),
}).refine((a) => (a.model === undefined) !== (a.shape === undefined), {
  error: "give exactly one of --model PATH (a .pth or .safetensors checkpoint) or --shape NAME",
});

type Args = z.output<typeof ArgsSchema>;

/** The facts `info` prints about a checkpoint, as a JSON-ready object. */
export interface ModelInfo {
  path: string;
  format: string;
  fileDtype: string;
  fileBytes: number;
  config: LoadedModel["weights"]["config"];
  params: number;
  gpuBytes: { f32: number; f16: number };
}

/** One cell of the plan table: a plan (with its fit) or why the shape cannot be laid out. */
export type PlanEntry =
  | (Omit<MemoryPlan, "items"> & { fits: boolean; items: Omit<PlanItem, "binding">[] })
  | { error: string };

/** The memory plans `info` prints: forward and state tuning, each with f32 and f16 weights. */
export interface MemoryPlanInfo {
  T: number;
  B: number;
  budgetBytes: number;
  forward: Record<"f32" | "f16", PlanEntry>;
  "state-tuning": Record<"f32" | "f16", PlanEntry>;
}

/** Weight bytes on the GPU: all f32, or f16 matrices with the embedding (V × C) kept f32. */
function weightBytes(cfg: RwkvConfig, params: number): { f32: number; f16: number } {
  return { f32: 4 * params, f16: 2 * params + 2 * cfg.vocabSize * cfg.nEmbd };
}

/** Collect the facts about a loaded model. */
export function modelInfo(m: LoadedModel): ModelInfo {
  const params = countParams(m.weights);
  return {
    path: m.path,
    format: m.format,
    fileDtype: m.dtype,
    fileBytes: m.bytes,
    config: m.weights.config,
    params,
    gpuBytes: weightBytes(m.weights.config, params),
  };
}

/** The four memory plans of `cfg` for B × T against `budgetBytes`. */
export function memoryPlanInfo(
  cfg: RwkvConfig,
  o: { T: number; B: number; budgetBytes: number },
): MemoryPlanInfo {
  const entry = (mode: MemoryPlan["mode"], weightDtype: "f32" | "f16"): PlanEntry => {
    try {
      const p = memoryPlan(cfg, { mode, T: o.T, B: o.B, weightDtype });
      const items = p.items.map(({ binding: _, ...i }) => i);
      return { ...p, items, fits: fits(p, o.budgetBytes) };
    } catch (e) {
      if (e instanceof RangeError) return { error: e.message };
      throw e;
    }
  };
  const both = (mode: MemoryPlan["mode"]) => ({ f32: entry(mode, "f32"), f16: entry(mode, "f16") });
  return { ...o, forward: both("forward"), "state-tuning": both("state-tuning") };
}

function size(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB"];
  let v = bytes, u = 0;
  while (v >= 1024 && u < units.length - 1) (v /= 1024), u++;
  return `${v.toFixed(u === 0 ? 0 : 2)} ${units[u]}`;
}

function configLines(c: RwkvConfig, params: number): string[] {
  return [
    `layers L     ${c.nLayer}`,
    `width C      ${c.nEmbd} = ${c.nHead} heads × ${c.headSize}`,
    `vocab V      ${c.vocabSize}`,
    `low-rank     Dw ${c.dimW}, Da ${c.dimA}, Dv ${c.dimV}, Dg ${c.dimG}`,
    `ffn F        ${c.dimFfn}`,
    `parameters   ${params.toLocaleString("en-US")} (${(params / 1e6).toFixed(2)} M)`,
    `GPU weights  f32 ${size(weightBytes(c, params).f32)}, f16 ${
      size(weightBytes(c, params).f16)
    } (embedding f32)`,
  ];
}

/** Human-readable lines. */
export function formatInfo(i: ModelInfo): string {
  return [
    `model        ${i.path}`,
    `format       ${i.format}, ${i.fileDtype}, ${size(i.fileBytes)} (${i.fileBytes} bytes)`,
    ...configLines(i.config, i.params),
  ].join("\n");
}

/** The plan as a table: categories × (forward, state tuning) × (f32, f16 weights). */
export function formatPlanInfo(p: MemoryPlanInfo): string {
  const cols = [
    ["forward", "f32"],
    ["forward", "f16"],
    ["state-tuning", "f32"],
    ["state-tuning", "f16"],
  ] as const;
  const entries = cols.map(([m, d]) => p[m][d]);
  const W = 15;
  const row = (name: string, cell: (e: PlanEntry) => string) =>
    `  ${name.padEnd(12)}` + entries.map((e) => cell(e).padStart(W)).join("");
  const budget = formatBytes(p.budgetBytes);
  const lines = [
    `memory plan  B ${p.B} × T ${p.T} (GB = 10⁹ bytes; 128 MiB storage bindings)`,
    `  ${"".padEnd(12)}` +
    cols.map(([m, d]) => `${m === "forward" ? m : "tuning"} ${d}`.padStart(W)).join(""),
  ];
  for (const c of PLAN_CATEGORIES) {
    lines.push(row(c, (e) => "error" in e ? "—" : formatBytes(e.bytes[c])));
  }
  lines.push(row("total", (e) => "error" in e ? "—" : formatBytes(e.total)));
  lines.push(row(`fits ${budget}`, (e) => "error" in e ? "no (layout)" : e.fits ? "yes" : "NO"));
  const errors = new Map<string, string[]>();
  entries.forEach((e, k) => {
    if ("error" in e) errors.set(e.error, [...errors.get(e.error) ?? [], cols[k].join(" ")]);
  });
  for (const [msg, where] of errors) lines.push(`  ${where.join(", ")}: ${msg}`);
  lines.push(
    "  state tuning: one tuneState step from a shared S0, each layer recomputed from its saved " +
      "input;",
    "  f16: the matrices at 2 bytes (generate/bench `--weights f16`); embedding and vectors f32.",
    "  Software adapters (llvmpipe) also hold texture copies of the matrices (`--textures`).",
  );
  return lines.join("\n");
}

function parse(argv: string[]): Args | null {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        model: { type: "string", short: "m" },
        shape: { type: "string" },
        "plan-T": { type: "string" },
        "plan-B": { type: "string" },
        "budget-gb": { type: "string" },
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (values.help) return null;
  const { help: _, ...rest } = values;
  return parseWith(ArgsSchema, rest);
}

async function main(argv: string[]): Promise<void> {
  const args = parse(argv);
  if (!args) return console.log(USAGE);
  const plan = (cfg: RwkvConfig) =>
    memoryPlanInfo(cfg, {
      T: args["plan-T"],
      B: args["plan-B"],
      budgetBytes: args["budget-gb"] * 1e9,
    });
  if (args.shape) {
    const config = OFFICIAL_SHAPES[args.shape], params = configParams(config);
    const gpuBytes = weightBytes(config, params);
    const memory = plan(config);
    if (args.json) {
      const out = { shape: args.shape, config, params, gpuBytes, memoryPlan: memory };
      return console.log(JSON.stringify(out, null, 2));
    }
    const head = `shape        ${args.shape} (official shape; no checkpoint)`;
    return console.log(
      [head, ...configLines(config, params), "", formatPlanInfo(memory)].join("\n"),
    );
  }
  const info = modelInfo(await loadModel(args.model!));
  const memory = plan(info.config);
  console.log(
    args.json
      ? JSON.stringify({ ...info, memoryPlan: memory }, null, 2)
      : `${formatInfo(info)}\n\n${formatPlanInfo(memory)}`,
  );
}

if (import.meta.main) await runMain(USAGE, () => main(Deno.args));
