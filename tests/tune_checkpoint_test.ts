/**
 * Training checkpoints (lib/train/checkpoint.ts) under faults: one generation kept back,
 * corrupt or non-finite files refused with the file named, version-1 checkpoints read, output
 * folders checked before any work. No GPU needed.
 */
import { assert, assertEquals, assertRejects, assertStringIncludes } from "@std/assert";
import {
  type Checkpoint,
  CheckpointError,
  loadCheckpoint,
  prepareOutDir,
  saveCheckpoint,
} from "../lib/train/checkpoint.ts";
import { serializeSafetensors } from "../lib/model/safetensors.ts";
import type { RwkvConfig } from "../lib/model/types.ts";

const config = { nLayer: 1, nHead: 1 } as RwkvConfig;

function ck(step: number, x = step): Checkpoint {
  const row = { step, loss: 1, lr: 1, gradNorm: 1, tokensPerSecond: 1, elapsedMs: 1 };
  return {
    step,
    tensors: { "state.s0": Float32Array.of(x, 2), "state.s0.adam_m": Float32Array.of(0, 0) },
    history: [row],
    config,
    options: { totalSteps: 10 },
  };
}

const files = (dir: string) => [...Deno.readDirSync(dir)].map((e) => e.name).sort();

Deno.test("checkpoint: each save keeps the previous generation and removes older files", async () => {
  const dir = await Deno.makeTempDir();
  for (const s of [1, 2, 3]) await saveCheckpoint(dir, ck(s));
  assertEquals(files(dir), [
    "checkpoint-0000002.safetensors",
    "checkpoint-0000003.safetensors",
    "checkpoint.json",
    "checkpoint.prev.json",
  ]);
  assertEquals((await loadCheckpoint(dir)).tensors["state.s0"], Float32Array.of(3, 2));
  assertEquals((await loadCheckpoint(dir, "previous")).step, 2);
  await saveCheckpoint(dir, ck(3, 7)); // the same step again: replaced, the previous one kept
  assertEquals((await loadCheckpoint(dir)).tensors["state.s0"], Float32Array.of(7, 2));
  assertEquals((await loadCheckpoint(dir, "previous")).step, 2);
});

Deno.test("checkpoint: a non-finite tensor is never written, and refused on load", async () => {
  const dir = await Deno.makeTempDir();
  await saveCheckpoint(dir, ck(1));
  const bad = ck(2);
  bad.tensors["state.s0"][1] = NaN;
  const e = await assertRejects(() => saveCheckpoint(dir, bad), CheckpointError);
  assertStringIncludes(e.message, 'tensor "state.s0" holds NaN at element 1');
  assertEquals((await loadCheckpoint(dir)).step, 1, "the last good checkpoint stays");
  // a NaN written by someone else: named with the file
  const t = { "state.s0": { shape: [2], data: Float32Array.of(1, Infinity) } };
  await Deno.writeFile(`${dir}/checkpoint-0000001.safetensors`, serializeSafetensors(t, "f32"));
  const e2 = await assertRejects(() => loadCheckpoint(dir), CheckpointError);
  assertStringIncludes(e2.message, `${dir}/checkpoint-0000001.safetensors: tensor "state.s0"`);
  assertStringIncludes(e2.message, "Infinity");
});

Deno.test("checkpoint: corrupt JSON and wrong fields name the file and the previous one", async () => {
  const dir = await Deno.makeTempDir();
  await saveCheckpoint(dir, ck(1));
  await saveCheckpoint(dir, ck(2));
  const text = await Deno.readTextFile(`${dir}/checkpoint.json`);
  await Deno.writeTextFile(`${dir}/checkpoint.json`, text.slice(0, text.length / 2));
  let e = await assertRejects(() => loadCheckpoint(dir), CheckpointError);
  assertStringIncludes(e.message, `${dir}/checkpoint.json: not valid JSON`);
  assertStringIncludes(
    e.message,
    `The previous checkpoint (step 1) is ${dir}/checkpoint.prev.json`,
  );
  await Deno.writeTextFile(
    `${dir}/checkpoint.json`,
    JSON.stringify({ ...JSON.parse(text), history: 3 }),
  );
  e = await assertRejects(() => loadCheckpoint(dir), CheckpointError);
  assertStringIncludes(e.message, `${dir}/checkpoint.json: not a valid checkpoint: history`);
  await Deno.remove(`${dir}/checkpoint-0000002.safetensors`);
  await Deno.writeTextFile(`${dir}/checkpoint.json`, text);
  e = await assertRejects(() => loadCheckpoint(dir), CheckpointError);
  assertStringIncludes(
    e.message,
    `${dir}/checkpoint-0000002.safetensors: its tensor file is unreadable`,
  );
  await Deno.rename(`${dir}/checkpoint.prev.json`, `${dir}/checkpoint.json`);
  assertEquals((await loadCheckpoint(dir)).step, 1, "the advice in the message works");
  e = await assertRejects(() => loadCheckpoint(`${dir}/nope`), CheckpointError);
  assertStringIncludes(e.message, `${dir}/nope/checkpoint.json does not exist`);
});

Deno.test("checkpoint: version 1 (checkpoint.safetensors with s0, m, v) reads as the state part", async () => {
  const dir = await Deno.makeTempDir();
  const t = (x: number) => ({ shape: [2], data: Float32Array.of(x, x) });
  await Deno.writeFile(
    `${dir}/checkpoint.safetensors`,
    serializeSafetensors({ s0: t(1), m: t(2), v: t(3) }, "f32"),
  );
  const { tensors: _t, ...meta } = ck(4);
  await Deno.writeTextFile(`${dir}/checkpoint.json`, JSON.stringify(meta));
  const got = await loadCheckpoint(dir);
  assertEquals(Object.keys(got.tensors).sort(), ["state.s0", "state.s0.adam_m", "state.s0.adam_v"]);
  assertEquals(got.tensors["state.s0.adam_v"], Float32Array.of(3, 3));
});

Deno.test("prepareOutDir: creates folders, refuses a file or a path under a file", async () => {
  const dir = await Deno.makeTempDir();
  await prepareOutDir(`${dir}/a/b`, "--out");
  assert((await Deno.stat(`${dir}/a/b`)).isDirectory);
  await Deno.writeTextFile(`${dir}/f`, "x");
  let e = await assertRejects(() => prepareOutDir(`${dir}/f`, "--out"));
  assertStringIncludes(e.message, `--out ${dir}/f exists and is a file`);
  e = await assertRejects(() => prepareOutDir(`${dir}/f/sub`, "--out"));
  assertStringIncludes(e.message, `--out ${dir}/f/sub cannot be created`);
  assertEquals(await Deno.readTextFile(`${dir}/f`), "x");
});
