/**
 * The CPU engine's twins of the lifted and LoRA parts ({@link CpuPart}s for `cpuTune`): the same
 * tensors, learning-rate scales and DBP step as `LiftedPart` and `LoraPart` on the GPU, computed
 * by the float64 reference. Ŝ0 and the gate live in one flat tensor each (every lifted layer in
 * order); the reference's lifted layers view into them, so Adam's in-place updates are what the
 * next step reads.
 *
 * @module
 */
import { type DbpConfig, type DbpConfigInput, DbpConfigSchema } from "../parts/config.ts";
import { dbpLayerStep, type DbpStepVectors } from "../parts/dbp.ts";
import type { LiftedLayers, LiftedState } from "../ref/lifted_types.ts";
import type { RefModelCache } from "../ref/model.ts";
import type { RwkvWeights } from "../model/types.ts";
import { type LoraAdapter, loraTensorName } from "../model/lora.ts";
import { loraGradsFromRef, mergeLoraWeights } from "../model/lora_file.ts";
import { Rng } from "../util/rng.ts";
import type { CpuPart, CpuPartTensor } from "./cpu_tune.ts";

/** A lifted CPU part and what it trained. */
export interface CpuLiftedPart extends CpuPart {
  /** the current lifted layers (Ŝ0 and gate views into the trained tensors, R after DBP) */
  layers(): LiftedLayers;
  /** DBP's decorrelation and correlation losses of the last step (means over layers, heads) */
  lastDbp?: { decorrelationLoss: number; correlationLoss: number };
}

/**
 * Every lifted layer's Ŝ0 (and gate) packed into one flat tensor each, in layer order, with
 * per-layer views into them (R copied) and each layer's offset into the Ŝ0 tensor.
 */
function packLifted(layers: LiftedLayers, H: number) {
  const idx = layers.flatMap((s, l) => (s ? [l] : []));
  if (idx.length === 0) throw new RangeError("cpuLiftedPart: no layer has a lifted branch");
  const size = idx.reduce((n, l) => n + layers[l]!.s0.length, 0);
  const writes = idx.some((l) => layers[l]!.writes);
  const s0 = new Float64Array(size), gate = new Float64Array(writes ? idx.length * H : 0);
  const views: LiftedLayers = new Array(layers.length).fill(undefined);
  let off = 0;
  const offsets: number[] = [];
  idx.forEach((l, j) => {
    offsets.push(off);
    const s = layers[l]!, n = s.s0.length;
    s0.set(s.s0, off);
    const g = gate.subarray(j * H, (j + 1) * H);
    if (s.writes && s.gate) g.set(s.gate);
    views[l] = {
      ...s,
      s0: s0.subarray(off, off + n),
      R: Float64Array.from(s.R),
      ...(s.writes ? { gate: g } : {}),
    };
    off += n;
  });
  return { idx, s0, gate, views, offsets, writes };
}

/**
 * Ŝ0 of every lifted layer (and the gate in writes mode), trained at `lrScale` of the
 * schedule; with `dbp`, R moves after each step on the step's kk, r (and k) vectors, read from
 * the reference forward of that step (as the GPU reads them from its forward).
 */
