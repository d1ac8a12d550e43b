import {
  assert,
  assertEquals,
  assertMatch,
  assertNotEquals,
  assertNotStrictEquals,
  assertRejectsMatch,
  assertThrows,
  assertThrowsMatch,
} from "@std/assert";
import {
  DEFAULT_SAMPLING,
  parseSamplingOptions,
  recordToken,
  sampleToken,
  type SamplingOptions,
} from "../lib/generate/sampler.ts";
import {
  generate,
  type GeneratedChunk,
  generateText,
  type GenerationResult,
  type LanguageModel,
} from "../lib/generate/generate.ts";
import { ByteTokenizer, type Tokenizer, WorldTokenizer } from "../lib/tokenizer/mod.ts";
import { Rng } from "../lib/util/rng.ts";

const opts = (o: Partial<SamplingOptions> = {}): SamplingOptions => ({
  ...DEFAULT_SAMPLING,
  presencePenalty: 0,
  frequencyPenalty: 0,
  ...o,
});

function randomLogits(rng: Rng, n: number, scale = 3): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = scale * rng.normal();
  return a;
}
const argmax = (a: ArrayLike<number>) => {
  let m = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[m]) m = i;
  return m;
};

Deno.test("Rng: state checkpoints resume the stream exactly", () => {
  const a = new Rng(123);
  for (let i = 0; i < 10; i++) a.next();
  const b = Rng.fromState(a.state);
  assertEquals([a.next(), a.normal(), a.int(7)], [b.next(), b.normal(), b.int(7)]);
  assertEquals(new Rng(5).shuffle([1, 2, 3, 4, 5]).sort(), [1, 2, 3, 4, 5]);
  assertThrowsMatch(() => new Rng(NaN), /finite number, got NaN/);
  assertThrowsMatch(() => new Rng(1).int(0), /positive integer n, got 0/);
});

Deno.test("sampleToken: greedy is argmax (lowest id on ties) and draws nothing", () => {
  const rng = new Rng(1);
  for (let t = 0; t < 20; t++) {
    const logits = randomLogits(rng, 1000);
    const r = new Rng(9);
    assertEquals(sampleToken(logits, opts({ temperature: 0 }), r), argmax(logits));
    assertEquals(r.state, new Rng(9).state);
  }
  assertEquals(sampleToken(new Float32Array([1, 5, 5, 2]), opts({ temperature: 0 }), rng), 1);
});

Deno.test("sampleToken: topK = 1 is argmax; a seed makes draws reproducible", () => {
  const rng = new Rng(2);
  const logits = randomLogits(rng, 65536);
  for (let i = 0; i < 5; i++) {
    assertEquals(sampleToken(logits, opts({ topK: 1, topP: 1 }), rng), argmax(logits));
  }
  // topK = 3 draws only the three most likely tokens.
  const top3 = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a]).slice(0, 3);
  for (let i = 0; i < 20; i++) {
    const t = sampleToken(logits, opts({ topK: 3, topP: 1, temperature: 5 }), rng);
    assert(top3.includes(t), `token ${t} is not in the top 3 ${top3}`);
  }
  const draw = (seed: number) => {
    const r = new Rng(seed);
    return Array.from({ length: 20 }, () => sampleToken(logits, opts({ topP: 1 }), r));
  };
  assertEquals(draw(7), draw(7));
  assertNotEquals(draw(7), draw(8));
});

Deno.test("sampleToken: temperature sharpens and flattens the distribution", () => {
  const logits = new Float32Array([Math.log(0.6), Math.log(0.4)]);
  const freq0 = (temperature: number) => {
    const r = new Rng(11);
    let n = 0;
    for (let i = 0; i < 4000; i++) {
      n += sampleToken(logits, opts({ temperature, topP: 1 }), r) === 0 ? 1 : 0;
    }
    return n / 4000;
  };
  // T = 0.5: p0 = 0.36 / (0.36 + 0.16) ≈ 0.692; T = 1: 0.6. 5 standard deviations ≈ 0.04.
  assert(Math.abs(freq0(1) - 0.6) < 0.04, `T=1 gave ${freq0(1)}`);
  assert(Math.abs(freq0(0.5) - 0.6923) < 0.04, `T=0.5 gave ${freq0(0.5)}`);
});

