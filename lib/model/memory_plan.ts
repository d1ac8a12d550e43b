/**
 * The GPU memory plan of a forward or a state-tuning step: bytes per category, computed from the
 * same size formulas as the allocation code (every `createStorage` / `createBuffer` reached from
 * `GpuModel.create`, `GpuModel.forward`, `GpuBackward.create/record` and `tuneState`), so the
 * plan equals what a run allocates (tests/memory_plan_test.ts checks it buffer by buffer).
 *
 * Categories:
 * - weights: the model's matrices (row chunks ≤ one storage binding) and packed vectors;
 * - activations: the residuals kept for the whole pass (state tuning: the L + 1 saved layer
 *   inputs and v_first, the per-layer recomputation's checkpoints; forward: the ping-pong pair);
 * - workspace: everything reused by every layer (the layer intermediates, the gradient scratch,
 *   the WKV backward scratch, the head + cross-entropy row block, token buffers, kernel stages);
 * - state: the recurrent state of the B sequences (and, tuning, the trained S0);
 * - gradients: dL/dS0 (per sequence, batch sum, the step's accumulator) and dL/d shift states;
 * - optimiser: Adam's moments of S0 and the gradient-norm scratch.
 *
 * Not counted: the recorders' uniform params (256 B per dispatch of the largest submit, one
 * buffer per device kept for the bind-group cache: `lib/gpu/bind_cache.ts`) and readback
 * staging, a few MB at the 1.5B shape.
 *
 * f16 weights (`weightDtype: "f16"` of `uploadWeights`): the matrices the matmul kernels read
 * (every Linear, the low-rank factors, the head) at 2 bytes per value; the embedding (gathered
 * row by row), the packed vectors and everything else stay f32.
 *
 * @module
 */
import { z } from "zod";
import { roundUp } from "../gpu/buffers.ts";
import { NORM_PARTS } from "../kernels/adam.ts";
import { WKV_WINDOW_BYTES } from "../kernels/wkv7.ts";
import { npot } from "../kernels/matmul_tex.ts";
import { LAYER_VECS, MODEL_VECS } from "./gpu_weights.ts";
import type { RwkvConfig } from "./types.ts";
import {
  gradWorkspaceWidths,
  layerWorkspaceWidths,
  matrixChunks,
  matrixShapes,
  storage,
  wkvScratchElems,
} from "./memory_sizes.ts";

export { configParams } from "./memory_sizes.ts";

/** The categories of a plan, in display order. */
export const PLAN_CATEGORIES = [
  "weights",
  "activations",
  "workspace",
  "state",
  "gradients",
  "optimiser",
] as const;

/** One category of {@link PLAN_CATEGORIES}. */
export type PlanCategory = typeof PLAN_CATEGORIES[number];

/** 8 GB as decimal bytes (8·10⁹), the budget of issue 6. */
export const GB8 = 8e9;

/** WebGPU's default `maxStorageBufferBindingSize` (128 MiB), the plan's default. */
export const DEFAULT_BINDING_BYTES = 2 ** 27;

/** Options of {@link memoryPlan}. */
export const MemoryPlanOptionsSchema = z.object({
  mode: z.enum(["forward", "state-tuning"]),
  /** sequences per (micro-)batch */
  B: z.number().int().positive().default(1),
  /** tokens per sequence */
  T: z.number().int().positive(),
  weightDtype: z.enum(["f32", "f16"]).default("f32"),
  /** forward only: logits of the last token of each sequence (default) or of every token */
  logits: z.enum(["last", "all"]).default("last"),
  /** state tuning only: micro-batches per optimiser step (one token buffer set each) */
  gradAccum: z.number().int().positive().default(1),
  /** the adapter's binding limit: sets the weight chunks and the head's row block */
  maxStorageBufferBindingSize: z.number().int().positive().default(DEFAULT_BINDING_BYTES),
  /**
   * texture copies of the weight matrices (`UploadOptions.textures`, on by default on software
   * adapters): the matrices whose columns are a multiple of 4 (and at most 4 ×
   * `maxTextureDimension2D`) again, in `weightDtype`, plus the matmul kernels' activation
   * textures (at most the largest x of a product, rgba32float)
   */
  textures: z.boolean().default(false),
  maxTextureDimension2D: z.number().int().positive().default(16384),
});

