/**
 * gpuGenerate (GPU sampling, bursts of steps per submit) on the tiny fixture vs the CPU-sampling
 * `generate` over the same GPU model: greedy tokens, stop handling, the state left behind, seeded
 * reproducibility and independence from the burst size.
 *
 * Tolerances: greedy tokens, texts and stop reasons must be equal (both sample from the same
 * logits, computed by the same T = 1 forwards; without penalties the argmax is exact). States:
 * max |Δ| ≤ 1e-6 against the CPU-sampling session (the same forwards in the same order), and
 * bitwise equal between burst sizes.
 */
import {
  assert,
  assertEquals,
  assertNotEquals,
  assertRejectsMatch,
  assertStrictEquals,
} from "@std/assert";
import { generate, type GeneratedChunk, type GenerationResult } from "../lib/generate/generate.ts";
import { gpuGenerate, type GpuGenerateOptions } from "../lib/generate/gpu_generate.ts";
import { GpuModel } from "../lib/model/gpu_model.ts";
import { loadModel } from "../lib/model/load.ts";
import type { RwkvState } from "../lib/model/types.ts";
import { ByteTokenizer } from "../lib/tokenizer/mod.ts";
import { assertClose, fixture, gpu, hasFixtures } from "./_helpers.ts";

const ignore = !gpu || !hasFixtures;
const tok = new ByteTokenizer();
const PROMPT = "The quick brown fox";

let cached: GpuModel | undefined;
async function tiny(): Promise<GpuModel> {
  if (!cached) {
    const { weights } = await loadModel(fixture("models/tiny-rwkv7-834K.safetensors"));
    cached = await GpuModel.create(gpu!, weights);
  }
  return cached;
}

async function drain(
  it: AsyncGenerator<GeneratedChunk, GenerationResult>,
  onChunk?: (c: GeneratedChunk) => void,
): Promise<{ chunks: GeneratedChunk[]; result: GenerationResult }> {
  const chunks: GeneratedChunk[] = [];
  while (true) {
    const r = await it.next();
    if (r.done) return { chunks, result: r.value };
    chunks.push(r.value);
    onChunk?.(r.value);
  }
}

/** gpuGenerate from a fresh state; returns chunks, result and the state left behind. */
async function onGpu(opts: GpuGenerateOptions, prompt: string = PROMPT) {
  const model = await tiny();
  const state = model.createState(1);
  const out = await drain(gpuGenerate(model, tok, prompt, { ...opts, state }));
  const [s] = await state.read();
  state.destroy();
  return { ...out, state: s };
}

/** The CPU-sampling `generate` over a GPU session; same return shape. */
async function onCpu(opts: GpuGenerateOptions, prompt: string = PROMPT) {
  const { burst: _b, state: _s, ...rest } = opts;
  const session = (await tiny()).session();
  const out = await drain(generate(session, tok, prompt, rest));
  const s = await session.state();
  session.destroy();
  return { ...out, state: s };
}

function sameState(a: RwkvState, b: RwkvState, tol: number, what: string): void {
  a.forEach((ls, l) => {
    for (const k of ["att", "wkv", "ffn"] as const) {
      assertClose(ls[k], b[l][k], { maxAbs: tol }, `${what}: layer ${l} ${k}`);
    }
  });
}

function sameRun(
  a: { chunks: GeneratedChunk[]; result: GenerationResult },
  b: { chunks: GeneratedChunk[]; result: GenerationResult },
  what: string,
): void {
  assertEquals(a.result.tokens, b.result.tokens, `${what}: tokens`);
  assertStrictEquals(a.result.text, b.result.text, `${what}: text`);
  assertStrictEquals(a.result.stopReason, b.result.stopReason, `${what}: stop reason`);
  assertEquals(a.chunks, b.chunks, `${what}: chunks`);
}

const greedy = { temperature: 0, presencePenalty: 0, frequencyPenalty: 0 };

Deno.test({ name: "greedy gpuGenerate equals generate with CPU sampling", ignore }, async () => {
  const cpu = await onCpu({ ...greedy, maxTokens: 24 });
  for (const burst of [1, 16]) {
    const g = await onGpu({ ...greedy, maxTokens: 24, burst });
    sameRun(g, cpu, `burst ${burst}`);
    assertStrictEquals(g.result.promptTokens, PROMPT.length);
    sameState(g.state, cpu.state, 1e-6, `burst ${burst} state`);
  }
  // With the default penalties (f32 on the GPU, float64 on the CPU): same tokens unless a
  // penalised near-tie, which this prompt does not have.
  const pen = { temperature: 0, maxTokens: 24 };
  sameRun(await onGpu({ ...pen, burst: 8 }), await onCpu(pen), "greedy with penalties");
});