Deno.test("sampleToken: top-p keeps the smallest nucleus, in proportion", () => {
  const p = [0.5, 0.3, 0.1, 0.05, 0.05];
  const logits = new Float32Array(p.map(Math.log));
  const rng = new Rng(4);
  const n = 4000;
  const counts = [0, 0, 0, 0, 0];
  for (let i = 0; i < n; i++) counts[sampleToken(logits, opts({ topP: 0.75 }), rng)]++;
  assertEquals(counts.slice(2), [0, 0, 0], `outside the nucleus {0, 1}: ${counts}`);
  // Within the nucleus: p0 = 0.5 / 0.8 = 0.625; sd = sqrt(0.625·0.375/4000) ≈ 0.0077; 5 sd.
  assert(Math.abs(counts[0] / n - 0.625) < 0.04, `p0 = ${counts[0] / n}`);
  for (let i = 0; i < 200; i++) assertEquals(sampleToken(logits, opts({ topP: 0.45 }), rng), 0);

  // A large vocabulary: every draw lies in the brute-force nucleus, and both ends are reached.
  const big = randomLogits(new Rng(5), 5000, 2);
  const probs = Array.from(big, Math.exp);
  const total = probs.reduce((a, b) => a + b, 0);
  const order = probs.map((_, i) => i).sort((a, b) => probs[b] - probs[a]);
  const nucleus = new Set<number>();
  let acc = 0;
  for (const i of order) {
    nucleus.add(i);
    acc += probs[i] / total;
    if (acc >= 0.6) break;
  }
  const seen = new Set<number>();
  for (let i = 0; i < 500; i++) {
    const t = sampleToken(big, opts({ topP: 0.6 }), rng);
    assert(nucleus.has(t), `token ${t} is outside the nucleus of ${nucleus.size}`);
    seen.add(t);
  }
  assert(seen.size > nucleus.size / 4, `only ${seen.size} of ${nucleus.size} nucleus tokens seen`);
});

Deno.test("sampleToken: presence and frequency penalties change the choice", () => {
  const logits = new Float32Array([1.0, 1.1, 0.5]);
  const g = opts({ temperature: 0, presencePenalty: 0.2, frequencyPenalty: 0.2 });
  const rng = new Rng(1);
  assertEquals(sampleToken(logits, g, rng), 1);
  assertEquals(sampleToken(logits, g, rng, new Map([[1, 1]])), 0); // 1.1 − 0.4 < 1.0
  assertEquals(sampleToken(logits, g, rng, new Map([[1, 1], [0, 1]])), 1);
  assertEquals(sampleToken(logits, g, rng, new Float32Array([3, 1, 0])), 1); // 1.0 − 0.8 < 0.7
  assertEquals(sampleToken(logits, g, rng, new Float32Array([3, 3, 0])), 2); // 1.1 − 0.8 < 0.5
  const counts = new Map<number, number>();
  recordToken(counts, 1, 0.5);
  recordToken(counts, 2, 0.5);
  recordToken(counts, 1, 0.5);
  assertEquals([...counts.entries()].sort(), [[1, 1.25], [2, 0.5]]);
  const dense = new Float32Array(3);
  recordToken(dense, 1, 0.5);
  recordToken(dense, 1, 0.5);
  assertEquals([...dense], [0, 1.5, 0]);
});

Deno.test("sampleToken: NaN logits and all-banned logits are errors", () => {
  assertThrowsMatch(
    () => sampleToken(new Float32Array([0, NaN]), opts(), new Rng(1)),
    /logits\[1\] is NaN/,
  );
  assertThrowsMatch(
    () => sampleToken(new Float32Array([-Infinity, -Infinity]), opts(), new Rng(1)),
    /every one of the 2 logits is -Infinity/,
  );
  const banned = new Float32Array([5, -Infinity, 0]);
  for (let i = 0; i < 100; i++) {
    assertNotStrictEquals(sampleToken(banned, opts({ topP: 1 }), new Rng(i)), 1);
  }
});