/** Input of {@link memoryPlan} (defaults filled by {@link MemoryPlanOptionsSchema}). */
export type MemoryPlanOptions = z.input<typeof MemoryPlanOptionsSchema>;

/** One group of buffers of a plan. */
export interface PlanItem {
  category: PlanCategory;
  /** the buffers' labels (or label pattern) as the allocation code names them */
  name: string;
  /** total bytes, each buffer rounded like `createStorage` */
  bytes: number;
  /** number of buffers */
  count: number;
  /** the largest single buffer */
  largest: number;
  /** true when a kernel binds the whole buffer as storage (must fit one binding) */
  binding: boolean;
}

/** Bytes per category of one step, with the items they sum. */
export interface MemoryPlan {
  mode: "forward" | "state-tuning";
  B: number;
  T: number;
  weightDtype: "f32" | "f16";
  bytes: Record<PlanCategory, number>;
  total: number;
  items: PlanItem[];
}

/** Collects items; `add` takes the category, the name and each buffer's size. */
class Items {
  readonly list: PlanItem[] = [];
  add(category: PlanCategory, name: string, sizes: number[], binding = true): void {
    const bytes = sizes.reduce((s, b) => s + b, 0);
    const largest = Math.max(0, ...sizes);
    this.list.push({ category, name, bytes, count: sizes.length, largest, binding });
  }
}

/** Weight buffers: chunked matrices and packed vectors. */
function addWeights(it: Items, cfg: RwkvConfig, bpe: number, limit: number): void {
  // the first shape is the embedding, always f32
  const chunks = matrixShapes(cfg).flatMap(([r, c], i) =>
    matrixChunks(r, c, i === 0 ? 4 : bpe, limit)
  );
  it.add("weights", "weight matrices (row chunks)", chunks);
  const C = cfg.nEmbd;
  const layer = storage(LAYER_VECS.length * C * 4);
  const vecs = [storage(MODEL_VECS.length * C * 4), ...Array(cfg.nLayer).fill(layer)];
  it.add("weights", "model.vecs, blocks.*.vecs", vecs);
}

/**
 * Texture copies of the weights (`uploadMatrixTextures`: the embedding is never a matmul operand
 * and has none) and an estimate of the activation textures (`MatmulTex`: one per distinct x
 * shape, dimensions rounded up to 64 texels / rows): B·T rows of the widths the products read,
 * the low-rank sizes (≤ 256 columns, 64 texels), C, F and, in the backward, V.
 */
function addTextures(it: Items, cfg: RwkvConfig, o: z.infer<typeof MemoryPlanOptionsSchema>) {
  const bpe = o.weightDtype === "f16" ? 2 : 4, max = o.maxTextureDimension2D;
  const per = (max - 4) & ~3; // rows per texture part (uploadMatrixTextures)
  const parts = (rows: number) =>
    Array.from({ length: Math.ceil(rows / per) }, (_, i) => Math.min(per, rows - i * per));
  const tex = matrixShapes(cfg).slice(1).filter(([, c]) => c % 4 === 0 && npot(c / 4) <= max)
    .flatMap(([r, c]) => parts(r).map((n) => npot(c / 4) * npot(n) * 4 * bpe));
  it.add("weights", "weight matrix textures (*.tex)", tex, false);
  const rows = npot(roundUp(o.B * o.T, 64));
  const ks = [4, cfg.nEmbd, cfg.dimFfn, ...(o.mode === "state-tuning" ? [cfg.vocabSize] : [])];
  const widths = new Set(ks.flatMap(parts).map((k) => npot(roundUp(k / 4, 64))));
  const xs = [...widths].map((w) => w * rows * 16);
  it.add("workspace", "matmul_tex.x.* (activation textures)", xs, false);
  it.add("workspace", "matmul_tex.nores (the texture kernels' empty res binding)", [16]);
}

