import { assert, assertEquals, assertRejects, assertThrows, assertThrowsMatch } from "@std/assert";
import {
  ByteTokenizer,
  loadTokenizer,
  parsePythonLiteral,
  resolveTokenizer,
  StreamDecoder,
  type Tokenizer,
  WorldTokenizer,
} from "../lib/tokenizer/mod.ts";
import { Rng } from "../lib/util/rng.ts";
import { fixture, hasFixtures } from "./_helpers.ts";

const VOCAB = fixture("tokenizer/rwkv_vocab_v20230424.txt");
let world: WorldTokenizer | null = null;
async function getWorld(): Promise<WorldTokenizer> {
  world ??= (await loadTokenizer(VOCAB)) as WorldTokenizer;
  return world;
}

Deno.test({
  name: "world: every vectors.json case encodes to its ids and decodes back",
  ignore: !hasFixtures,
  fn: async () => {
    const tok = await getWorld();
    const { cases } = JSON.parse(await Deno.readTextFile(fixture("tokenizer/vectors.json")));
    assert(cases.length >= 5);
    for (const c of cases as { text: string; ids: number[] }[]) {
      assertEquals(tok.encode(c.text), c.ids, `encode ${JSON.stringify(c.text)}`);
      assertEquals(tok.decode(c.ids), c.text);
    }
    assertEquals(tok.vocabSize, 65530);
  },
});

Deno.test({
  name: "world: loads in well under a second and encodes 10 kB in a few ms",
  ignore: !hasFixtures,
  fn: async () => {
    const t0 = performance.now();
    await loadTokenizer(VOCAB);
    const loadMs = performance.now() - t0;
    assert(loadMs < 1000, `load took ${loadMs.toFixed(0)} ms`);
    const tok = await getWorld();
    const text = "The quick brown fox 跳过了懒狗. Ünïcödé ✓ 🎉\n".repeat(250).slice(0, 10000);
    tok.encode(text);
    const t1 = performance.now();
    for (let i = 0; i < 5; i++) tok.encode(text);
    const encMs = (performance.now() - t1) / 5;
    assert(encMs < 20, `encoding 10 kB took ${encMs.toFixed(1)} ms`);
  },
});

Deno.test({
  name: "world: assorted Unicode round-trips",
  ignore: !hasFixtures,
  fn: async () => {
    const tok = await getWorld();
    const texts = [
      "emoji 😀👍🏽 👩‍👩‍👧‍👦 🇯🇵 🏳️‍🌈",
      "中文，日本語のテキスト，한국어 텍스트",
      "combining: e\u0301 a\u0308\u0323 Z\u0335\u0347",
      "RTL: שלום עולם مرحبا",
      "\uFEFFstarts with a BOM",
      "control \u0000\u0001\u007f and \r\n line ends \t tabs",
      "math 𝔸𝕓𝒸 ∮ ∞ ≠ ≤ 𝄞",
      " ".repeat(300) + "-".repeat(200),
      "",
    ];
    for (const t of texts) assertEquals(tok.decode(tok.encode(t)), t, JSON.stringify(t));
  },
});

Deno.test({
  name: "world: byte tokens that are not valid UTF-8 decode to U+FFFD (errors='replace')",
  ignore: !hasFixtures,
  fn: async () => {
    const tok = await getWorld();
    const b = (x: number) => x + 1; // ids 1…256 are the single bytes 0x00…0xff
    const a = tok.encode("a")[0];
    // Expected strings are Python's bytes.decode("utf-8", "replace").
    assertEquals(tok.decode([b(0xe4), b(0xbd), a]), "\uFFFDa");
    assertEquals(tok.decode([b(0x80), a, b(0xf0), b(0x9f), b(0x98)]), "\uFFFDa\uFFFD");
    assertEquals(tok.decode([b(0xed), b(0xa0), b(0x80)]), "\uFFFD\uFFFD\uFFFD");
    assertEquals(tok.decode([b(0xf0), b(0x9f), b(0x98), b(0x80), b(0xff)]), "😀\uFFFD");
    assertEquals(tok.decode([0]), "", "end-of-text decodes to nothing");
    assertThrowsMatch(() => tok.decode([65530]), /outside the vocabulary \[0, 65530\)/);
  },
});