Deno.test("parseSamplingOptions: defaults and range errors that quote the value", () => {
  const d = parseSamplingOptions();
  assertEquals(
    [d.temperature, d.topP, d.topK, d.presencePenalty, d.frequencyPenalty, d.penaltyDecay],
    [1, 0.85, 0, 0.2, 0.2, 0.996],
  );
  assertEquals([d.maxTokens, d.stop, d.seed], [256, [], undefined]);
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ topP: 1.5 }, /topP must be in \(0, 1\], got 1\.5/],
    [{ topP: 0 }, /topP must be in \(0, 1\], got 0/],
    [{ temperature: -1 }, /temperature must be ≥ 0 \(0 = greedy\), got -1/],
    [{ topK: 2.5 }, /topK must be an integer ≥ 0 \(0 = off\), got 2\.5/],
    [{ penaltyDecay: 2 }, /penaltyDecay must be in \[0, 1\], got 2/],
    [{ seed: -3 }, /seed must be an integer in \[0, 2\^32\), got -3/],
    [{ maxTokens: -1 }, /maxTokens must be an integer ≥ 0, got -1/],
    [{ topP: "0.5" }, /topP must be a number, got "0\.5"/],
    [{ stop: [""] }, /stop strings must not be empty/],
    [{ stop: "\n" }, /stop must be an array of strings/],
    [{ top_p: 0.5 }, /unknown sampling option\(s\) top_p/],
  ];
  for (const [input, re] of bad) {
    const e = assertThrows(() => parseSamplingOptions(input as never));
    assert(e instanceof RangeError, `not a RangeError: ${e}`);
    assertMatch(e.message, re);
  }
});

/**
 * A deterministic fake model: the i-th call to `feed` (the prompt is call 0) returns logits
 * that make `script[i]` the argmax by a wide margin.
 */
class ScriptedModel implements LanguageModel {
  readonly fed: number[][] = [];
  constructor(readonly vocabSize: number, readonly script: number[]) {}
  feed(tokens: number[]): Promise<Float32Array> {
    const next = this.script[this.fed.length] ?? 0;
    this.fed.push([...tokens]);
    const logits = new Float32Array(this.vocabSize).fill(-20);
    logits[next] = 20;
    return Promise.resolve(logits);
  }
}

async function collect(
  model: LanguageModel,
  tok: Tokenizer,
  prompt: string,
  o: Parameters<typeof generate>[3] = {},
  onChunk?: (c: GeneratedChunk, i: number) => void,
): Promise<{ chunks: GeneratedChunk[]; result: GenerationResult }> {
  const it = generate(model, tok, prompt, { temperature: 0, ...o });
  const chunks: GeneratedChunk[] = [];
  while (true) {
    const r = await it.next();
    if (r.done) {
      assertEquals(chunks.map((c) => c.text).join(""), r.value.text, "chunks join to the text");
      assertEquals(chunks.map((c) => c.token), r.value.tokens, "one chunk per token");
      return { chunks, result: r.value };
    }
    chunks.push(r.value);
    onChunk?.(r.value, chunks.length);
  }
}

const bytes = new ByteTokenizer();
const enc = (s: string) => bytes.encode(s);

Deno.test("generate: maxTokens, and the last token is not fed", async () => {
  const model = new ScriptedModel(256, enc("hello world"));
  const { result } = await collect(model, bytes, "> ", { maxTokens: 5 });
  assertEquals([result.text, result.stopReason, result.promptTokens], ["hello", "max_tokens", 2]);
  assertEquals(model.fed, [enc("> "), ...enc("hell").map((t) => [t])]);
  assert(result.elapsedMs >= 0 && Number.isFinite(result.tokensPerSecond));
  const none = await collect(new ScriptedModel(256, enc("x")), bytes, "a", { maxTokens: 0 });
  assertEquals([none.result.tokens, none.result.promptTokens], [[], 0]);
});

Deno.test("generate: stop strings split across tokens are cut from the text", async () => {
  const cases: [string, string[], string][] = [
    ["abc STOP def", ["STOP"], "abc "],
    ["ST S STOP", ["STOP"], "ST S "], // false starts are released
    ["x\n\ny Question:", ["Question:", "\n\n"], "x"], // earliest stop wins
    ["日本語END", ["END"], "日本語"],
    ["no stop here", ["zz"], "no stop here"],
  ];
  for (const [script, stop, want] of cases) {
    const model = new ScriptedModel(256, enc(script));
    const maxTokens = enc(script).length;
    const { result, chunks } = await collect(model, bytes, ">", { stop, maxTokens });
    assertEquals(result.text, want, script);
    for (const c of chunks) assert(!c.text.includes("\uFFFD"), "a chunk split a character");
  }
  const { result } = await collect(new ScriptedModel(256, enc("abc STOP")), bytes, ">", {
    stop: ["STOP"],
  });
  assertEquals([result.stopReason, result.tokens.length], ["stop", 8]);
});