/** The model's layer workspace (`GpuModel.workspace(rows)`; x0, x1, vFirst are added apart). */
function addModelWorkspace(it: Items, cfg: RwkvConfig, rows: number, limit: number): void {
  const ws = layerWorkspaceWidths(cfg).map((w) => rows * w * 4);
  const big = Math.max(...ws);
  if (big > limit) {
    throw new RangeError(
      `the layer workspace needs a ${big}-byte buffer for B·T = ${rows} rows, more than one ` +
        `storage binding (${limit}); use fewer tokens per step`,
    );
  }
  it.add("workspace", "ws.* (layer intermediates)", ws.map(storage));
}

/** A GpuState of B sequences: att, wkv, ffn. */
function stateSizes(cfg: RwkvConfig, B: number): number[] {
  const { nLayer: L, nEmbd: C, nHead: H, headSize: N } = cfg;
  return [storage(L * B * C * 4), storage(L * B * H * N * N * 4), storage(L * B * C * 4)];
}

/** Rows of the head + cross-entropy block (`HeadCeKernel.blockRows`, 64 MiB budget). */
function headBlockRows(rows: number, V: number, limit: number): number {
  const cap = Math.min(64 * 2 ** 20, limit);
  return Math.max(1, Math.min(rows, Math.floor(cap / (V * 4))));
}

function forwardItems(it: Items, cfg: RwkvConfig, o: z.infer<typeof MemoryPlanOptionsSchema>) {
  const { B, T } = o, rows = B * T, C = cfg.nEmbd, limit = o.maxStorageBufferBindingSize;
  const rc = storage(rows * C * 4);
  it.add("activations", "model.x0, model.x1, model.vFirst", [rc, rc, rc]);
  addModelWorkspace(it, cfg, rows, limit);
  const out = o.logits === "last" ? B : rows;
  if (out * cfg.vocabSize * 4 > limit) {
    throw new RangeError(
      `${out} rows × V ${cfg.vocabSize} logits exceed one storage binding (${limit}); ` +
        `ask for logits "last" or feed fewer tokens per call`,
    );
  }
  it.add("workspace", "model.tokens, model.xNorm, model.logits", [
    storage(rows * 4),
    storage(out * C * 4),
    storage(out * cfg.vocabSize * 4),
  ]);
  it.add("workspace", "wkv7.stage (uniform windows)", [6 * WKV_WINDOW_BYTES], false);
  it.add("state", "state.att, state.wkv, state.ffn", stateSizes(cfg, B));
}

/** The state-tuning step: saved activations, workspaces and scratch, then states and gradients. */
function tuningItems(it: Items, cfg: RwkvConfig, o: z.infer<typeof MemoryPlanOptionsSchema>) {
  const { B, T, gradAccum } = o, rows = B * T, limit = o.maxStorageBufferBindingSize;
  const { nLayer: L, nEmbd: C, nHead: H, headSize: N, vocabSize: V } = cfg;
  const rc = storage(rows * C * 4);
  it.add("activations", "bwd.x0 … bwd.xL (saved layer inputs)", Array(L + 1).fill(rc));
  it.add("activations", "bwd.vFirst", [rc]);
  addModelWorkspace(it, cfg, rows, limit);
  it.add("workspace", "model.x0, model.x1, model.vFirst (forward ping-pong)", [rc, rc, rc]);
  const grad = gradWorkspaceWidths(cfg).map((w) => storage(rows * w * 4));
  it.add("workspace", "grad.* (layer gradient scratch)", grad);
  const wkv = wkvScratchElems(B, T, H, N);
  if (wkv.ckOff * 4 > limit || wkv.ckElems * 4 > limit) {
    throw new RangeError(
      `the WKV backward scratch for B = ${B}, T = ${T}, H = ${H} needs more than one storage ` +
        `binding (${limit}) per region; use a smaller batch or shorter sequences`,
    );
  }
  it.add("workspace", "grad.wkvScratch", [storage(wkv.total * 4)]);
  it.add("workspace", "bwd.xNorm, bwd.dx, bwd.dvFirst", [rc, rc, rc]);
  it.add("workspace", "head_ce.logits (row block)", [
    storage(headBlockRows(rows, V, limit) * V * 4),
  ]);
  it.add("workspace", "bwd.nll, bwd.stats, tune.stats", [
    storage(rows * 4),
    16,
    storage(16 * gradAccum),
  ]);
  const tok = storage(Math.max(rows, 256) * 4);
  it.add("workspace", "tune.tokens/targets/mask (per micro-batch)", Array(3 * gradAccum).fill(tok));
  it.add("workspace", "wkv7.stage, wkv7_backward.stage (uniform windows)", [
    6 * WKV_WINDOW_BYTES,
    9 * WKV_WINDOW_BYTES,
  ], false);
  it.add("workspace", "kernel placeholders (noxhat, unused, noclip)", [16, 16, 16, 16]);
  tuningStateItems(it, cfg, B);
}

