/**
 * The gradient of the mean next-token cross-entropy of one sequence w.r.t. every trainable part
 * present: each layer's initial wkv state S0 (from a zero state or `--state`), and with
 * `--lifted FILE` the kernel-upscaled state Ŝ0 (and, in writes mode, the gate g) of each lifted
 * layer, and with `--lora FILE` every LoRA factor A and B (all at the file's values): a check
 * other tools can compare with.
 *
 *     deno task state-grad --model M (--text T | --tokens 1,2,3) [--tokenizer …] [--state S]
 *                          [--lifted FILE] [--lora FILE [--lora-alpha A]] --json
 *
 * `--json` prints `{"loss": L, "grads": [[layer 0: H·N·N values, value-major], …]}`, plus with
 * `--lifted` `"lifted": {"blocks.{l}.att.lifted_state": [H·N·M values, row-major],
 * "blocks.{l}.att.lifted_gate": [H values] (writes-mode layers), …}`, and with `--lora`
 * `"lora": {"blocks.{l}.att.key.lora_A": [r·in values], "….lora_B": [out·r values], …}`.
 * `--tokens` needs no tokenizer.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { getGpu } from "../lib/gpu/device.ts";
import { uploadStorage } from "../lib/gpu/buffers.ts";
import { GpuModel } from "../lib/model/gpu_model.ts";
import { GpuLifted, loadLifted } from "../lib/model/gpu_lifted.ts";
import type { LiftedLayers } from "../lib/ref/lifted_types.ts";
import { loadLora, loraGradsFromRef, mergeLoraWeights } from "../lib/model/lora_file.ts";
import type { LoraAdapter } from "../lib/model/lora.ts";
import { createLoraPart } from "../lib/parts/lora.ts";
import { Recorder } from "../lib/gpu/recorder.ts";
import { GpuBackward } from "../lib/model/gpu_backward.ts";
import { refLossAndGrad } from "../lib/ref/backward.ts";
import type { RwkvConfig, RwkvState, RwkvWeights } from "../lib/model/types.ts";
import { DEFAULT_MODEL, loadForInput, parseWith, runMain, UsageError } from "./_cli.ts";

const USAGE =
  `Usage: deno task state-grad --model M (--text T | --tokens 1,2,3) [--tokenizer VOCAB|bytes]
                            [--state FILE] [--lifted FILE] [--lora FILE [--lora-alpha A]]
                            [--engine gpu|cpu] [--json]

  --model      RWKV-7 checkpoint; default: the embedded model
  --text       text to encode; or --tokens with comma-separated ids (at least 2 tokens; no
               tokenizer needed)
  --state      start from a tuned state instead of zeros (its wkv part; shifts stay zero)
  --lifted     a lifted.safetensors (docs/MATH.md §5): add its branches and report dL/dŜ0 (and dL/dg
               for writes-mode layers) at its values
  --lora       a LoRA adapter (safetensors, or .pth with --lora-alpha): run through W + (α/r)BA
               and report dL/dA, dL/dB at its values
  --engine     gpu (default, WebGPU backward) or cpu (the float64 reference)
  --json       print {"loss": L, "grads": [[…], …], "lifted": {"blocks.{l}.att.lifted_state":
               […], "blocks.{l}.att.lifted_gate": […]}, "lora": {"blocks.{l}.att.key.lora_A":
               […], …}} (S0: one array per layer, H·N·N values; Ŝ0: H·N·M values per layer;
               everything row-major)`;

const Args = z.object({
  model: z.string().default(DEFAULT_MODEL),
  text: z.string().optional(),
  tokens: z.string().optional(),
  tokenizer: z.string().optional(),
  state: z.string().optional(),
  lifted: z.string().optional(),
  lora: z.string().optional(),
  "lora-alpha": z.coerce.number().positive().optional(),
  engine: z.enum(["gpu", "cpu"]).default("gpu"),
  json: z.boolean().default(false),
});

/** Gradients of every part, per layer. */
interface Grads {
  loss: number;
  s0: ArrayLike<number>[];
  /** per layer dL/dŜ0 (H·N·M) or undefined */
  lifted?: (ArrayLike<number> | undefined)[];
  /** per writes-mode lifted layer dL/dg (H values), else undefined */
  gate?: (ArrayLike<number> | undefined)[];
  /** dL/dA and dL/dB by tensor name */
  lora?: Record<string, ArrayLike<number>>;
}

/** The JSON keys of the lifted part's gradients (the file's tensor names). */
function liftedJson(g: Grads): Record<string, number[]> | undefined {
  if (!g.lifted) return undefined;
  const out: Record<string, number[]> = {};
  g.lifted.forEach((d, l) => {
    if (d) out[`blocks.${l}.att.lifted_state`] = Array.from(d);
    const gl = g.gate?.[l];
    if (gl) out[`blocks.${l}.att.lifted_gate`] = Array.from(gl);
  });
  return out;
}

