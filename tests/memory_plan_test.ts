/**
 * The memory plan vs the buffers a run really creates: `device.createBuffer` is wrapped for the
 * test (every buffer's label and size recorded, `destroy` tracked), then a forward and one
 * `tuneState` step run on the tiny fixture and on a seeded random multi-head model.
 *
 * Tolerances: per category the plan must equal the persistent buffers exactly (it mirrors the
 * allocation formulas; any drift is a bug in one of the two). The peak of live bytes also
 * counts transients the plan leaves out (the recorders' uniform params, 256 B per dispatch of
 * the largest submit, and readback staging): plan ≤ peak ≤ 1.05 · plan (measured up to a few
 * percent on these toy shapes, where a few hundred dispatches weigh against kilobyte-sized
 * buffers; at the 1.5B shape they are ~3 MB of ~6.7 GB). The per-device kernel buffers
 * (`SHARED`) are counted as if this run made them.
 */
import { assert, assertEquals, assertThrows } from "@std/assert";
import { GpuModel } from "../lib/model/gpu_model.ts";
import { countParams, loadModel } from "../lib/model/load.ts";
import {
  configParams,
  fits,
  GB8,
  type MemoryPlan,
  memoryPlan,
  PLAN_CATEGORIES,
  type PlanCategory,
  planSkipReason,
} from "../lib/model/memory_plan.ts";
import { OFFICIAL_SHAPES, randomWeights, tinyConfig } from "../lib/model/random.ts";
import type { RwkvWeights } from "../lib/model/types.ts";
import type { Example } from "../lib/train/data.ts";
import { tuneState } from "../lib/train/tune.ts";
import { WKV_WINDOW_BYTES } from "../lib/kernels/wkv7.ts";
import { fixture, gpu, hasFixtures } from "./_helpers.ts";

const PEAK_TOL = 1.05;

type Mode = MemoryPlan["mode"];

/**
 * The kernel buffers made once per device (`shared` in lib/gpu/shared.ts: the backward kernels'
 * and Adam's placeholders and uniform window): the plan counts them in every tuning step, a run
 * creates them only in the first step on its device.
 */
const SHARED =
  /^(norm_backward\.noxhat|gates_backward\.unused(Read|Write)|wkv7_backward\.stage|adam\.noclip)$/;
const SHARED_BYTES = 4 * 16 + 9 * WKV_WINDOW_BYTES;

