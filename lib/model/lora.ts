/**
 * LoRA adapters (docs/MATH.md §7, the baseline users would pick instead of state tuning): options,
 * the host-side adapter, its seeded initialisation, trainable counts and shape checks. Files
 * and the merged-checkpoint export are in `lora_file.ts`, the GPU set in `gpu_lora.ts`, the
 * maths in `lib/ref/lora.ts`.
 *
 * For each targeted Linear `W` (out, in) of each chosen layer: `W_eff = W + (α/r) B A` with
 * `A` (r, in) Kaiming-uniform (a = √5: U(−1/√in, 1/√in)) and `B` (out, r) zero, so step 0 is
 * the untuned model. Trainable numbers: `Σ r·(in + out)`.
 *
 * @module
 */
import { z } from "zod";
import { Rng } from "../util/rng.ts";
import type { RwkvConfig } from "./types.ts";

/** The Linears LoRA can adapt, by checkpoint name (after `blocks.{l}.`, before `.weight`). */
export const LORA_TARGETS = [
  "att.receptance",
  "att.key",
  "att.value",
  "att.output",
  "ffn.key",
  "ffn.value",
] as const;

/** A Linear LoRA can adapt. */
export type LoraTarget = typeof LORA_TARGETS[number];

/** The weight field (in `LayerWeights` and `GpuLayerWeights`) behind each target. */
export const LORA_FIELDS: Readonly<
  Record<LoraTarget, "Wr" | "Wk" | "Wv" | "Wo" | "ffn_key" | "ffn_value">
> = {
  "att.receptance": "Wr",
  "att.key": "Wk",
  "att.value": "Wv",
  "att.output": "Wo",
  "ffn.key": "ffn_key",
  "ffn.value": "ffn_value",
};

/** LoRA options with every default filled in. */
export interface LoraConfig {
  /** Rank r ≥ 1. Default 8. */
  r: number;
  /** α > 0; the update is scaled by α / r. Default 16. */
  alpha: number;
  /** The adapted Linears. Default all six of {@link LORA_TARGETS}. */
  targets: LoraTarget[];
  /** Which layers get adapters: "all" or layer indices. Default "all". */
  layers: "all" | number[];
  /** Seed of A's initialisation. Default 0. */
  seed: number;
  /**
   * Learning-rate factor of the LoRA part relative to the tuning schedule, whose lr (≈ 1) is
   * made for the state: Adam moves every A and B entry by about lr · lrScale a step.
   * Default 1e-2: docs/MATH.md §10's calibration trained LoRA at lr 1e-2 beside the state's 1.0.
   */
  lrScale: number;
}

/** LoRA options as a caller writes them. */
export type LoraConfigInput = Partial<LoraConfig>;

const num = (name: string) =>
  z.number({ error: (iss) => `${name} must be a number, got ${JSON.stringify(iss.input)}` });
const int = (name: string, min: number) =>
  num(name).refine((v) => Number.isInteger(v) && v >= min, {
    error: (iss) => `${name} must be an integer ≥ ${min}, got ${iss.input}`,
  });
const positive = (name: string) =>
  num(name).refine((v) => Number.isFinite(v) && v > 0, {
    error: (iss) => `${name} must be > 0, got ${iss.input}`,
  });

/**
 * LoRA options (docs/MATH.md §7); defaults in {@link DEFAULT_LORA}.
 *
 * @example
 * ```ts
 * import { LoraConfigSchema } from "./lora.ts";
 * const c = LoraConfigSchema.parse({ r: 4 });
 * console.assert(c.alpha === 16 && c.targets.length === 6 && c.layers === "all");
 * ```
 */
export const LoraConfigSchema: z.ZodType<LoraConfig, LoraConfigInput> = z.object({
  r: int("r", 1).default(8),
  alpha: positive("alpha").default(16),
  targets: z.array(
    z.enum(LORA_TARGETS, {
      error: (iss) =>
        `unknown LoRA target ${JSON.stringify(iss.input)}; expected one of ${
          LORA_TARGETS.join(", ")
        }`,
    }),
  ).min(1, { error: "targets must name at least one Linear" })
    .refine((t) => new Set(t).size === t.length, { error: "targets must not repeat" })
    .default([...LORA_TARGETS]),
  layers: z.union([z.literal("all"), z.array(int("layers[i]", 0)).min(1)]).default("all"),
  seed: int("seed", 0).default(0),
  lrScale: positive("lrScale").default(1e-2),
}).strict();

/** The LoRA defaults (r 8, α 16, all six targets, every layer, seed 0, lrScale 1e-2). */
export const DEFAULT_LORA: LoraConfig = LoraConfigSchema.parse({});

/** Error for a bad LoRA option, spec string, adapter or file; the message says the fix. */
export class LoraError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "LoraError";
  }
}

