/**
 * Bad-input corpus, data (issue 13 items 6–7): rows far longer than the call stack allows a
 * spread of, a UTF-8 byte-order mark, invalid UTF-8, and the bad-row message naming the real
 * option.
 */
import { assert, assertEquals, assertMatch, assertThrows } from "@std/assert";
import { buildDataset, DataError, decodeJsonl, loadDataset, makeBatch } from "../lib/train/data.ts";
import { ByteTokenizer } from "../lib/tokenizer/mod.ts";

const tok = new ByteTokenizer();
const LONG = 300_000; // tokens; a spread of ≥ ~125k elements overflowed the stack

Deno.test("bad input 6: a 300k-token row works under every --overflow mode", () => {
  const text = JSON.stringify({ prompt: "Q: ", response: "x".repeat(LONG) }) + "\n" +
    JSON.stringify({ text: "short row" });
  const ctx = 1024;
  const trunc = buildDataset(text, tok, { ctx, overflow: "truncate" });
  assertEquals(trunc.train.length, 2);
  assertEquals(Math.max(...trunc.train.map((e) => e.ids.length)), ctx + 1);

  const split = buildDataset(text, tok, { ctx, overflow: "split" });
  const long = split.train.filter((e) => e.line === 1);
  assertEquals(long.length, Math.ceil((LONG + 3 - 1) / ctx));
  // the pieces overlap by one token and cover the row exactly once
  let covered = 0;
  for (const e of long) covered += e.ids.length - 1;
  assertEquals(covered, LONG + 3 - 1);
  assertEquals(long.every((e) => e.ids.length <= ctx + 1), true);

  const drop = buildDataset(text, tok, { ctx, overflow: "drop" });
  assertEquals(drop.train.length, 1);
  assertEquals(drop.dropped, 1);

  // no truncation at all: one example of the whole row, batched without a spread
  const whole = buildDataset(text, tok, { ctx: LONG + 10 });
  const big = whole.train.find((e) => e.line === 1)!;
  assertEquals(big.ids.length, LONG + 3);
  assertEquals(big.loss[3], 1);
  assertEquals(big.loss[2], 0);
  assertEquals(makeBatch(whole.train).T, LONG + 2);
});

Deno.test("bad input 7: a UTF-8 byte-order mark is stripped from row 1", () => {
  const bytes = new TextEncoder().encode("\uFEFF" + JSON.stringify({ text: "hello" }));
  assertEquals(bytes.subarray(0, 3), new Uint8Array([0xef, 0xbb, 0xbf]));
  const ds = buildDataset(bytes, tok);
  assertEquals(ds.bad, []);
  assertEquals(ds.train.length, 1);
  assertEquals(tok.decode(ds.train[0].ids), "hello");
  // the same as a string (readTextFile keeps the BOM)
  assertEquals(buildDataset("\uFEFF" + JSON.stringify({ text: "hello" }), tok).bad, []);
});

Deno.test("bad input 7: invalid UTF-8 names the line instead of training on U+FFFD", async () => {
  const enc = new TextEncoder();
  const good = enc.encode(JSON.stringify({ text: "fine \u00e9" }) + "\n");
  const bad = enc.encode(JSON.stringify({ text: "broken XY" }) + "\n");
  bad[bad.indexOf(0x58)] = 0xff; // "X" → a byte that is never UTF-8
  bad[bad.indexOf(0x59)] = 0xc3; // "Y" → a lead byte without its continuation
  const bytes = new Uint8Array([...good, ...bad, ...good]);
  const { invalid } = decodeJsonl(bytes);
  assertEquals([...invalid.keys()], [2]);
  assertMatch(invalid.get(2)!, /invalid UTF-8 \(byte 0xff at byte 17 of the line\)/);

  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/bad-utf8.jsonl`;
    await Deno.writeFile(path, bytes);
    const ds = await loadDataset(path, tok);
    assertEquals(ds.bad.map((b) => b.line), [2]);
    assertMatch(ds.bad[0].reason, /invalid UTF-8/);
    assertEquals(ds.train.length, 2);
    for (const e of ds.train) assert(!tok.decode(e.ids).includes("\uFFFD"));
    const err = await loadDataset(path, tok, { onBadRow: "fail" }).then(
      () => null,
      (e) => e as Error,
    );
    assert(err instanceof DataError);
    assertMatch(err.message, new RegExp(`${path}:2: invalid UTF-8`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bad input 7: the bad-row error names the real option (--fail-on-bad-rows)", () => {
  const e = assertThrows(
    () => buildDataset('{"text": "ok"}\n{"txt": 1}\n', tok, { onBadRow: "fail" }, "d.jsonl"),
    DataError,
  );
  assertMatch(e.message, /^d\.jsonl:2: unknown row layout/);
  assertMatch(e.message, /--fail-on-bad-rows/);
  assert(!e.message.includes("--skip-bad-rows"), e.message);
});