/** The plan category of a real buffer, from its label; "transient" for per-submit buffers. */
function categoryOf(label: string, mode: Mode): PlanCategory | "transient" {
  if (SHARED.test(label)) return "workspace";
  if (/\.params$|^readback\(|^state\.readback$|timestamps|^tune\.[xwy]$/.test(label)) {
    return "transient";
  }
  if (/^(blocks\.\d+\.|emb\.weight|head\.weight|model\.vecs$)/.test(label)) return "weights";
  if (mode === "forward") {
    if (/^model\.(x0|x1|vFirst)$/.test(label)) return "activations";
    if (/^state\.(att|wkv|ffn)$/.test(label)) return "state";
    return "workspace";
  }
  if (/^bwd\.(x\d+|vFirst)$/.test(label)) return "activations";
  if (/^bwd\.work\.|^tune\.S0$/.test(label)) return "state";
  if (/^bwd\.(dS0|dS0Sum|dShiftAtt|dShiftFfn)$|^tune\.grad$/.test(label)) return "gradients";
  if (/^tune\.(norm|\w+\.\w+\.[mv])$|^adam\.partials$/.test(label)) return "optimiser";
  return "workspace";
}

/** Records every buffer created on the device while `fn` runs. */
async function track(fn: () => Promise<void>, mode: Mode) {
  const device = gpu!.device;
  const original = device.createBuffer;
  const originalTex = device.createTexture;
  const made: { label: string; size: number }[] = [];
  const textures = { weights: 0, activations: 0 };
  device.createTexture = (d: GPUTextureDescriptor): GPUTexture => {
    const [w, h] = d.size as number[];
    const bytes = w * h * (d.format === "rgba16float" ? 8 : 16);
    if (/\.tex(\[\d+\])?$/.test(d.label ?? "")) textures.weights += bytes;
    else if (/^matmul_tex\.x\./.test(d.label ?? "")) textures.activations += bytes;
    else throw new Error(`unexpected texture ${d.label}`);
    return originalTex.call(device, d);
  };
  let live = 0, peak = 0;
  device.createBuffer = (d: GPUBufferDescriptor): GPUBuffer => {
    const b = original.call(device, d);
    made.push({ label: d.label ?? "", size: d.size });
    live += d.size;
    peak = Math.max(peak, live);
    const destroy = b.destroy.bind(b);
    let gone = false;
    b.destroy = () => {
      if (!gone) live -= d.size;
      gone = true;
      destroy();
    };
    return b;
  };
  try {
    await fn();
  } finally {
    device.createBuffer = original;
    device.createTexture = originalTex;
  }
  const bytes = Object.fromEntries([...PLAN_CATEGORIES, "transient"].map((c) => [c, 0]));
  for (const m of made) bytes[categoryOf(m.label, mode)] += m.size;
  return { bytes: bytes as Record<PlanCategory | "transient", number>, peak, made, textures };
}

function compare(plan: MemoryPlan, real: Awaited<ReturnType<typeof track>>, what: string) {
  // the per-device kernel buffers this run did not make (an earlier step on the device did)
  const made = real.made.filter((m) => SHARED.test(m.label)).reduce((s, m) => s + m.size, 0);
  const absent = plan.mode === "forward" ? 0 : SHARED_BYTES - made;
  real = {
    ...real,
    bytes: { ...real.bytes, workspace: real.bytes.workspace + absent },
    peak: real.peak + absent,
  };
  const persistent = PLAN_CATEGORIES.reduce((s, c) => s + real.bytes[c], 0);
  const texBytes = plan.items.filter((i) => /textures/.test(i.name)).reduce(
    (s, i) => s + i.bytes,
    0,
  );
  const ratio = real.peak / (plan.total - texBytes);
  console.log(
    `  ${what} ${plan.mode}: plan ${plan.total} B, created ${persistent} B persistent + ` +
      `${real.bytes.transient} B transient, peak live ${real.peak} B (${ratio.toFixed(4)} × plan)`,
  );
  for (const c of PLAN_CATEGORIES) {
    const labels = [
      ...new Set(
        real.made.filter((m) => categoryOf(m.label, plan.mode) === c)
          .map((m) => m.label.replace(/\d+/g, "#")),
      ),
    ];
    const tex = plan.items.filter((i) => i.category === c && /textures/.test(i.name))
      .reduce((s, i) => s + i.bytes, 0);
    const planned = plan.bytes[c] - tex; // buffers only; textures are compared apart
    assertEquals(real.bytes[c], planned, `${what} ${plan.mode} ${c}: ${labels.join(", ")}`);
  }
  assert(ratio >= 1 && ratio <= PEAK_TOL, `${what}: peak / plan = ${ratio}`);
}

/**
 * Texture bytes (the plan's `textures` option): the weight textures exactly, the activation
 * textures within the plan's estimate (an upper bound).
 */
function compareTextures(plan: MemoryPlan, real: Awaited<ReturnType<typeof track>>) {
  const item = (name: RegExp) => plan.items.find((i) => name.test(i.name))?.bytes ?? 0;
  assertEquals(real.textures.weights, item(/weight matrix textures/), `${plan.mode} textures`);
  const x = item(/activation textures/);
  assert(real.textures.activations <= x, `activation textures ${real.textures.activations} > ${x}`);
}

/** B examples of T + 1 tokens each (a batch of exactly B × T, every position counted). */
function examples(V: number, B: number, T: number): Example[] {
  return Array.from({ length: B }, (_, i) => ({
    ids: Array.from({ length: T + 1 }, (_, t) => (t * 7 + i * 3) % V),
    loss: new Uint8Array(T + 1).fill(1),
    line: i,
  }));
}

async function checkModel(
  weights: RwkvWeights,
  what: string,
  B: number,
  T: number,
  accum = 1,
  weightDtype: "f32" | "f16" = "f32",
) {
  const cfg = weights.config;
  const tokens = examples(cfg.vocabSize, B, T).map((e) => e.ids.slice(0, T));
  const fwd = await track(async () => {
    const model = await GpuModel.create(gpu!, weights, { weightDtype, textures: true });
    const state = model.createState(B);
    await model.forward(tokens, state);
    state.destroy();
    model.destroy();
  }, "forward");
  const fwdPlan = memoryPlan(cfg, { mode: "forward", B, T, weightDtype, textures: true });
  compare(fwdPlan, fwd, what);
  compareTextures(fwdPlan, fwd);
  const tune = await track(async () => {
    const model = await GpuModel.create(gpu!, weights, { weightDtype, textures: true });
    const ex = examples(cfg.vocabSize, B * accum, T);
    const opts = { steps: 1, batch: B, gradAccum: accum, progress: false, livePlot: false };
    await tuneState(model, ex, opts);
    model.destroy();
  }, "state-tuning");
  const o = { mode: "state-tuning" as const, B, T, gradAccum: accum, weightDtype, textures: true };
  compare(memoryPlan(cfg, o), tune, what);
  compareTextures(memoryPlan(cfg, o), tune);
}

Deno.test({
  name: "memory plan = real allocations: seeded random L2 H4 model, forward and tuning step",
  ignore: !gpu,
  fn: async () => {
    const cfg = tinyConfig({ nLayer: 2, nEmbd: 64, headSize: 16 });
    await checkModel(randomWeights(cfg, 3), "random L2 C64 H4 (B 2, T 19, accum 2)", 2, 19, 2);
    await checkModel(randomWeights(cfg, 3), "f16 weights, random L2 C64 H4", 2, 19, 1, "f16");
  },
});

Deno.test({
  name: "memory plan = real allocations: tiny fixture, forward and tuning step",
  ignore: !gpu || !hasFixtures,
  fn: async () => {
    const { weights } = await loadModel(fixture("models/tiny-rwkv7-834K.safetensors"));
    await checkModel(weights, "tiny fixture (B 1, T 24)", 1, 24);
  },
});

Deno.test("configParams equals countParams of real weights", async () => {
  for (const cfg of [tinyConfig(), tinyConfig({ nLayer: 3, nEmbd: 64, dimV: 4 })]) {
    assertEquals(configParams(cfg), countParams(randomWeights(cfg, 1)));
  }
  if (hasFixtures) {
    const { weights } = await loadModel(fixture("models/tiny-rwkv7-834K.safetensors"));
    assertEquals(configParams(weights.config), countParams(weights));
  }
});

Deno.test("1.5B state-tuning step at T = 512, B = 1 fits 8 GB (8·10⁹ B) with f32 or f16 weights", () => {
  const cfg = OFFICIAL_SHAPES["1.5B"];
  const params = configParams(cfg);
  for (const weightDtype of ["f32", "f16"] as const) {
    const p = memoryPlan(cfg, { mode: "state-tuning", T: 512, B: 1, weightDtype });
    const bpe = weightDtype === "f32" ? 4 : 2;
    console.log(
      `  1.5B ${weightDtype}: total ${(p.total / 1e9).toFixed(3)} GB, weights ` +
        `${(p.bytes.weights / 1e9).toFixed(3)} GB`,
    );
    assertEquals(p.total, PLAN_CATEGORIES.reduce((s, c) => s + p.bytes[c], 0));
    // matrices at bpe bytes; the embedding (V·C) and the packed vectors at 4
    const emb = cfg.vocabSize * cfg.nEmbd;
    const least = bpe * params + (4 - bpe) * emb;
    assert(p.bytes.weights >= least && p.bytes.weights <= least + 4e6);
    assert(fits(p, GB8), `1.5B ${weightDtype}: ${p.total} B > 8e9`);
    // per-layer recomputation: the saved activations are L + 2 buffers of (T, C) f32
    assertEquals(p.bytes.activations, (cfg.nLayer + 2) * 512 * cfg.nEmbd * 4);
  }
});

Deno.test("planSkipReason: fits, over memory, over one binding, over maxBufferSize", () => {
  const cfg = OFFICIAL_SHAPES["1.5B"];
  const big = { maxBufferSize: 2 ** 31 - 1, maxStorageBufferBindingSize: 2 ** 27 };
  assertEquals(planSkipReason(cfg, { T: 512 }, { ...big, memoryBytes: GB8 }), null);
  const mem = planSkipReason(cfg, { T: 512 }, { ...big, memoryBytes: 4e9 });
  assert(mem?.includes("more than the adapter's 4.000 GB") && mem.includes("weights"), mem!);
  assertEquals(
    planSkipReason(cfg, { T: 512, weightDtype: "f16" }, { ...big, memoryBytes: 4e9 }),
    null,
  );
  const bind = planSkipReason(cfg, { T: 65536 }, big);
  assert(bind?.includes("storage binding"), bind!);
  const small = planSkipReason(cfg, { T: 512 }, { maxBufferSize: 2 ** 24 });
  assert(small?.includes("maxBufferSize"), small!);
  assertThrows(() => planSkipReason(cfg, { T: 0 }, big), TypeError, "T");
});

Deno.test("memoryPlan rejects bad options by name", () => {
  const cfg = tinyConfig();
  assertThrows(() => memoryPlan(cfg, { mode: "forward", T: 1.5 }), TypeError, "T");
  assertThrows(() => memoryPlan(cfg, { mode: "forward", T: 4, B: 0 }), TypeError, "B");
});
