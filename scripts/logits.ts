/**
 * Print the logits after the last token of a text or token list, from a zero state (or
 * `--state FILE`), computed on WebGPU.
 *
 *     deno task logits --model M (--text T | --tokens 1,2,3) [--tokenizer …] [--state S] --json
 *
 * `--json` prints `{"tokens": [...], "logits": [...]}`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { getGpu } from "../lib/gpu/device.ts";
import { GpuModel } from "../lib/model/gpu_model.ts";
import { DEFAULT_MODEL, loadForInput, parseWith, runMain, UsageError } from "./_cli.ts";

const USAGE =
  `Usage: deno task logits --model M (--text T | --tokens 1,2,3) [--tokenizer VOCAB|bytes]
                        [--state FILE] [--json] [--top N]

  --model      RWKV-7 checkpoint (.pth / .safetensors); default: the embedded model
  --text       text to encode with the tokenizer
  --tokens     comma-separated token ids (instead of --text; needs no tokenizer)
  --tokenizer  vocabulary file or "bytes" (default: bytes when V = 256, else a vocab beside M;
               only looked up for --text, or to print the top tokens' text)
  --state      a tuned state file (.pth from RWKV-PEFT or web-rwkv safetensors)
  --json       print {"tokens": [...], "logits": [...]}
  --top        without --json, how many top tokens to list (default 10)`;

const Args = z.object({
  model: z.string().default(DEFAULT_MODEL),
  text: z.string().optional(),
  tokens: z.string().optional(),
  tokenizer: z.string().optional(),
  state: z.string().optional(),
  json: z.boolean().default(false),
  top: z.coerce.number().int().min(1).default(10),
  help: z.boolean().default(false),
});

await runMain(USAGE, async () => {
  const { values } = parseArgs({
    options: {
      model: { type: "string", short: "m" },
      text: { type: "string" },
      tokens: { type: "string" },
      tokenizer: { type: "string" },
      state: { type: "string" },
      json: { type: "boolean" },
      top: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  const a = parseWith(Args, values);
  if (a.help) return console.log(USAGE);
  const b = await loadForInput(a);
  const tokens = b.ids;
  if (tokens.length === 0) throw new UsageError("the text encodes to no tokens");
  const gpu = await getGpu();
  const model = await GpuModel.create(gpu, b.model.weights);
  const logits = await model.session(b.state).feed(tokens);
  if (a.json) {
    console.log(JSON.stringify({ tokens, logits: Array.from(logits) }));
    return;
  }
  const order = [...logits.keys()].sort((x, y) => logits[y] - logits[x]).slice(0, a.top);
  console.log(`${tokens.length} tokens; adapter: ${gpu.description}`);
  for (const id of order) {
    console.log(
      `${String(id).padStart(6)} ${logits[id].toFixed(4).padStart(10)}  ${
        b.tokenizer ? JSON.stringify(b.tokenizer.decode([id])) : ""
      }`,
    );
  }
});
