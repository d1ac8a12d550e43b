/**
 * Generate text on WebGPU, streaming tokens as they are sampled.
 *
 *     deno task generate --model M [--tokenizer bytes|VOCAB] [--state S] --prompt P
 *                        [--temperature --top-p --top-k --presence-penalty
 *                         --frequency-penalty --max-tokens --stop --seed]
 *                        [--sampler auto|gpu|cpu --burst N --weights f32|f16]
 *
 * `--sampler gpu` samples on the GPU and reads tokens back once per burst of `--burst` steps
 * (every CPU sync costs about 11 ms in Deno); `cpu` samples each step's logits on the CPU. The
 * default `auto` picks gpu on hardware adapters and cpu on software ones (llvmpipe), where the
 * forward dominates and the sampling kernel's first compile takes tens of seconds. The two
 * samplers draw from different random streams, so a seed repeats within one sampler.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { getGpu } from "../lib/gpu/device.ts";
import { isSoftwareAdapter } from "../lib/gpu/software.ts";
import { GpuModel } from "../lib/model/gpu_model.ts";
import { generate } from "../lib/generate/generate.ts";
import { gpuGenerate } from "../lib/generate/gpu_generate.ts";
import { DEFAULT_MODEL, loadBundle, parseWith, runMain } from "./_cli.ts";

const USAGE =
  `Usage: deno task generate --prompt P [--model M] [--tokenizer VOCAB|bytes] [--state FILE]
                          [sampling flags] [--json]

  --model              RWKV-7 checkpoint; default: the embedded model
  --prompt             the prompt (escape sequences like \\n are interpreted)
  --tokenizer          vocabulary file or "bytes" (default: bytes when V = 256, else a vocab beside M)
  --state              a tuned state file (.pth from RWKV-PEFT or web-rwkv safetensors)
  --temperature        default 1 (0 = greedy)
  --top-p              default 0.85
  --top-k              default 0 (off)
  --presence-penalty   default 0.2
  --frequency-penalty  default 0.2
  --penalty-decay      default 0.996
  --max-tokens         default 256
  --stop               a stop string (repeatable)
  --seed               sampling seed (printed when omitted, so a run can be repeated)
  --sampler            auto (default: gpu on hardware adapters, cpu on software ones), gpu or cpu
  --burst              gpu sampler: steps per submit and token readback (default 16)
  --weights            weight storage on the GPU: f32 (default) or f16
  --json               print one JSON object with the text and statistics at the end`;

const num = z.coerce.number();
const Args = z.object({
  model: z.string().default(DEFAULT_MODEL),
  prompt: z.string({ error: "--prompt is required" }),
  tokenizer: z.string().optional(),
  state: z.string().optional(),
  temperature: num.optional(),
  "top-p": num.optional(),
  "top-k": num.optional(),
  "presence-penalty": num.optional(),
  "frequency-penalty": num.optional(),
  "penalty-decay": num.optional(),
  "max-tokens": num.optional(),
  stop: z.array(z.string()).default([]),
  seed: num.optional(),
  sampler: z.enum(["auto", "gpu", "cpu"], { error: "--sampler must be auto, gpu or cpu" })
    .default("auto"),
  burst: num.pipe(z.number().int().min(1).max(1024)).optional(),
  weights: z.enum(["f32", "f16"], { error: "--weights must be f32 or f16" }).default("f32"),
  json: z.boolean().default(false),
});

const unescape = (s: string) =>
  s.replace(/\\n/g, "\n").replace(/\\t/g, "\t").replace(/\\\\/g, "\\");

/** The command line as typed options, or null for --help. */
function parseCli(): z.output<typeof Args> | null {
  const str = { type: "string" } as const;
  const { values } = parseArgs({
    options: {
      model: { ...str, short: "m" },
      prompt: { ...str, short: "p" },
      tokenizer: str,
      state: str,
      temperature: str,
      "top-p": str,
      "top-k": str,
      "presence-penalty": str,
      "frequency-penalty": str,
      "penalty-decay": str,
      "max-tokens": str,
      stop: { type: "string", multiple: true },
      seed: str,
      sampler: str,
      burst: str,
      weights: str,
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) return null;
  return parseWith(Args, values);
}

/** The sampling options of the command line (escapes in --stop undone). */
function samplingOf(a: z.output<typeof Args>) {
  return {
    temperature: a.temperature,
    topP: a["top-p"],
    topK: a["top-k"],
    presencePenalty: a["presence-penalty"],
    frequencyPenalty: a["frequency-penalty"],
    penaltyDecay: a["penalty-decay"],
    maxTokens: a["max-tokens"],
    stop: a.stop.map(unescape),
    seed: a.seed,
  };
}

await runMain(USAGE, async () => {
  const a = parseCli();
  if (a === null) return console.log(USAGE);
  const b = await loadBundle(a.model, a.tokenizer, a.state);
  const gpu = await getGpu();
  const model = await GpuModel.create(gpu, b.model.weights, { weightDtype: a.weights });
  const soft = isSoftwareAdapter(gpu);
  const sampler = a.sampler === "auto" ? (soft ? "cpu" : "gpu") : a.sampler;
  const opts = samplingOf(a);
  const prompt = unescape(a.prompt);
  const it = sampler === "gpu"
    ? gpuGenerate(model, b.tokenizer, prompt, { ...opts, initialState: b.state, burst: a.burst })
    : generate(model.session(b.state), b.tokenizer, prompt, opts);
  const enc = new TextEncoder();
  let r = await it.next();
  while (!r.done) {
    if (!a.json) await Deno.stdout.write(enc.encode(r.value.text));
    r = await it.next();
  }
  const res = r.value;
  if (a.json) {
    console.log(JSON.stringify({ ...res, adapter: gpu.description, sampler }));
  } else {
    console.error(
      `\n[${res.tokens.length} tokens, ${res.tokensPerSecond.toFixed(1)} tokens/s, stop: ` +
        `${res.stopReason}, seed ${res.seed}, ${sampler} sampler, adapter: ${gpu.description}]`,
    );
  }
});