async function gpuGrads(
  weights: Parameters<typeof GpuModel.create>[1],
  cfg: RwkvConfig,
  inputs: number[],
  targets: number[],
  s0: Float32Array,
  lifted?: LiftedLayers,
  adapter?: LoraAdapter,
): Promise<Grads> {
  const gpu = await getGpu();
  const model = await GpuModel.create(gpu, weights);
  const lora = adapter ? await createLoraPart(model, adapter) : undefined;
  const bwd = await GpuBackward.create(model, lora?.backwardOptions ?? {});
  const set = lifted ? await GpuLifted.create(gpu, cfg, lifted) : undefined;
  const T = inputs.length, per = s0.length / cfg.nLayer;
  const r = await bwd.lossAndGrad({
    B: 1,
    T,
    tokens: uploadStorage(gpu, "state-grad.tokens", Uint32Array.from(inputs)),
    targets: uploadStorage(gpu, "state-grad.targets", Uint32Array.from(targets)),
    mask: uploadStorage(gpu, "state-grad.mask", new Float32Array(T).fill(1)),
    init: { kind: "shared", wkv: uploadStorage(gpu, "state-grad.s0", s0) },
    ...(set ? { lifted: { set } } : {}),
    ...(lora ? lora.backwardArgs() : {}),
  });
  const out: Grads = {
    loss: r.loss,
    s0: Array.from({ length: cfg.nLayer }, (_, l) => r.dS0Sum.slice(l * per, (l + 1) * per)),
  };
  if (set && r.dLifted) {
    const H = cfg.nHead, N = cfg.headSize;
    out.lifted = set.layers.map((ly) =>
      ly ? r.dLifted!.slice(ly.s0Off, ly.s0Off + H * N * ly.M) : undefined
    );
    out.gate = set.layers.map((ly) =>
      ly?.writes ? r.dLiftedGate!.slice(ly.gateOff, ly.gateOff + H) : undefined
    );
  }
  if (lora) {
    const rec = new Recorder(gpu, "state-grad.lora");
    lora.recordGrads(rec, r.bufs, false);
    rec.submit();
    out.lora = await lora.readGrads();
  }
  return out;
}

/** The command line as typed options, or null for --help. */
function parseCli(): z.output<typeof Args> | null {
  const s = { type: "string" } as const;
  const { values } = parseArgs({
    options: {
      model: { ...s, short: "m" },
      text: s,
      tokens: s,
      tokenizer: s,
      state: s,
      lifted: s,
      lora: s,
      "lora-alpha": s,
      engine: s,
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) return null;
  return parseWith(Args, values);
}

/** The same gradients from the float64 CPU reference (LoRA merged into the weights). */
function cpuGrads(
  weights: RwkvWeights,
  inputs: number[],
  targets: number[],
  state: RwkvState,
  lifted: LiftedLayers | undefined,
  adapter: LoraAdapter | undefined,
): Grads {
  const w = adapter ? mergeLoraWeights(weights, adapter) : weights;
  const r = refLossAndGrad(w, inputs, targets, undefined, state, {
    lifted,
    weightGrads: adapter !== undefined,
  });
  const g: Grads = { loss: r.loss, s0: r.dState.map((d) => d.wkv) };
  if (lifted) {
    g.lifted = r.dLifted;
    g.gate = lifted.map((s, l) => s?.writes ? r.dLiftedGate?.[l] : undefined);
  }
  if (adapter) g.lora = loraGradsFromRef(adapter, r.dWeights!);
  return g;
}

/** The gradients as one JSON line (--json), or the loss and |dL/dS0| per layer. */
function printGrads(g: Grads, tokens: number, a: z.output<typeof Args>): void {
  const loss = g.loss, grads = g.s0;
  if (a.json) {
    const lj = liftedJson(g);
    console.log(
      JSON.stringify({
        loss,
        grads: grads.map((x) => Array.from(x)),
        ...(lj ? { lifted: lj } : {}),
        ...(g.lora
          ? {
            lora: Object.fromEntries(
              Object.entries(g.lora).map(([k, v]) => [k, Array.from(v)]),
            ),
          }
          : {}),
      }),
    );
    return;
  }
  console.log(`${tokens} tokens, loss ${loss.toFixed(6)} (${a.engine})`);
  grads.forEach((d, l) => {
    let sq = 0;
    for (let i = 0; i < d.length; i++) sq += d[i] * d[i];
    console.log(`layer ${String(l).padStart(2)}  |dL/dS0| = ${Math.sqrt(sq).toExponential(4)}`);
  });
}

await runMain(USAGE, async () => {
  const a = parseCli();
  if (a === null) return console.log(USAGE);
  const b = await loadForInput(a);
  const ids = b.ids;
  if (ids.length < 2) throw new UsageError("need at least 2 tokens (one prediction)");
  const cfg = b.model.weights.config;
  const lifted = a.lifted ? await loadLifted(a.lifted) : undefined;
  if (lifted && lifted.length !== cfg.nLayer) {
    throw new Error(
      `${a.lifted}: lifted state for ${lifted.length} layers, the model has ${cfg.nLayer}`,
    );
  }
  const adapter = a.lora
    ? await loadLora(a.lora, { config: cfg, alpha: a["lora-alpha"] })
    : undefined;
  const inputs = ids.slice(0, -1), targets = ids.slice(1);
  const per = cfg.nHead * cfg.headSize * cfg.headSize;
  let g: Grads;
  if (a.engine === "cpu") {
    g = cpuGrads(b.model.weights, inputs, targets, b.state, lifted, adapter);
  } else {
    const flat = new Float32Array(cfg.nLayer * per);
    b.state.forEach((st, l) => flat.set(st.wkv, l * per));
    g = await gpuGrads(b.model.weights, cfg, inputs, targets, flat, lifted, adapter);
  }
  printGrads(g, ids.length, a);
});
