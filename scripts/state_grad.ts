/**
 * The gradient of the mean next-token cross-entropy of one sequence w.r.t. every layer's
 * initial wkv state, from a zero state (or `--state`): a check other tools can compare with.
 *
 *     deno task state-grad --model M (--text T | --tokens 1,2,3) [--tokenizer …] --json
 *
 * `--json` prints `{"loss": L, "grads": [[layer 0: H·N·N values, value-major], …]}`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { getGpu } from "../lib/gpu/device.ts";
import { uploadStorage } from "../lib/gpu/buffers.ts";
import { GpuModel } from "../lib/model/gpu_model.ts";
import { GpuBackward } from "../lib/train/gpu_backward.ts";
import { refLossAndGrad } from "../lib/ref/backward.ts";
import {
  DEFAULT_MODEL,
  loadBundle,
  parseTokenList,
  parseWith,
  runMain,
  UsageError,
} from "./_cli.ts";

const USAGE =
  `Usage: deno task state-grad --model M (--text T | --tokens 1,2,3) [--tokenizer VOCAB|bytes]
                            [--state FILE] [--engine gpu|cpu] [--json]

  --model      RWKV-7 checkpoint; default: the embedded model
  --text       text to encode; or --tokens with comma-separated ids (at least 2 tokens)
  --state      start from a tuned state instead of zeros (its wkv part; shifts stay zero)
  --engine     gpu (default, WebGPU backward) or cpu (the float64 reference)
  --json       print {"loss": L, "grads": [[…], …]} (one array per layer, H·N·N values)`;

const Args = z.object({
  model: z.string().default(DEFAULT_MODEL),
  text: z.string().optional(),
  tokens: z.string().optional(),
  tokenizer: z.string().optional(),
  state: z.string().optional(),
  engine: z.enum(["gpu", "cpu"]).default("gpu"),
  json: z.boolean().default(false),
});

await runMain(USAGE, async () => {
  const s = { type: "string" } as const;
  const { values } = parseArgs({
    options: {
      model: { ...s, short: "m" },
      text: s,
      tokens: s,
      tokenizer: s,
      state: s,
      engine: s,
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) return console.log(USAGE);
  const a = parseWith(Args, values);
  if ((a.text === undefined) === (a.tokens === undefined)) {
    throw new UsageError("pass exactly one of --text or --tokens");
  }
  const b = await loadBundle(a.model, a.tokenizer, a.state);
  const ids = a.tokens !== undefined ? parseTokenList(a.tokens) : b.tokenizer.encode(a.text!);
  if (ids.length < 2) throw new UsageError("need at least 2 tokens (one prediction)");
  const cfg = b.model.weights.config;
  const V = cfg.vocabSize;
  const bad = ids.find((t) => t >= V);
  if (bad !== undefined) throw new UsageError(`token ${bad} is outside the vocabulary [0, ${V})`);
  const inputs = ids.slice(0, -1), targets = ids.slice(1);
  const per = cfg.nHead * cfg.headSize * cfg.headSize;
  let loss: number, grads: Float32Array[] | Float64Array[];
  if (a.engine === "cpu") {
    const r = refLossAndGrad(b.model.weights, inputs, targets, undefined, b.state);
    loss = r.loss;
    grads = r.dState.map((d) => d.wkv);
  } else {
    const gpu = await getGpu();
    const model = await GpuModel.create(gpu, b.model.weights);
    const bwd = await GpuBackward.create(model);
    const flat = new Float32Array(cfg.nLayer * per);
    b.state.forEach((st, l) => flat.set(st.wkv, l * per));
    const T = inputs.length;
    const r = await bwd.lossAndGrad({
      B: 1,
      T,
      tokens: uploadStorage(gpu, "state-grad.tokens", Uint32Array.from(inputs)),
      targets: uploadStorage(gpu, "state-grad.targets", Uint32Array.from(targets)),
      mask: uploadStorage(gpu, "state-grad.mask", new Float32Array(T).fill(1)),
      init: { kind: "shared", wkv: uploadStorage(gpu, "state-grad.s0", flat) },
    });
    loss = r.loss;
    grads = Array.from({ length: cfg.nLayer }, (_, l) => r.dS0Sum.slice(l * per, (l + 1) * per));
  }
  if (a.json) {
    console.log(JSON.stringify({ loss, grads: grads.map((g) => Array.from(g)) }));
    return;
  }
  console.log(`${ids.length} tokens, loss ${loss.toFixed(6)} (${a.engine})`);
  grads.forEach((g, l) => {
    let sq = 0;
    for (const x of g) sq += x * x;
    console.log(`layer ${String(l).padStart(2)}  |dL/dS0| = ${Math.sqrt(sq).toExponential(4)}`);
  });
});