Deno.test("generate: end-of-text stops World generation and releases held text", async () => {
  const tok = WorldTokenizer.fromVocab("1 'a' 1\n2 'b' 1\n3 'Q' 1\n4 b'\\xc3' 1\n5 b'\\xa9' 1\n");
  const r1 = await collect(new ScriptedModel(8, [1, 2, 0, 1]), tok, "a", {});
  assertEquals([r1.result.text, r1.result.stopReason, r1.result.tokens], ["ab", "eos", [1, 2]]);
  // "Q" may start the stop string "QQ": held back, then released with the last token at eos.
  const r2 = await collect(new ScriptedModel(8, [1, 3, 0]), tok, "a", { stop: ["QQ"] });
  assertEquals([r2.result.text, r2.chunks], ["aQ", [{ token: 1, text: "a" }, {
    token: 3,
    text: "Q",
  }]]);
  // An incomplete character at eos becomes U+FFFD; a complete one streams whole.
  const r3 = await collect(new ScriptedModel(8, [4, 5, 4, 0]), tok, "a", {});
  assertEquals(r3.result.text, "é\uFFFD");
  assertEquals(r3.chunks.map((c) => c.text), ["", "é", "\uFFFD"]);
  // Ids beyond the tokenizer's vocabulary (padding rows) are never sampled.
  const r4 = await collect(new ScriptedModel(8, [7, 7]), tok, "a", { maxTokens: 2 });
  assert(r4.result.tokens.every((t) => t < tok.vocabSize), `${r4.result.tokens}`);
  // Byte-level: byte 0 is ordinary unless asked for.
  const r5 = await collect(new ScriptedModel(256, [0x61, 0, 0x62]), bytes, "a", { maxTokens: 3 });
  assertEquals([r5.result.text, r5.result.stopReason], ["a\0b", "max_tokens"]);
  const r6 = await collect(new ScriptedModel(256, [0x61, 0]), bytes, "a", {
    stopAtEndOfText: true,
  });
  assertEquals([r6.result.text, r6.result.stopReason], ["a", "eos"]);
});

Deno.test("generate: abort stops after the step in flight", async () => {
  const ctl = new AbortController();
  const model = new ScriptedModel(256, enc("abcdefgh"));
  const { result } = await collect(model, bytes, ">", { signal: ctl.signal }, (_c, i) => {
    if (i === 3) ctl.abort();
  });
  assertEquals([result.text, result.stopReason], ["abc", "abort"]);
  const pre = new AbortController();
  pre.abort();
  const model2 = new ScriptedModel(256, enc("abc"));
  const r2 = await collect(model2, bytes, ">", { signal: pre.signal });
  assertEquals([r2.result.stopReason, r2.result.tokens, model2.fed.length], ["abort", [], 0]);
});

Deno.test("generate: seeded sampling is reproducible; bad prompts are errors", async () => {
  const noisy: LanguageModel = {
    vocabSize: 256,
    feed: (t) => Promise.resolve(randomLogits(new Rng(t.at(-1)! * 7 + t.length), 256, 2)),
  };
  const run = (seed: number) =>
    generateText(noisy, bytes, "hi", { seed, temperature: 1, topP: 0.9, maxTokens: 30 });
  const [a, b, c] = await Promise.all([run(3), run(3), run(4)]);
  assertEquals([a.tokens, a.seed], [b.tokens, 3]);
  assertNotEquals(a.tokens, c.tokens);
  assert(Number.isInteger((await generateText(noisy, bytes, "x", { maxTokens: 1 })).seed));
  await assertRejectsMatch(() => generateText(noisy, bytes, ""), /prompt encodes to no tokens/);
  await assertRejectsMatch(
    () => generateText({ vocabSize: 100, feed: noisy.feed }, bytes, "é"),
    /prompt token 195 is outside the model's vocabulary \[0, 100\)/,
  );
  await assertRejectsMatch(() => generateText(noisy, bytes, "x", { topP: 2 }), /topP must be in/);
});