Deno.test(
  { name: "gpuGenerate stops mid-burst like generate and rewinds the state", ignore },
  async () => {
    const full = await onCpu({ ...greedy, maxTokens: 24 });
    const text = full.result.text;
    // A stop string whose first occurrence ends mid-way through the first 16-token burst.
    let stop = "";
    for (let end = 9; end < 14 && !stop; end++) {
      for (let at = end - 3; at >= 0 && !stop; at--) {
        if (text.indexOf(text.slice(at, end)) === at) stop = text.slice(at, end);
      }
    }
    assert(/^[\x20-\x7e]+$/.test(stop), `no usable stop string in ${JSON.stringify(text)}`);
    const opts = { ...greedy, maxTokens: 24, stop: [stop] };
    const cpu = await onCpu(opts);
    assertEquals(cpu.result.stopReason, "stop");
    const n = cpu.result.tokens.length;
    assert(n > 4 && n < 15, `stop ${JSON.stringify(stop)} ends at token ${n}, not mid-burst`);
    for (const burst of [1, 4, 16]) {
      const g = await onGpu({ ...opts, burst });
      sameRun(g, cpu, `stop, burst ${burst}`);
      sameState(g.state, cpu.state, 1e-6, `stop, burst ${burst} state`);
    }
    // maxTokens inside a burst: 10 tokens in bursts of 4, the last token not fed.
    const cpu10 = await onCpu({ ...greedy, maxTokens: 10 });
    const g10 = await onGpu({ ...greedy, maxTokens: 10, burst: 4 });
    sameRun(g10, cpu10, "maxTokens 10");
    sameState(g10.state, cpu10.state, 1e-6, "maxTokens 10 state");
  },
);

Deno.test(
  { name: "seeded gpuGenerate is reproducible and independent of the burst", ignore },
  async () => {
    const opts = { temperature: 1, topP: 0.9, topK: 40, seed: 1234, maxTokens: 20 };
    const a = await onGpu({ ...opts, burst: 16 });
    assertEquals(a.result.seed, 1234);
    assertEquals(a.result.tokens.length, 20);
    const again = await onGpu({ ...opts, burst: 16 });
    sameRun(again, a, "same seed");
    for (const burst of [1, 7]) {
      const b = await onGpu({ ...opts, burst });
      sameRun(b, a, `burst ${burst} vs 16`);
      sameState(b.state, a.state, 0, `burst ${burst} state`);
    }
    const other = await onGpu({ ...opts, seed: 4321 });
    assertNotEquals(other.result.tokens, a.result.tokens, "another seed, other tokens");
  },
);

Deno.test({ name: "gpuGenerate honours abort and rejects bad options", ignore }, async () => {
  const model = await tiny();
  const ac = new AbortController();
  const r = await drain(
    gpuGenerate(model, tok, PROMPT, { ...greedy, maxTokens: 24, burst: 16, signal: ac.signal }),
    () => ac.abort(),
  );
  assertEquals(r.result.stopReason, "abort");
  assertStrictEquals(r.result.tokens.length, r.chunks.length);
  assert(r.result.tokens.length >= 1 && r.result.tokens.length < 24);
  const pre = new AbortController();
  pre.abort();
  const none = await drain(gpuGenerate(model, tok, PROMPT, { signal: pre.signal }));
  assertEquals(none.result.stopReason, "abort");
  assertEquals(none.result.promptTokens, 0);
  const bad = (o: GpuGenerateOptions, re: RegExp) =>
    assertRejectsMatch(() => drain(gpuGenerate(model, tok, PROMPT, o)), re);
  await bad({ burst: 0 }, /burst must be an integer in \[1, 1024\], got 0/);
  await bad({ topP: 2 }, /topP must be in \(0, 1\], got 2/);
  const two = model.createState(2);
  await bad({ state: two }, /state holds 2 sequences; gpuGenerate needs B = 1/);
  two.destroy();
  await assertRejectsMatch(
    () => drain(gpuGenerate(model, tok, [300])),
    /prompt token 300 is outside/,
  );
});