/** The state-tuning step's states, gradients and Adam moments (S0 is the trained tensor). */
function tuningStateItems(it: Items, cfg: RwkvConfig, B: number): void {
  const { nLayer: L, nEmbd: C, nHead: H, headSize: N } = cfg;
  const n = L * H * N * N;
  it.add("state", "bwd.work.att/wkv/ffn (per-sequence state)", stateSizes(cfg, B));
  it.add("state", "tune.S0", [storage(n * 4)]);
  it.add("gradients", "bwd.dS0 (per sequence), bwd.dS0Sum, tune.grad", [
    storage(L * B * H * N * N * 4),
    storage(n * 4),
    storage(n * 4),
  ]);
  it.add("gradients", "bwd.dShiftAtt, bwd.dShiftFfn", [
    storage(L * B * C * 4),
    storage(L * B * C * 4),
  ]);
  it.add("optimiser", "tune.state.s0.m/v (Adam moments)", [storage(n * 4), storage(n * 4)]);
  // one gradient-norm block per trained tensor: S0 only here
  it.add("optimiser", "tune.norm, adam.partials", [16, storage(1 * NORM_PARTS * 4)]);
}

/**
 * The GPU memory a forward or a state-tuning step (one `tuneState` step, shared S0, no lifted
 * state) allocates for `cfg`.
 *
 * @throws {TypeError} for bad options (naming the field)
 * @throws {RangeError} when the shape cannot be laid out (a buffer over one binding, a row over a
 *   WKV window), with the reason
 * @example
 * ```ts
 * import { memoryPlan } from "./memory_plan.ts";
 * import { OFFICIAL_SHAPES } from "./random.ts";
 * const p = memoryPlan(OFFICIAL_SHAPES["1.5B"], { mode: "state-tuning", T: 512 });
 * if (p.total > 8e9) throw new Error("does not fit 8 GB");
 * ```
 */
export function memoryPlan(cfg: RwkvConfig, options: MemoryPlanOptions): MemoryPlan {
  const parsed = MemoryPlanOptionsSchema.safeParse(options);
  if (!parsed.success) {
    const why = parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ");
    throw new TypeError(`memoryPlan: bad options (${why})`);
  }
  const o = parsed.data;
  const it = new Items();
  addWeights(it, cfg, o.weightDtype === "f16" ? 2 : 4, o.maxStorageBufferBindingSize);
  if (o.textures) addTextures(it, cfg, o);
  if (o.mode === "forward") forwardItems(it, cfg, o);
  else tuningItems(it, cfg, o);
  const bytes = Object.fromEntries(PLAN_CATEGORIES.map((c) => [c, 0])) as MemoryPlan["bytes"];
  for (const item of it.list) bytes[item.category] += item.bytes;
  const total = PLAN_CATEGORIES.reduce((s, c) => s + bytes[c], 0);
  return { mode: o.mode, B: o.B, T: o.T, weightDtype: o.weightDtype, bytes, total, items: it.list };
}