/** Parse LoRA options, with the zod issues joined into one {@link LoraError}. */
export function parseLoraConfig(input: unknown, source = "LoRA options"): LoraConfig {
  const r = LoraConfigSchema.safeParse(input);
  if (r.success) return r.data;
  const msg = r.error.issues.map((i) => (i.path.length ? `${i.path.join(".")}: ` : "") + i.message);
  throw new LoraError(`${source}: ${msg.join("; ")}`);
}

const SPEC_KEYS = ["r", "alpha", "targets", "layers", "seed", "lrScale"] as const;

/**
 * Parse a CLI spec such as `"r=8,alpha=16,targets=att.key+att.value,layers=0+1"` (keys
 * r, alpha, targets, layers, seed, lrScale; lists joined with `+`; `layers=all`).
 *
 * @throws {LoraError} quoting the bad entry or value
 * @example
 * ```ts
 * import { parseLoraSpec } from "./lora.ts";
 * const c = parseLoraSpec("r=4,targets=att.key+ffn.value,layers=0+2");
 * console.assert(c.r === 4 && c.targets[1] === "ffn.value" && c.layers[1] === 2);
 * ```
 */
export function parseLoraSpec(spec: string): LoraConfig {
  const out: Record<string, unknown> = {};
  for (const part of spec.split(",").map((s) => s.trim()).filter((s) => s !== "")) {
    const eq = part.indexOf("=");
    const key = eq < 0 ? part : part.slice(0, eq).trim(), value = part.slice(eq + 1).trim();
    if (eq < 0 || !(SPEC_KEYS as readonly string[]).includes(key)) {
      throw new LoraError(
        `--lora: bad entry ${JSON.stringify(part)}; write key=value with keys ` +
          `${SPEC_KEYS.join(", ")} (e.g. "r=8,alpha=16,targets=att.key+att.value,layers=0+1")`,
      );
    }
    if (key in out) throw new LoraError(`--lora: ${key} is given twice in ${JSON.stringify(spec)}`);
    const toNum = (s: string) => {
      const v = s === "" ? NaN : Number(s);
      if (!Number.isFinite(v)) {
        throw new LoraError(`--lora: ${key}=${JSON.stringify(s)} is not a number`);
      }
      return v;
    };
    if (key === "targets") out.targets = value.split("+").map((s) => s.trim());
    else if (key === "layers") out.layers = value === "all" ? "all" : value.split("+").map(toNum);
    else out[key] = toNum(value);
  }
  return parseLoraConfig(out, `--lora ${JSON.stringify(spec)}`);
}

/** (out, in) of target `t` in a model of `cfg`. */
export function loraTargetShape(cfg: RwkvConfig, t: LoraTarget): { out: number; in: number } {
  const C = cfg.nEmbd, F = cfg.dimFfn;
  if (t === "ffn.key") return { out: F, in: C };
  if (t === "ffn.value") return { out: C, in: F };
  return { out: C, in: C };
}

/**
 * The adapted layers of `cfg` that `layers` names, ascending.
 *
 * @throws {LoraError} for an index outside [0, L)
 */
export function loraLayers(cfg: RwkvConfig, layers: LoraConfig["layers"]): number[] {
  if (layers === "all") return Array.from({ length: cfg.nLayer }, (_, l) => l);
  for (const l of layers) {
    if (l >= cfg.nLayer) {
      throw new LoraError(
        `LoRA layers: layer ${l} does not exist in a model of ${cfg.nLayer} layers; ` +
          `use indices 0…${cfg.nLayer - 1} or "all"`,
      );
    }
  }
  return [...new Set(layers)].sort((a, b) => a - b);
}

/** One adapted Linear: `blocks.{layer}.{target}` with A (r, in) and B (out, r). */
export interface LoraModule {
  layer: number;
  target: LoraTarget;
  out: number;
  in: number;
  /** (r, in) row-major */
  A: Float32Array;
  /** (out, r) row-major */
  B: Float32Array;
}

/** A LoRA adapter on the host: rank, α and its modules (by layer, then target order). */
export interface LoraAdapter {
  r: number;
  alpha: number;
  modules: LoraModule[];
}

/** File / tensor name of a module's A or B: `blocks.{l}.{att|ffn}.{name}.lora_A`. */
export function loraTensorName(layer: number, target: LoraTarget, which: "A" | "B"): string {
  return `blocks.${layer}.${target}.lora_${which}`;
}

/** Σ r·(in + out) over the modules `lora` would create on a model of `cfg`. */
export function loraTrainableCount(cfg: RwkvConfig, lora: LoraConfigInput = {}): number {
  const c = parseLoraConfig(lora);
  return c.r * perRankCount(cfg, c);
}

function perRankCount(cfg: RwkvConfig, c: LoraConfig): number {
  const per = c.targets.reduce(
    (s, t) => s + loraTargetShape(cfg, t).in + loraTargetShape(cfg, t).out,
    0,
  );
  return per * loraLayers(cfg, c.layers).length;
}

