/**
 * Serve a model through an OpenAI-compatible API on 127.0.0.1.
 *
 *     deno task serve --model M [--state S] [--port P] [--tokenizer VOCAB|bytes]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { getGpu } from "../lib/gpu/device.ts";
import { GpuModel } from "../lib/model/gpu_model.ts";
import { startServer } from "../lib/serve/server.ts";
import { DEFAULT_MODEL, loadBundle, parseWith, runMain } from "./_cli.ts";

const USAGE =
  `Usage: deno task serve [--model M] [--state FILE] [--port P] [--tokenizer VOCAB|bytes]

  --model       RWKV-7 checkpoint; default: the embedded model
  --state       a tuned state file every request starts from
  --port        port on 127.0.0.1 (default 8000; 0 picks a free one)
  --tokenizer   vocabulary file or "bytes" (default: bytes when V = 256, else a vocab beside M)
  --name        model name reported by /v1/models (default: the file name)

Endpoints: GET /v1/models, POST /v1/completions, POST /v1/chat/completions (stream, logprobs).`;

const Args = z.object({
  model: z.string().default(DEFAULT_MODEL),
  state: z.string().optional(),
  tokenizer: z.string().optional(),
  name: z.string().optional(),
  port: z.coerce.number().refine((p) => Number.isInteger(p) && p >= 0 && p < 65536, {
    error: (i) => `--port must be an integer in [0, 65535], got ${JSON.stringify(i.input)}`,
  }).default(8000),
});

await runMain(USAGE, async () => {
  const str = { type: "string" } as const;
  const { values } = parseArgs({
    options: {
      model: { ...str, short: "m" },
      state: str,
      tokenizer: str,
      name: str,
      port: { ...str, short: "p" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) return console.log(USAGE);
  const a = parseWith(Args, values);
  const b = await loadBundle(a.model, a.tokenizer, a.state);
  const gpu = await getGpu();
  const model = await GpuModel.create(gpu, b.model.weights);
  const name = a.name ?? a.model.replace(/^.*[\\/]/, "").replace(/\.(pth|safetensors)$/, "");
  const server = await startServer({
    model,
    tokenizer: b.tokenizer,
    state: a.state ? b.state : undefined,
    modelName: name,
    port: a.port,
  });
  console.error(
    `serving ${name}${
      a.state ? ` with state ${a.state}` : ""
    } on http://127.0.0.1:${server.port}/v1 ` +
      `(${gpu.description}); Ctrl-C stops`,
  );
  const stop = async () => {
    console.error("shutting down…");
    await server.close();
    model.destroy();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", stop);
});