/** True when the plan's total fits `bytes` of GPU memory. */
export function fits(plan: MemoryPlan, bytes: number): boolean {
  return plan.total <= bytes;
}

/** Bytes as decimal MB / GB (the unit of memory budgets). */
export function formatBytes(bytes: number): string {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(3)} GB`;
  if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(2)} MB`;
  if (bytes >= 1e3) return `${(bytes / 1e3).toFixed(1)} kB`;
  return `${bytes} B`;
}

/** One plan as lines: its categories, total and, with `items`, every buffer group. */
export function formatPlan(
  plan: MemoryPlan,
  opts: { items?: boolean; budget?: number } = {},
): string {
  const head = `${plan.mode}, ${plan.weightDtype} weights, B ${plan.B} × T ${plan.T}`;
  const lines = [head];
  for (const c of PLAN_CATEGORIES) {
    lines.push(`  ${c.padEnd(12)} ${formatBytes(plan.bytes[c]).padStart(11)}`);
    if (opts.items) {
      for (const i of plan.items.filter((i) => i.category === c)) {
        lines.push(`    ${formatBytes(i.bytes).padStart(11)}  ${i.name} (${i.count})`);
      }
    }
  }
  lines.push(`  ${"total".padEnd(12)} ${formatBytes(plan.total).padStart(11)}`);
  if (opts.budget !== undefined) {
    const ok = fits(plan, opts.budget) ? "fits" : "does NOT fit";
    lines.push(`  ${ok} ${formatBytes(opts.budget)}`);
  }
  return lines.join("\n");
}

/** Limits {@link planSkipReason} checks against (a `GPUSupportedLimits` works as is). */
export interface PlanLimits {
  maxBufferSize: number;
  /** default: WebGPU's 128 MiB */
  maxStorageBufferBindingSize?: number;
  /** the adapter's memory, when known */
  memoryBytes?: number;
}

/**
 * Why a state-tuning step of `cfg` (B × T, the given weight dtype) would not fit an adapter with
 * `limits`, or null when it fits: a buffer over `maxBufferSize` or over one storage binding, or
 * the total over `memoryBytes`.
 *
 * @example
 * ```ts
 * import { planSkipReason } from "./memory_plan.ts";
 * import { OFFICIAL_SHAPES } from "./random.ts";
 * const why = planSkipReason(OFFICIAL_SHAPES["1.5B"], { T: 512, B: 1, weightDtype: "f32" }, {
 *   maxBufferSize: 2 ** 31 - 1,
 *   memoryBytes: 4e9,
 * });
 * if (why === null) throw new Error("1.5B f32 should not fit 4 GB");
 * ```
 */
export function planSkipReason(
  cfg: RwkvConfig,
  o: { T: number; B?: number; weightDtype?: "f32" | "f16"; textures?: boolean },
  limits: PlanLimits,
): string | null {
  const binding = limits.maxStorageBufferBindingSize ?? DEFAULT_BINDING_BYTES;
  let plan: MemoryPlan;
  try {
    plan = memoryPlan(cfg, { mode: "state-tuning", ...o, maxStorageBufferBindingSize: binding });
  } catch (e) {
    if (e instanceof RangeError) return e.message;
    throw e;
  }
  for (const i of plan.items) {
    if (i.largest > limits.maxBufferSize) {
      return `${i.name}: a ${i.largest}-byte buffer exceeds maxBufferSize ${limits.maxBufferSize}`;
    }
    if (i.binding && i.largest > binding) {
      return `${i.name}: a ${i.largest}-byte buffer exceeds one storage binding (${binding}); ` +
        `use a smaller batch or shorter sequences`;
    }
  }
  if (limits.memoryBytes !== undefined && plan.total > limits.memoryBytes) {
    const big = PLAN_CATEGORIES.reduce((a, c) => plan.bytes[c] > plan.bytes[a] ? c : a);
    return `the step needs ${formatBytes(plan.total)} (${big} ${formatBytes(plan.bytes[big])}), ` +
      `more than the adapter's ${formatBytes(limits.memoryBytes)}`;
  }
  return null;
}
