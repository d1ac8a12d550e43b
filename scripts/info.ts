/**
 * Print what a checkpoint holds: the config inferred from its shapes, the parameter count, the
 * file's dtype and size, and the GPU memory its weights need in f32 and f16.
 *
 *     deno task info --model RWKV-x070-World-0.1B.pth
 *     deno task info --model tiny.safetensors --json
 *
 * @module
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { countParams, loadModel } from "../lib/model/load.ts";
import type { LoadedModel } from "../lib/model/load.ts";

const USAGE = `Usage: deno task info --model PATH [--json]

  --model      an RWKV-7 checkpoint (.pth or .safetensors; the format is read from the file)
  --json       print the same facts as JSON
  -h, --help   show this help`;

const ArgsSchema = z.object({
  model: z.string({ error: "--model is required (a .pth or .safetensors path)" })
    .min(1, { error: "--model must not be empty" }),
  json: z.boolean().default(false),
});

/** The facts `info` prints, as a JSON-ready object. */
export interface ModelInfo {
  path: string;
  format: string;
  fileDtype: string;
  fileBytes: number;
  config: LoadedModel["weights"]["config"];
  params: number;
  gpuBytes: { f32: number; f16: number };
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
    gpuBytes: { f32: 4 * params, f16: 2 * params },
  };
}

function size(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB"];
  let v = bytes, u = 0;
  while (v >= 1024 && u < units.length - 1) (v /= 1024), u++;
  return `${v.toFixed(u === 0 ? 0 : 2)} ${units[u]}`;
}

/** Human-readable lines. */
export function formatInfo(i: ModelInfo): string {
  const c = i.config;
  return [
    `model        ${i.path}`,
    `format       ${i.format}, ${i.fileDtype}, ${size(i.fileBytes)} (${i.fileBytes} bytes)`,
    `layers L     ${c.nLayer}`,
    `width C      ${c.nEmbd} = ${c.nHead} heads × ${c.headSize}`,
    `vocab V      ${c.vocabSize}`,
    `low-rank     Dw ${c.dimW}, Da ${c.dimA}, Dv ${c.dimV}, Dg ${c.dimG}`,
    `ffn F        ${c.dimFfn}`,
    `parameters   ${i.params.toLocaleString("en-US")} (${(i.params / 1e6).toFixed(2)} M)`,
    `GPU weights  f32 ${size(i.gpuBytes.f32)}, f16 ${size(i.gpuBytes.f16)}`,
  ].join("\n");
}

/** A bad command line (printed with the usage). */
class UsageError extends Error {}

function parse(argv: string[]): z.infer<typeof ArgsSchema> | null {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        model: { type: "string", short: "m" },
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
  const parsed = ArgsSchema.safeParse(rest);
  if (!parsed.success) throw new UsageError(parsed.error.issues.map((i) => i.message).join("; "));
  return parsed.data;
}

async function main(argv: string[]): Promise<void> {
  const args = parse(argv);
  if (!args) return console.log(USAGE);
  const info = modelInfo(await loadModel(args.model));
  console.log(args.json ? JSON.stringify(info, null, 2) : formatInfo(info));
}

if (import.meta.main) {
  try {
    await main(Deno.args);
  } catch (e) {
    const usage = e instanceof UsageError ? `\n\n${USAGE}` : "";
    console.error(`error: ${(e as Error).message}${usage}`);
    Deno.exit(1);
  }
}