export function cpuLiftedPart(
  weights: RwkvWeights,
  layers: LiftedLayers,
  o: { lrScale?: number; dbp?: DbpConfigInput | false } = {},
): CpuLiftedPart {
  const { nHead: H, headSize: N } = weights.config;
  const { idx, s0, gate, views, offsets, writes } = packLifted(layers, H);
  const dbp: DbpConfig | undefined = o.dbp === undefined || o.dbp === false
    ? undefined
    : DbpConfigSchema.parse(o.dbp);
  const tensors: CpuPartTensor[] = [{ name: "s0", param: s0 }];
  if (writes) tensors.push({ name: "gate", param: gate });
  let vectors: DbpStepVectors[][] = idx.map(() => []);
  const collect = (cache: RefModelCache) =>
    idx.forEach((l, j) => {
      const c = cache.layers[l].att;
      vectors[j].push({ kk: c.kk, r: c.r, ...(views[l]!.writes ? { k: c.k } : {}) });
    });
  const part: CpuLiftedPart = {
    kind: "lifted",
    tensors,
    lrScale: o.lrScale ?? 1,
    args: () => ({ refOptions: { lifted: views, ...(dbp ? { onForward: collect } : {}) } }),
    grads(res, out, accumulate) {
      if (!res.dLifted) throw new Error("cpuLiftedPart: the reference returned no dL/dŜ0");
      idx.forEach((l, j) => {
        const d = res.dLifted![l]!, g = out[0], o0 = offsets[j];
        for (let i = 0; i < d.length; i++) g[o0 + i] = (accumulate ? g[o0 + i] : 0) + d[i];
        if (!writes) return;
        const dg = res.dLiftedGate?.[l], G = out[1];
        for (let h = 0; h < H; h++) {
          G[j * H + h] = (accumulate ? G[j * H + h] : 0) + (dg?.[h] ?? 0);
        }
      });
    },
    afterUpdate(step) {
      if (!dbp) return;
      const rng = new Rng(dbp.seed * 1_000_003 + step);
      let dec = 0, cor = 0;
      idx.forEach((l, j) => {
        const s = views[l]! as LiftedState & { R: Float64Array };
        const r = dbpLayerStep(s, H, N, vectors[j], dbp, rng);
        s.R.set(r.R);
        dec += r.meanLoss / idx.length;
        cor += r.meanCorrLoss / idx.length;
      });
      vectors = idx.map(() => []);
      part.lastDbp = { decorrelationLoss: dec, correlationLoss: cor };
    },
    historyFields: () => part.lastDbp ?? {},
    layers: () => views,
  };
  return part;
}

/** A LoRA CPU part and what it trained. */
export interface CpuLoraPart extends CpuPart {
  /** the adapter with its current A and B (f32 copies) */
  adapter(): LoraAdapter;
}

/**
 * Every A and B of `adapter` (one tensor each, named as in the files), trained at `lrScale`;
 * each step runs the model with `W + (α/r) B A` merged and maps the reference's weight
 * gradients onto A and B (`loraGradsFromRef`).
 */
export function cpuLoraPart(
  weights: RwkvWeights,
  adapter: LoraAdapter,
  o: { lrScale?: number } = {},
): CpuLoraPart {
  const names = adapter.modules.flatMap((m) => [
    loraTensorName(m.layer, m.target, "A"),
    loraTensorName(m.layer, m.target, "B"),
  ]);
  const tensors: CpuPartTensor[] = adapter.modules.flatMap((m, i) => [
    { name: names[2 * i], param: Float64Array.from(m.A) },
    { name: names[2 * i + 1], param: Float64Array.from(m.B) },
  ]);
  const current = (): LoraAdapter => ({
    ...adapter,
    modules: adapter.modules.map((m, i) => ({
      ...m,
      A: Float32Array.from(tensors[2 * i].param),
      B: Float32Array.from(tensors[2 * i + 1].param),
    })),
  });
  let merged: LoraAdapter | undefined;
  return {
    kind: "lora",
    tensors,
    lrScale: o.lrScale ?? 1e-2,
    args() {
      merged = current();
      return { weights: mergeLoraWeights(weights, merged), refOptions: { weightGrads: true } };
    },
    grads(res, out, accumulate) {
      if (!res.dWeights) throw new Error("cpuLoraPart: the reference returned no weight gradients");
      const g = loraGradsFromRef(merged!, res.dWeights);
      names.forEach((n, i) => {
        const src = g[n], dst = out[i];
        for (let k = 0; k < dst.length; k++) dst[k] = (accumulate ? dst[k] : 0) + src[k];
      });
    },
    adapter: current,
  };
}
