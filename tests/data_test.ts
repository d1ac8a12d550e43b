import { assert, assertEquals, assertMatch, assertThrows } from "@std/assert";
import { buildDataset, DataError, makeBatch, parseJsonl, renderRow } from "../lib/train/data.ts";
import { pretrainCorpus, skillRows } from "../lib/train/synthetic.ts";

const bytes = { encode: (s: string) => [...new TextEncoder().encode(s)] };

Deno.test("renderRow: the four layouts and their loss segments", () => {
  assertEquals(renderRow({ text: "hi" }), [{ text: "hi", loss: true }]);
  assertEquals(renderRow({ prompt: "Q", response: "A" }), [
    { text: "Q", loss: false },
    { text: "A", loss: true },
  ]);
  assertEquals(renderRow({ instruction: "Do", input: "x", output: "y" }), [
    { text: "User: Do\n\nx\n\nAssistant:", loss: false },
    { text: " y\n\n", loss: true },
  ]);
  assertEquals(
    renderRow({
      messages: [{ role: "user", content: "hi" }, { role: "assistant", content: "hello" }],
    }),
    [
      { text: "User: hi\n\n", loss: false },
      { text: "Assistant:", loss: false },
      { text: " hello\n\n", loss: true },
    ],
  );
});

Deno.test("parseJsonl reports malformed rows with line numbers and reasons", () => {
  const text = [
    '{"text": "ok"}',
    "{not json",
    '{"prompt": "p"}',
    "",
    '{"foo": 1}',
    '{"messages": [{"role": "user", "content": "only a question"}]}',
    '{"messages": [{"role": "robot", "content": "x"}]}',
    "[1,2]",
  ].join("\n");
  const { rows, bad } = parseJsonl(text, "d.jsonl");
  assertEquals(rows.length, 1);
  assertEquals(bad.map((b) => b.line), [2, 3, 5, 6, 7, 8]);
  assertMatch(bad[0].reason, /not valid JSON/);
  assertMatch(bad[1].reason, /response/);
  assertMatch(bad[2].reason, /unknown row layout with keys \[foo\]/);
  assertMatch(bad[3].reason, /at least one assistant turn/);
  assertMatch(bad[4].reason, /role/);
  assertMatch(bad[5].reason, /JSON object/);
  assertThrows(
    () => parseJsonl(text, "d.jsonl", "fail"),
    DataError,
    "d.jsonl:2: not valid JSON",
  );
});

Deno.test("buildDataset: loss mask on answers, seeded split, truncation and splitting", () => {
  const rows = skillRows("reverse", 20, 1).map((r) => JSON.stringify(r)).join("\n");
  const a = buildDataset(rows, bytes, { valSplit: 0.25, seed: 3 });
  const b = buildDataset(rows, bytes, { valSplit: 0.25, seed: 3 });
  assertEquals(a.train.length, 15);
  assertEquals(a.val.length, 5);
  assertEquals(a.train.map((e) => e.ids), b.train.map((e) => e.ids));
  const ex = a.train[0];
  const text = new TextDecoder().decode(Uint8Array.from(ex.ids));
  const answerStart = text.indexOf("=") + 1;
  for (let t = 0; t < ex.ids.length; t++) assertEquals(ex.loss[t], t >= answerStart ? 1 : 0);

  const long = JSON.stringify({ text: "x".repeat(50) });
  assertEquals(buildDataset(long, bytes, { ctx: 16 }).train[0].ids.length, 17);
  const split = buildDataset(long, bytes, { ctx: 16, overflow: "split" });
  assertEquals(split.train.map((e) => e.ids.length).sort(), [17, 17, 17, 2].sort());
  assertThrows(() => buildDataset(long, bytes, { ctx: 16, overflow: "drop" }), DataError);
  assertThrows(
    () => buildDataset(rows, bytes, { valSplit: 20 }),
    DataError,
    "leaves no training example",
  );
});

Deno.test("makeBatch pads with a zero mask and shifts targets", () => {
  const ds = buildDataset(
    ['{"prompt": "ab", "response": "c"}', '{"prompt": "a", "response": "bcde"}'].join("\n"),
    bytes,
  );
  const batch = makeBatch(ds.train);
  assertEquals(batch.B, 2);
  assertEquals(batch.T, 4);
  for (let b = 0; b < 2; b++) {
    const e = ds.train[b];
    for (let t = 0; t < e.ids.length - 1; t++) assertEquals(batch.targets[b][t], e.ids[t + 1]);
    for (let t = e.ids.length - 1; t < batch.T; t++) assertEquals(batch.mask[b][t], 0);
  }
  assertEquals(batch.count, 1 + 4);
});

Deno.test("pretrainCorpus is reproducible from its seed and covers every skill", () => {
  const a = pretrainCorpus(200, 7), b = pretrainCorpus(200, 7);
  assertEquals(a, b);
  assert(a !== pretrainCorpus(200, 8));
  for (const s of ["copy", "reverse", "sort", "add", "recall"]) assert(a.includes(`"${s}\\n`));
  for (const line of a.trim().split("\n")) {
    const t: string = JSON.parse(line).text;
    const [skill, qa] = t.trimEnd().split("\n");
    const [q, ans] = qa.split("=");
    if (skill === "reverse") assertEquals(ans, [...q].reverse().join(""));
    if (skill === "sort") assertEquals(ans, [...q].sort().join(""));
    if (skill === "add") assertEquals(Number(ans), eval(q));
  }
});
