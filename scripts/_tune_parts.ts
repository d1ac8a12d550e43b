/**
 * The part flags of `deno task tune` beyond S0 (`--lifted` with `--dbp`, `--lora`): each parses
 * its value before anything is loaded, then builds its part once the model and data are there,
 * and says how the tuned part is written into `--out`.
 *
 * @module
 */
import { z } from "zod";
import type { GpuModel } from "../lib/model/gpu_model.ts";
import type { Dataset } from "../lib/train/data.ts";
import type { TrainablePart } from "../lib/train/parts.ts";
import { loadLifted } from "../lib/model/gpu_lifted.ts";
import type { RwkvWeights } from "../lib/model/types.ts";
import {
  type DbpConfig,
  DbpConfigSchema,
  type LiftedConfig,
  LiftedConfigSchema,
} from "../lib/parts/config.ts";
import { LiftedPart } from "../lib/parts/lifted_part.ts";
import { createLoraPart } from "../lib/parts/lora.ts";
import { type LoraConfig, LoraError, parseLoraSpec } from "../lib/model/lora.ts";
import { loadLora, saveLora } from "../lib/model/lora_file.ts";
import { initLiftedLayers } from "../lib/parts/support.ts";
import { Rng } from "../lib/util/rng.ts";
import { parseKeyValues, UsageError } from "./_cli.ts";

/** What a part flag builds: the part, and how its result is written into --out. */
export interface BuiltPart {
  part: TrainablePart;
  /** write the tuned part into `out`; returns the path */
  save(out: string): Promise<string>;
}

/** What a part flag's builder may use. */
export interface PartContext {
  model: GpuModel;
  weights: RwkvWeights;
  ds: Dataset;
}

/**
 * A part flag beyond S0: `parse` checks the flag's value before anything is loaded (usage
 * errors come first), `build` makes the part once the model and data are there. Adding a
 * flag is one more entry in {@link PART_FLAGS}, plus its `parseArgs` option and `Args` field in
 * tune.ts.
 */
export interface PartFlag<Spec> {
  flag: "lifted" | "lora";
  parse(value: string, flags: { dbp?: string }): Spec;
  build(spec: Spec, c: PartContext): Promise<BuiltPart>;
}

/** `--lifted` (and its `--dbp`) as parsed. */
interface LiftedSpec {
  file?: string;
  config?: LiftedConfig;
  lrScale: number;
  dbp: DbpConfig | false;
}

const LIFTED_FLAG: PartFlag<LiftedSpec> = {
  flag: "lifted",
  parse: parseLifted,
  build: buildLifted,
};

/** `--lora` as parsed: an adapter file (α for a .pth) or a fresh adapter's options. */
interface LoraSpec {
  file?: string;
  alpha?: number;
  config?: LoraConfig;
}

const LORA_FLAG: PartFlag<LoraSpec> = {
  flag: "lora",
  parse(v) {
    const fileSpec = /^file=([^,]+)(?:,alpha=([^,]+))?$/.exec(v);
    if (fileSpec) {
      const alpha = fileSpec[2] === undefined ? undefined : Number(fileSpec[2]);
      if (alpha !== undefined && !(alpha > 0)) {
        throw new UsageError(`--lora: alpha must be a positive number, got "${fileSpec[2]}"`);
      }
      return { file: fileSpec[1], alpha };
    }
    if (!v.includes("=")) return { file: v };
    try {
      return { config: parseLoraSpec(v) };
    } catch (e) {
      if (e instanceof LoraError) throw new UsageError(`--lora "${v}": ${e.message}`);
      throw e;
    }
  },
  async build(spec, c) {
    const source = spec.file !== undefined
      ? await loadLora(spec.file, { config: c.weights.config, alpha: spec.alpha })
      : spec.config!;
    const part = await createLoraPart(c.model, source);
    return {
      part,
      save: async (out) => {
        await saveLora(`${out}/lora.safetensors`, await part.adapter());
        return `${out}/lora.safetensors`;
      },
    };
  },
};

/** Every part flag, in the order their parts join the run. */
// deno-lint-ignore no-explicit-any
export const PART_FLAGS: PartFlag<any>[] = [LIFTED_FLAG, LORA_FLAG];

/** `--lifted FILE | file=FILE,lrScale=… | on | key=value,…` and `--dbp on | key=value,…`. */
function parseLifted(v: string, a: { dbp?: string }): LiftedSpec {
  const raw = v.includes("=") || v === "on"
    ? parseKeyValues("--lifted", v, z.record(z.string(), z.unknown()))
    : { file: v };
  const { lrScale: lr, file, ...rest } = raw;
  const lrScale = parseKeyValues(
    "--lifted",
    lr === undefined ? "on" : `lrScale=${lr}`,
    z.object({ lrScale: z.number().min(0).default(1) }),
  ).lrScale;
  const dbp = a.dbp === undefined ? false : parseKeyValues("--dbp", a.dbp, DbpConfigSchema);
  if (file !== undefined) {
    if (Object.keys(rest).length) {
      throw new UsageError(`--lifted: with a file only lrScale may be given, got "${v}"`);
    }
    return { file: String(file), lrScale, dbp };
  }
  if (typeof rest.layers === "number") rest.layers = [rest.layers];
  const r = LiftedConfigSchema.safeParse({ ...rest, enabled: true });
  if (!r.success) {
    throw new UsageError(`--lifted "${v}": ${r.error.issues.map((i) => i.message).join("; ")}`);
  }
  return { config: r.data, lrScale, dbp };
}

/** The lifted part: from the file, or initialised on calibration rows of the training set. */
async function buildLifted(spec: LiftedSpec, c: PartContext): Promise<BuiltPart> {
  let layers;
  if (spec.file !== undefined) layers = await loadLifted(spec.file);
  else {
    const cfg = spec.config!, train = c.ds.train;
    const order = new Rng(cfg.seed * 7919 + 17).shuffle(train.map((_, i) => i));
    const calib = order.slice(0, cfg.calibrationSequences).map((i) => train[i].ids);
    layers = initLiftedLayers(c.weights, calib, cfg);
  }
  const part = await LiftedPart.create(c.model, { layers, dbp: spec.dbp, lrScale: spec.lrScale });
  return {
    part,
    save: async (out) => {
      await part.save(`${out}/lifted.safetensors`);
      return `${out}/lifted.safetensors`;
    },
  };
}