Deno.test({
  name: "world: \\xNN is a code point in str literals and a raw byte in bytes literals",
  ignore: !hasFixtures,
  fn: async () => {
    const tok = await getWorld();
    // From the file: 129 b'\x80' 1, 2423 '\x80' 2, 2430 '\xa0' 2, 9804 '\u2002' 3.
    assertEquals([...tok.decodeBytes([129])], [0x80]);
    assertEquals([...tok.decodeBytes([2423])], [0xc2, 0x80]);
    assertEquals([...tok.decodeBytes([2430])], [0xc2, 0xa0]);
    assertEquals([...tok.decodeBytes([9804])], [0xe2, 0x80, 0x82]);
    assertEquals(tok.encode("\u0080"), [2423]);
    assertEquals(tok.encode("\u00a0"), [2430]);
    assertEquals(tok.encode("\u2002"), [9804]);
    assertEquals(tok.decode([2423]), "\u0080");
    assertEquals(tok.decode([129]), "\uFFFD");
  },
});

Deno.test("parsePythonLiteral: escapes and quote styles", () => {
  const bytes = (s: string) => [...parsePythonLiteral(s)];
  assertEquals(bytes(String.raw`'\\'`), [0x5c]);
  assertEquals(bytes(`"'"`), [0x27]);
  assertEquals(bytes(String.raw`'\''`), [0x27]);
  assertEquals(bytes(String.raw`'"\''`), [0x22, 0x27]);
  assertEquals(bytes(String.raw`'\t\n\r'`), [9, 10, 13]);
  assertEquals(bytes(String.raw`'\x80'`), [0xc2, 0x80]);
  assertEquals(bytes(String.raw`b'\x80'`), [0x80]);
  assertEquals(bytes(String.raw`b"\x00'"`), [0, 0x27]);
  assertEquals(bytes(String.raw`'\u2002'`), [0xe2, 0x80, 0x82]);
  assertEquals(bytes(String.raw`'\U0001f600'`), [0xf0, 0x9f, 0x98, 0x80]);
  assertEquals(bytes("'é'"), [0xc3, 0xa9]);
  assertThrows(() => parsePythonLiteral(String.raw`'\q'`), SyntaxError);
  assertThrows(() => parsePythonLiteral(String.raw`'\x8'`), SyntaxError);
  assertThrows(() => parsePythonLiteral(String.raw`b'\u2002'`), SyntaxError);
  assertThrowsMatch(() => parsePythonLiteral("abc"), /quoted Python str or bytes literal/);
});

Deno.test("world: malformed vocabulary lines are reported with their line number", () => {
  assertThrowsMatch(
    () => WorldTokenizer.fromVocab("1 'a' 1\n2 'bc' 3\n", "v.txt"),
    /v\.txt:2: token 2 has 2 bytes but the line declares 3/,
  );
  assertThrowsMatch(() => WorldTokenizer.fromVocab("1 'a' 1\nx 'b' 1\n", "v.txt"), /v\.txt:2:/);
  assertThrowsMatch(() => WorldTokenizer.fromVocab("1 'a' 1\n1 'b' 1\n", "v.txt"), /id 1 repeats/);
  assertThrowsMatch(
    () => WorldTokenizer.fromVocab("1 '\\q' 2\n", "v.txt"),
    /v\.txt:1: unsupported/,
  );
  const tok = WorldTokenizer.fromVocab("1 'a' 1\r\n2 'ab' 2\r\n\r\n3 'b' 1\r\n");
  assertEquals(tok.encode("abab"), [2, 2]);
  assertThrowsMatch(() => tok.encode(" "), /byte 0x20 at offset 0 has no token/);
  assertEquals(tok.encode("aabb"), [1, 2, 3]);
});

/** Push ids one at a time; check no chunk contains a broken character; return the chunks. */
function streamChunks(tok: Tokenizer, ids: number[]): string[] {
  const dec = new StreamDecoder(tok);
  const chunks = ids.map((id) => dec.push(id));
  chunks.push(dec.flush());
  return chunks;
}

Deno.test("StreamDecoder never splits a character (byte tokenizer, random text)", () => {
  const tok = new ByteTokenizer();
  const rng = new Rng(3);
  const pool = [..."aé中😀\u0301ß€𝄞 \n"];
  for (let trial = 0; trial < 50; trial++) {
    let text = "";
    for (let i = 0; i < 30; i++) text += pool[rng.int(pool.length)];
    const chunks = streamChunks(tok, tok.encode(text));
    assertEquals(chunks.join(""), text);
    for (const c of chunks) assert(!c.includes("\uFFFD"), `broken chunk ${JSON.stringify(c)}`);
  }
  // Incomplete tail at the end and invalid bytes in the middle: same as a one-shot decode.
  const ids = [0xe4, 0x61, 0xf0, 0x9f, 0x98, 0x80, 0xe4, 0xbd];
  assertEquals(streamChunks(tok, ids).join(""), tok.decode(ids));
  assertEquals(streamChunks(tok, ids).join(""), "\uFFFDa😀\uFFFD");
});

