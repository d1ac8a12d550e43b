import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert";
import { type Cell, gridCells, gridHash, parseShard, shardCells } from "../lib/experiments/grid.ts";
import { mergeShards, readRows, runShard } from "../lib/experiments/fanout.ts";
import { markdownSummary, summarise } from "../lib/experiments/summary.ts";
import { Rng } from "../lib/util/rng.ts";

const SPEC = {
  testbeds: [{ name: "facts", sweep: { key: "K", values: [16, 128] } }, { name: "skill" }],
  variants: [
    { name: "untuned", kind: "untuned" },
    { name: "state", kind: "state" },
    { name: "lifted-memory", kind: "lifted-memory", sweep: { key: "M", values: [64, 256] } },
    { name: "lora", kind: "lora", options: { rank: 4 } },
  ],
  seeds: [0, 1, 2, 3, 4],
  options: { steps: 100 },
};

/** A fast fake cell runner: a pure function of the cell (so any process computes the same). */
async function fake(cell: Cell) {
  await Promise.resolve();
  const rng = new Rng(cell.index * 7 + 1);
  const base = { untuned: 0.1, state: 0.5, "lifted-memory": 0.52, lora: 0.8 }[cell.variant]!;
  const items: number[] = Array.from({ length: 50 }, () => (rng.next() < base ? 1 : 0));
  const losses = Array.from(
    { length: 20 },
    (_, s) => 3 * Math.exp(-s * base / 4) + rng.next() * 0.1,
  );
  return {
    metrics: { recall: items.reduce((a, b) => a + b, 0) / 50, trainable: cell.params.M ?? 8192 },
    items,
    curve: { steps: losses.map((_, i) => i + 1), losses },
    seconds: 1 + cell.index % 3,
  };
}

Deno.test("gridCells: order, ids, sweeps", () => {
  const cells = gridCells(SPEC);
  assertEquals(cells.length, (2 + 1) * 5 * (1 + 1 + 2 + 1));
  assertEquals(cells.map((c) => c.index), cells.map((_, i) => i));
  assertEquals(cells[3].id, "facts/K=16/seed=0/lifted-memory/M=256");
  assertEquals(cells[3].params, { K: 16, M: 256 });
  assertEquals(cells[3].testbedParams, { K: 16 });
  assertEquals(new Set(cells.map((c) => c.id)).size, cells.length);
  assertThrows(() => gridCells({ ...SPEC, variants: [SPEC.variants[0], SPEC.variants[0]] }));
  assert(gridHash(SPEC) !== gridHash({ ...SPEC, seeds: [0, 1] }));
  assertEquals(gridHash(SPEC), gridHash(structuredClone(SPEC)));
});

Deno.test("parseShard and shardCells partition the grid", () => {
  const cells = gridCells(SPEC);
  const parts = [0, 1, 2].map((i) => shardCells(cells, parseShard(`${i}/3`)));
  assertEquals(parts.flat().map((c) => c.index).sort((a, b) => a - b), cells.map((c) => c.index));
  assertEquals(parts[1][0].index, 1);
  assertEquals(parts[1][1].index, 4);
  for (const bad of ["3/3", "1", "-1/2", "a/b", "0/0"]) {
    assertThrows(() => parseShard(bad), RangeError, `"${bad}"`);
  }
});

Deno.test("merged shards equal the unsharded table", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const whole = await runShard({ spec: SPEC, runner: fake, outDir: `${tmp}/all`, command: [] });
    const dirs = [0, 1, 2, 3].map((i) => `${tmp}/shard${i}`);
    // shards in reverse order, as a scheduler may finish them
    for (let i = 3; i >= 0; i--) {
      await runShard({ spec: SPEC, shard: { index: i, count: 4 }, runner: fake, outDir: dirs[i] });
    }
    const merged = await mergeShards(dirs);
    assertEquals(merged.missing, []);
    assertEquals(merged.rows, whole.rows);
    assertEquals(merged.manifest.merged!.length, 4);
    const opts = { metric: "recall", targetLoss: 1.5, window: 2 };
    const a = markdownSummary(summarise(whole.rows, opts), 100);
    const b = markdownSummary(summarise(merged.rows, opts), 100);
    assertEquals(b, a);
    if (Deno.env.get("SHOW_TABLE")) console.log(a);
    assert(a.includes("no significant difference"), a); // lifted-memory vs state
    assert(/lora \| 80\.\d \[/.test(a) && /\+3\d\.\d \[/.test(a), a); // lora beats state
    // a missing shard is an error naming the cells; partial merges list them
    await assertRejects(() => mergeShards(dirs.slice(0, 3)), RangeError, "cells are in no shard");
    const part = await mergeShards(dirs.slice(0, 3), true);
    assertEquals(part.missing.length, shardCells(gridCells(SPEC), { index: 3, count: 4 }).length);
    // a shard of another grid is refused
    await runShard({ spec: { ...SPEC, seeds: [0] }, runner: fake, outDir: `${tmp}/other` });
    await assertRejects(() => mergeShards([dirs[0], `${tmp}/other`]), RangeError, "one grid");
    // resume skips the rows already written
    let ran = 0;
    await runShard({
      spec: SPEC,
      shard: { index: 0, count: 4 },
      outDir: dirs[0],
      resume: true,
      runner: (c) => (ran++, fake(c)),
    });
    assertEquals(ran, 0);
    const shard0 = shardCells(gridCells(SPEC), { index: 0, count: 4 }).length;
    assertEquals((await readRows(`${dirs[0]}/rows.jsonl`)).length, shard0);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
