/**
 * Serve a model through an OpenAI-compatible API (on 127.0.0.1 unless `--host` says otherwise).
 *
 *     deno task serve --model M [--state [NAME=]S]... [--port P] [--host H] [--api-key K]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { getGpu } from "../lib/gpu/device.ts";
import { GpuModel } from "../lib/model/gpu_model.ts";
import {
  bindWarning,
  DEFAULT_MAX_BODY_BYTES,
  DEFAULT_MAX_PROMPT_TOKENS,
  startServer,
} from "../lib/serve/server.ts";
import { type RwkvState, zeroState } from "../lib/model/types.ts";
import { loadState } from "../lib/train/state_file.ts";
import { DEFAULT_MODEL, loadBundle, parseWith, runMain, UsageError } from "./_cli.ts";

const USAGE = `Usage: deno task serve [--model M] [--state [NAME=]FILE]... [--port P] [--host H]
                         [--api-key KEY] [--tokenizer VOCAB|bytes]

  --model              RWKV-7 checkpoint; default: the embedded model
  --state              a tuned state file every request starts from; NAME=FILE (repeatable)
                       serves the state as model NAME, picked by a request's "model"
  --port               port (default 8000; 0 picks a free one)
  --host               address to bind (default 127.0.0.1). Anything else serves other
                       machines: pair it with --api-key. Host headers are checked only on loopback
  --api-key            bearer token every /v1 request must send (also $RWKV_API_KEY)
  --max-prompt-tokens  longest prompt in tokens (default ${DEFAULT_MAX_PROMPT_TOKENS}; RWKV has no fixed context)
  --max-body-bytes     largest request body (default ${DEFAULT_MAX_BODY_BYTES})
  --tokenizer          vocabulary file or "bytes" (default: bytes when V = 256, else a vocab beside M)
  --name               model name reported by /v1/models (default: the file name)

Endpoints: GET /health, GET /v1/models, POST /v1/completions, POST /v1/chat/completions
(stream, logprobs).`;

const int = (flag: string, min: number) =>
  z.coerce.number().refine((n) => Number.isInteger(n) && n >= min, {
    error: (i) => `--${flag} must be an integer ≥ ${min}, got ${JSON.stringify(i.input)}`,
  });

const Args = z.object({
  model: z.string().default(DEFAULT_MODEL),
  state: z.array(z.string()).default([]),
  tokenizer: z.string().optional(),
  name: z.string().optional(),
  host: z.string().min(1).optional(),
  "api-key": z.string().min(8, "--api-key must have at least 8 characters").optional(),
  "max-prompt-tokens": int("max-prompt-tokens", 1).default(DEFAULT_MAX_PROMPT_TOKENS),
  "max-body-bytes": int("max-body-bytes", 1).default(DEFAULT_MAX_BODY_BYTES),
  port: z.coerce.number().refine((p) => Number.isInteger(p) && p >= 0 && p < 65536, {
    error: (i) => `--port must be an integer in [0, 65535], got ${JSON.stringify(i.input)}`,
  }).default(8000),
});

/** Split `--state` values into the unnamed one and `NAME=FILE` ones. */
function splitStates(values: string[]): { plain?: string; named: [string, string][] } {
  const plain = values.filter((v) => !/^[\w.-]+=/.test(v));
  if (plain.length > 1) {
    throw new UsageError(
      `--state: only one unnamed state file can be served, got ${plain.length}; name the ` +
        `others as NAME=FILE`,
    );
  }
  const named = values.filter((v) => /^[\w.-]+=/.test(v)).map((v) => {
    const i = v.indexOf("=");
    return [v.slice(0, i), v.slice(i + 1)] as [string, string];
  });
  return { plain: plain[0], named };
}

await runMain(USAGE, async () => {
  const str = { type: "string" } as const;
  const { values } = parseArgs({
    options: {
      model: { ...str, short: "m" },
      state: { ...str, multiple: true },
      tokenizer: str,
      name: str,
      host: str,
      "api-key": str,
      "max-prompt-tokens": str,
      "max-body-bytes": str,
      port: { ...str, short: "p" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) return console.log(USAGE);
  const a = parseWith(Args, { ...values, "api-key": values["api-key"] ?? apiKeyFromEnv() });
  const { plain, named } = splitStates(a.state);
  const b = await loadBundle(a.model, a.tokenizer, plain);
  const states: Record<string, RwkvState> = {};
  for (const [n, file] of named) {
    const st = zeroState(b.model.weights.config);
    (await loadState(file, b.model.weights.config)).states.forEach((s, l) => st[l].wkv.set(s));
    states[n] = st;
  }
  const gpu = await getGpu();
  const model = await GpuModel.create(gpu, b.model.weights);
  const name = a.name ?? a.model.replace(/^.*[\\/]/, "").replace(/\.(pth|safetensors)$/, "");
  const hostname = a.host ?? "127.0.0.1";
  const warning = bindWarning(hostname, a["api-key"] !== undefined);
  if (warning) console.error(warning);
  const server = await startServer({
    model,
    tokenizer: b.tokenizer,
    state: plain ? b.state : undefined,
    states,
    modelName: name,
    hostname,
    port: a.port,
    apiKey: a["api-key"],
    maxPromptTokens: a["max-prompt-tokens"],
    maxBodyBytes: a["max-body-bytes"],
  });
  const served = [name, ...Object.keys(states)].join(", ");
  console.error(
    `serving ${served}${plain ? ` (${name} with state ${plain})` : ""} on ` +
      `http://${hostname.includes(":") ? `[${hostname}]` : hostname}:${server.port}/v1 ` +
      `(${gpu.description})${a["api-key"] ? "; API key required" : ""}; Ctrl-C stops`,
  );
  const stop = async () => {
    console.error("shutting down…");
    await server.close();
    model.destroy();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", stop);
});

function apiKeyFromEnv(): string | undefined {
  try {
    return Deno.env.get("RWKV_API_KEY") || undefined;
  } catch {
    return undefined; // no --allow-env
  }
}