Deno.test({
  name: "StreamDecoder never splits a character (World tokens that split characters)",
  ignore: !hasFixtures,
  fn: async () => {
    const tok = await getWorld();
    const text = "𝄞 𓀀𓀁 🧑‍🚀 龘靐齉 \u{1F9EC}\u{1FAE0} ok";
    const ids = tok.encode(text);
    // Some of these characters have no token of their own: ids split them into bytes.
    assert(ids.some((id) => tok.decode([id]).includes("\uFFFD")), "expected split characters");
    const chunks = streamChunks(tok, ids);
    assertEquals(chunks.join(""), text);
    for (const c of chunks) assert(!c.includes("\uFFFD"), `broken chunk ${JSON.stringify(c)}`);
  },
});

Deno.test("byte tokenizer", async () => {
  const tok = await loadTokenizer("bytes");
  assertEquals(tok.name, "bytes");
  assertEquals(tok.vocabSize, 256);
  assertEquals(tok.encode("hé\0"), [104, 195, 169, 0]);
  assertEquals(tok.decode([104, 195, 169, 0]), "hé\0");
  assertEquals(tok.decode([0xff, 0x41]), "\uFFFDA");
  assertEquals([...tok.decodeBytes([1, 255])], [1, 255]);
  assertThrowsMatch(() => tok.decode([256]), /token id 256 at position 0 is not in \[0, 256\)/);
  assertThrows(() => tok.decode([1.5]), RangeError);
});

Deno.test("resolveTokenizer: flag, then V = 256, then a vocab file beside the model", async () => {
  const dir = await Deno.makeTempDir({ prefix: "rwkv_tok_" });
  try {
    const model = `${dir}/model.safetensors`;
    await Deno.writeTextFile(model, "");
    assertEquals((await resolveTokenizer(model, 256)).name, "bytes");
    await assertRejects(
      () => resolveTokenizer(model, 65536),
      Error,
      "Pass --tokenizer VOCAB_FILE",
    );
    await Deno.writeTextFile(`${dir}/my_vocab.txt`, "1 'a' 1\n2 'b' 1\n");
    const other = await resolveTokenizer(model, 65536);
    assert(other.name.includes("my_vocab.txt"), other.name);
    await Deno.writeTextFile(`${dir}/rwkv_vocab_v20230424.txt`, "1 'a' 1\n");
    const preferred = await resolveTokenizer(model, 65536);
    assert(preferred.name.includes("rwkv_vocab_v20230424.txt"), preferred.name);
    assertEquals(preferred.vocabSize, 2);
    assertEquals((await resolveTokenizer(model, 65536, "bytes")).name, "bytes");
    const flagged = await resolveTokenizer(model, 256, `${dir}/my_vocab.txt`);
    assert(flagged.name.includes("my_vocab.txt"));
    await assertRejects(() => resolveTokenizer(model, 2, "bytes"), Error, "has 256 ids");
    await assertRejects(
      () => resolveTokenizer(model, 65536, `${dir}/missing.txt`),
      Deno.errors.NotFound,
      "tokenizer vocabulary file not found",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const SCRIPT = new URL("../scripts/tokenize.ts", import.meta.url).pathname;
async function runScript(args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", SCRIPT, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test({
  name: 'scripts/tokenize.ts: --json prints {"ids": [...]}, --decode decodes',
  ignore: !hasFixtures,
  fn: async () => {
    const text = "Today is a beautiful day. 今天是美好的一天。";
    const enc = await runScript(["--tokenizer", VOCAB, "--text", text, "--json"]);
    assertEquals(enc.code, 0, enc.stderr);
    assertEquals(JSON.parse(enc.stdout), { ids: (await getWorld()).encode(text) });
    assert(enc.stdout.startsWith('{"ids": [33520, 4600,'), enc.stdout);
    const dec = await runScript(["--tokenizer", VOCAB, "--decode", "33520,4600,332"]);
    assertEquals(dec.stdout, "Today is a\n");
    const plain = await runScript(["--tokenizer", "bytes", "--text", "hi"]);
    assertEquals(plain.stdout, "104 105\n");
  },
});

Deno.test("scripts/tokenize.ts: a missing vocabulary file is a clear error", async () => {
  const r = await runScript(["--tokenizer", "no/such/vocab.txt", "--text", "x"]);
  assertEquals(r.code, 1);
  assert(r.stderr.includes("tokenizer vocabulary file not found: no/such/vocab.txt"), r.stderr);
  const none = await runScript(["--text", "x"]);
  assertEquals(none.code, 1);
  assert(none.stderr.includes("--tokenizer is required"), none.stderr);
});