/**
 * "Equal parameters" (docs/MATH.md §7): the rank r ≥ 1 whose trainable count (targets and layers of
 * `lora`) is nearest `count` (ties go to the smaller r).
 *
 * @param count the other variant's trainable count
 * @example
 * ```ts
 * import { rankForCount } from "./lora.ts";
 * import { tinyConfig } from "./random.ts";
 * const cfg = tinyConfig({ nLayer: 1, nEmbd: 64, headSize: 64, dimFfn: 256 });
 * console.assert(rankForCount(cfg, 64 * 64, { targets: ["att.key"] }) === 32);
 * ```
 */
export function rankForCount(cfg: RwkvConfig, count: number, lora: LoraConfigInput = {}): number {
  if (!(count >= 0) || !Number.isFinite(count)) {
    throw new LoraError(`rankForCount: count ${count} must be a finite number ≥ 0`);
  }
  const per = perRankCount(cfg, parseLoraConfig({ ...lora, r: 1 }));
  const lo = Math.max(1, Math.floor(count / per)), hi = lo + 1;
  return Math.abs(hi * per - count) < Math.abs(lo * per - count) ? hi : lo;
}

/**
 * A fresh adapter for a model of `cfg`: A Kaiming-uniform (a = √5, i.e. U(−1/√in, 1/√in)) from
 * `Rng(seed)`, drawn module by module in order; B zero.
 *
 * @example
 * ```ts
 * import { initLora } from "./lora.ts";
 * import { tinyConfig } from "./random.ts";
 * const a = initLora(tinyConfig(), { r: 2, targets: ["att.key"] });
 * console.assert(a.modules.every((m) => m.B.every((x) => x === 0)));
 * ```
 */
export function initLora(cfg: RwkvConfig, lora: LoraConfigInput = {}): LoraAdapter {
  const c = parseLoraConfig(lora);
  const rng = new Rng(c.seed);
  const modules: LoraModule[] = [];
  for (const layer of loraLayers(cfg, c.layers)) {
    for (const target of LORA_TARGETS.filter((t) => c.targets.includes(t))) {
      const { out, in: inp } = loraTargetShape(cfg, target), bound = 1 / Math.sqrt(inp);
      const A = new Float32Array(c.r * inp);
      for (let i = 0; i < A.length; i++) A[i] = rng.uniform(-bound, bound);
      modules.push({ layer, target, out, in: inp, A, B: new Float32Array(out * c.r) });
    }
  }
  return { r: c.r, alpha: c.alpha, modules };
}

/**
 * Check an adapter against a model of `cfg`: rank and α valid, every module's layer and
 * target present and its A (r, in) and B (out, r) the model's sizes, no module twice.
 *
 * @param source a name for messages (the file)
 * @throws {LoraError} naming the tensor, the shapes and the fix
 */
export function checkLoraAdapter(adapter: LoraAdapter, cfg: RwkvConfig, source = "adapter"): void {
  const { r, alpha } = adapter;
  if (!Number.isInteger(r) || r < 1) throw new LoraError(`${source}: rank r = ${r}; expected ≥ 1`);
  if (!(alpha > 0)) throw new LoraError(`${source}: alpha = ${alpha}; expected > 0`);
  if (adapter.modules.length === 0) throw new LoraError(`${source}: the adapter has no module`);
  const seen = new Set<string>();
  for (const m of adapter.modules) {
    const a = loraTensorName(m.layer, m.target, "A");
    if (seen.has(a)) throw new LoraError(`${source}: ${a} appears twice`);
    seen.add(a);
    if (!LORA_TARGETS.includes(m.target)) {
      throw new LoraError(
        `${source}: unknown target ${JSON.stringify(m.target)}; expected ${
          LORA_TARGETS.join(", ")
        }`,
      );
    }
    if (!Number.isInteger(m.layer) || m.layer < 0 || m.layer >= cfg.nLayer) {
      throw new LoraError(
        `${source}: ${a} is for layer ${m.layer} but the model has ${cfg.nLayer} layers; ` +
          `load the adapter with the model it was trained on`,
      );
    }
    const want = loraTargetShape(cfg, m.target);
    const bad = (name: string, shape: number[], n: number) =>
      new LoraError(
        `${source}: ${name} holds ${n} values but this model (C ${cfg.nEmbd}, F ` +
          `${cfg.dimFfn}) needs [${shape.join(", ")}] = ${shape[0] * shape[1]} at rank ${r}; ` +
          `load the adapter with the model it was trained on`,
      );
    if (m.in !== want.in || m.A.length !== r * want.in) throw bad(a, [r, want.in], m.A.length);
    if (m.out !== want.out || m.B.length !== want.out * r) {
      throw bad(loraTensorName(m.layer, m.target, "B"), [want.out, r], m.B.length);
    }
  }
}
