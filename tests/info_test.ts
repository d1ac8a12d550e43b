/**
 * `deno task info` as a subprocess: the memory plan flags (`--plan-T`, `--plan-B`,
 * `--budget-gb`), `--shape` without a checkpoint, the `memoryPlan` JSON next to the existing keys,
 * and usage errors. The plan numbers are compared with `memoryPlan` called in-process.
 */
import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { loadModel } from "../lib/model/load.ts";
import { configParams, memoryPlan, PLAN_CATEGORIES } from "../lib/model/memory_plan.ts";
import { OFFICIAL_SHAPES } from "../lib/model/random.ts";
import { fixture, hasFixtures, runScript } from "./_helpers.ts";

const MODEL = fixture("models/tiny-rwkv7-834K.safetensors");

const info = (args: string[]) => runScript("info.ts", args);

Deno.test({
  name: "info --model --json keeps its keys and adds memoryPlan for --plan-T/--plan-B",
  ignore: !hasFixtures,
  fn: async () => {
    const r = await info(["--model", MODEL, "--json", "--plan-T", "64", "--plan-B", "2"]);
    assertEquals(r.code, 0, r.err);
    const j = JSON.parse(r.out);
    for (const k of ["path", "format", "fileDtype", "fileBytes", "config", "params", "gpuBytes"]) {
      assert(k in j, `key ${k} missing`);
    }
    const cfg = (await loadModel(MODEL)).weights.config;
    assertEquals(j.config, cfg);
    assertEquals([j.memoryPlan.T, j.memoryPlan.B, j.memoryPlan.budgetBytes], [64, 2, 8e9]);
    for (const mode of ["forward", "state-tuning"] as const) {
      for (const weightDtype of ["f32", "f16"] as const) {
        const want = memoryPlan(cfg, { mode, T: 64, B: 2, weightDtype });
        const got = j.memoryPlan[mode][weightDtype];
        assertEquals(got.bytes, want.bytes, `${mode} ${weightDtype}`);
        assertEquals(got.total, want.total);
        assertEquals(got.fits, true);
      }
    }
  },
});

Deno.test({
  name: "info --model prints the plan table after the checkpoint facts",
  ignore: !hasFixtures,
  fn: async () => {
    const r = await info(["--model", MODEL]);
    assertEquals(r.code, 0, r.err);
    assertStringIncludes(r.out, "parameters   829,888");
    assertStringIncludes(r.out, "memory plan  B 1 × T 512");
    for (const c of PLAN_CATEGORIES) assert(new RegExp(`^  ${c} `, "m").test(r.out), c);
    assertStringIncludes(r.out, "fits 8.000 GB");
  },
});

Deno.test("info --shape 1.5B: config without a checkpoint; state tuning at T 512 fits 8 GB", async () => {
  const r = await info(["--shape", "1.5B", "--json"]);
  assertEquals(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  const cfg = OFFICIAL_SHAPES["1.5B"];
  assertEquals(j.shape, "1.5B");
  assertEquals(j.config, cfg);
  assertEquals(j.params, configParams(cfg));
  assertEquals([j.memoryPlan.T, j.memoryPlan.B], [512, 1]);
  const tuning = j.memoryPlan["state-tuning"];
  assertEquals(tuning.f32.total, memoryPlan(cfg, { mode: "state-tuning", T: 512 }).total);
  assert(tuning.f32.fits && tuning.f32.total <= 8e9, `${tuning.f32.total}`);
  assert(tuning.f16.fits && tuning.f16.total < tuning.f32.total);
  const text = await info(["--shape", "1.5B"]);
  assertEquals(text.code, 0, text.err);
  assertStringIncludes(text.out, "shape        1.5B (official shape; no checkpoint)");
  assert(/^ {2}fits 8\.000 GB +yes +yes +yes +yes$/m.test(text.out), text.out);
});

Deno.test("info --budget-gb 4: the 1.5B f32 step does not fit, f16 does", async () => {
  const r = await info(["--shape", "1.5B", "--budget-gb", "4", "--json"]);
  assertEquals(r.code, 0, r.err);
  const t = JSON.parse(r.out).memoryPlan["state-tuning"];
  assertEquals([t.f32.fits, t.f16.fits], [false, true]);
});

Deno.test("info: a shape that cannot be laid out reports why instead of failing", async () => {
  const r = await info(["--shape", "0.1B", "--plan-T", "65536", "--json"]);
  assertEquals(r.code, 0, r.err);
  const e = JSON.parse(r.out).memoryPlan["state-tuning"].f32;
  assertStringIncludes(e.error, "storage binding");
});

Deno.test("info: bad arguments exit 2 with the usage", async () => {
  for (
    const [args, msg] of [
      [[], "exactly one of --model"],
      [["--model", "x.pth", "--shape", "1.5B"], "exactly one of --model"],
      [["--shape", "3B"], "--shape: expected one of 0.1B"],
      [["--shape", "1.5B", "--plan-T", "0"], "--plan-T: expected a positive integer"],
    ] as const
  ) {
    const r = await info([...args]);
    assertEquals(r.code, 2, `${args.join(" ")}: ${r.err}`);
    assertStringIncludes(r.err, msg);
    assertStringIncludes(r.err, "Usage: deno task info");
  }
});
