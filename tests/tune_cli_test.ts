/**
 * `deno task tune` under faults, as real processes with real signals (issue 13 items 1–5): SIGTERM
 * and SIGINT save and exit 143 / 130 with one message; kill -9 loses at most --save-every steps;
 * a resumed run ends where an uninterrupted one does; a missing checkpoint, a mistyped --out, a
 * changed --steps and an --out that is a file are refused before step 1; `eval --out FILE` too.
 * Uses the embedded model and a tiny dataset in a temp folder.
 */
import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { loadState } from "../lib/train/state_file.ts";
import { loadCheckpoint } from "../lib/train/checkpoint.ts";
import { loadModel } from "../lib/model/load.ts";
import { gpu, maxAbsDiff, runScript } from "./_helpers.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const MODEL = `${ROOT}models/default.safetensors`;
const words = ["abc", "hello", "xyz", "stop", "rwkv", "gpu", "state", "tune"];
const dir = await Deno.makeTempDir({ prefix: "tune_cli_" });
const DATA = `${dir}/data.jsonl`;
await Deno.writeTextFile(
  DATA,
  words.map((w) => JSON.stringify({ prompt: `${w}=`, response: [...w].reverse().join("") }))
    .join("\n") + "\n",
);
const STEPS = 60;
const base = (out: string) => [
  "--model",
  MODEL,
  "--data",
  DATA,
  "--out",
  out,
  "--steps",
  String(STEPS),
  "--batch",
  "2",
  "--save-every",
  "5",
  "--state-dtype",
  "f32",
];

/** A tune process (`deno task tune`, or `deno run` for kill -9) with stderr read as it comes. */
function spawn(args: string[], viaTask = true) {
  const cmd = new Deno.Command(Deno.execPath(), {
    args: viaTask ? ["task", "-q", "tune", ...args] : ["run", "-A", "scripts/tune.ts", ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1", XDG_RUNTIME_DIR: "/tmp" },
    stdout: "piped",
    stderr: "piped",
  });
  const child = cmd.spawn();
  let err = "";
  const dec = new TextDecoder();
  const reading = (async () => {
    for await (const c of child.stderr) err += dec.decode(c);
  })();
  const out = new Response(child.stdout).text();
  return {
    child,
    err: () => err,
    /** resolves once `out`'s checkpoint has reached step `n` (progress output is throttled) */
    async untilCheckpoint(out: string, n: number) {
      for (let i = 0; i < 3000; i++) {
        const step = await loadCheckpoint(`${out}/checkpoint`).then((c) => c.step, () => 0);
        if (step >= n) return;
        await new Promise((r) => setTimeout(r, 10));
      }
      throw new Error(`no checkpoint at step ${n} in ${out}:\n${err}`);
    },
    async done() {
      const st = await child.status;
      await reading;
      return { code: st.code, out: await out, err };
    },
  };
}

async function finalState(out: string): Promise<Float32Array[]> {
  const { weights } = await loadModel(MODEL);
  return (await loadState(`${out}/state.pth`, weights.config)).states;
}

let reference: Float32Array[] | undefined;
async function uninterrupted(): Promise<Float32Array[]> {
  if (reference) return reference;
  const r = await spawn(base(`${dir}/full`)).done();
  assertEquals(r.code, 0, r.err);
  return (reference = await finalState(`${dir}/full`));
}

for (const [sig, code] of [["SIGTERM", 143], ["SIGINT", 130]] as const) {
  Deno.test({
    name: `tune CLI: ${sig} saves a checkpoint, exits ${code}, says so once; --resume finishes it`,
    ignore: !gpu,
    fn: async () => {
      const full = await uninterrupted();
      const out = `${dir}/${sig}`;
      const p = spawn(base(out));
      await p.untilCheckpoint(out, 5);
      p.child.kill(sig);
      const r = await p.done();
      assertEquals(r.code, code, r.err);
      assertEquals(r.err.split(`${sig}: stopping after this step`).length - 1, 1, r.err);
      const ck = await loadCheckpoint(`${out}/checkpoint`);
      assert(ck.step >= 5 && ck.step < STEPS, `checkpoint at step ${ck.step}`);
      assertEquals(JSON.parse(r.out).stopReason, "aborted");
      const again = await spawn([...base(out), "--resume"]).done();
      assertEquals(again.code, 0, again.err);
      const got = await finalState(out);
      for (let l = 0; l < got.length; l++) {
        assertEquals(maxAbsDiff(got[l], full[l]), 0, `layer ${l}`);
      }
    },
  });
}

Deno.test({
  name: "tune CLI: kill -9 loses at most --save-every steps; --resume ends where a full run does",
  ignore: !gpu,
  fn: async () => {
    const full = await uninterrupted();
    const out = `${dir}/kill9`;
    const p = spawn(base(out), false);
    await p.untilCheckpoint(out, 5);
    p.child.kill("SIGKILL");
    const r = await p.done();
    assert(r.code !== 0);
    const ck = await loadCheckpoint(`${out}/checkpoint`);
    assert(ck.step >= 5, `a periodic checkpoint survived (step ${ck.step})`);
    const again = await spawn([...base(out), "--resume"]).done();
    assertEquals(again.code, 0, again.err);
    const got = await finalState(out);
    for (let l = 0; l < got.length; l++) assertEquals(maxAbsDiff(got[l], full[l]), 0, `layer ${l}`);
  },
});

Deno.test({
  name: "tune CLI: refusals before step 1 (no checkpoint, typo, --steps changed, --out a file)",
  ignore: !gpu,
  fn: async () => {
    const typo = `${dir}/no-such-run`;
    let r = await runScript("tune.ts", [...base(typo), "--resume"]);
    assertEquals(r.code, 1, r.err);
    assertStringIncludes(r.err, `${typo}/checkpoint/checkpoint.json does not exist`);
    // the path itself may hold "1/" (a random temp-dir name): look for progress past it
    assert(!r.err.replaceAll(typo, "").includes("1/"), "no step ran");
    const exists = await Deno.stat(typo).then(() => true, () => false);
    assertEquals(exists, false, "nothing was created");
    const out = `${dir}/short`;
    const short = base(out).map((x) => (x === String(STEPS) ? "3" : x));
    assertEquals((await runScript("tune.ts", short)).code, 0);
    const before = await Deno.readTextFile(`${out}/checkpoint/checkpoint.json`);
    r = await runScript("tune.ts", [...base(out), "--resume"]);
    assertEquals(r.code, 1);
    assertStringIncludes(r.err, "totalSteps = 3, this resume has 60 (--steps/--epochs)");
    assertStringIncludes(r.err, "learning-rate schedule");
    r = await runScript("tune.ts", short);
    assertEquals(r.code, 1);
    assertStringIncludes(r.err, "holds the checkpoint of an earlier run");
    assertEquals(await Deno.readTextFile(`${out}/checkpoint/checkpoint.json`), before);
    r = await runScript("tune.ts", base(DATA));
    assertEquals(r.code, 1);
    assertStringIncludes(r.err, `--out ${DATA} exists and is a file`);
    assert(!r.err.includes("adapter:"), "failed before loading the model onto the GPU");
    for (
      const [flags, msg] of [
        [
          ["--lifted", "featureRatio=x"],
          '--lifted "featureRatio=x": featureRatio must be a number',
        ],
        [["--lifted", "on", "--dbp", "kappa=3"], "kappa must be in [0, 1], got 3"],
        [["--dbp", "on"], "--dbp moves the lifted state's R: it needs --lifted"],
      ] as const
    ) {
      r = await runScript("tune.ts", [...base(`${dir}/flags`), ...flags]);
      assertEquals(r.code, 2, r.err);
      assertStringIncludes(r.err, msg);
      assert(!r.err.includes("adapter:"), "a usage error comes before any loading");
    }
    const e = await runScript("eval.ts", [
      "--tasks",
      "lambada",
      "--data-dir",
      dir,
      "--out",
      DATA,
      "--quiet",
    ]);
    assertEquals(e.code, 1, e.err);
    assertStringIncludes(e.err, `--out ${DATA} exists and is a file`);
    assertStringIncludes(await Deno.readTextFile(DATA), '"prompt"', "the file is untouched");
  },
});

Deno.test({
  name: "tune CLI: --lifted --dbp, SIGTERM and --resume end where an uninterrupted run does",
  ignore: !gpu,
  fn: async () => {
    const lifted = [
      "--lifted",
      "featureRatio=0.25,layers=1,calibrationSequences=8",
      "--dbp",
      "lr=0.01",
    ];
    const args = (out: string) => [...base(out), ...lifted];
    const full = await spawn(args(`${dir}/lifted-full`)).done();
    assertEquals(full.code, 0, full.err);
    assertEquals(JSON.parse(full.out).lifted, `${dir}/lifted-full/lifted.safetensors`);
    const out = `${dir}/lifted-term`;
    const p = spawn(args(out));
    await p.untilCheckpoint(out, 5);
    p.child.kill("SIGTERM");
    assertEquals((await p.done()).code, 143);
    const ck = await loadCheckpoint(`${out}/checkpoint`);
    assert(ck.step < STEPS && ck.tensors["lifted.s0.adam_v"], `step ${ck.step}, lifted moments`);
    const again = await spawn([...args(out), "--resume"]).done();
    assertEquals(again.code, 0, again.err);
    const a = await Deno.readFile(`${dir}/lifted-full/lifted.safetensors`);
    const b = await Deno.readFile(`${out}/lifted.safetensors`);
    assertEquals(b, a, "lifted.safetensors identical");
    const s0 = await finalState(out), ref = await finalState(`${dir}/lifted-full`);
    for (let l = 0; l < s0.length; l++) assertEquals(maxAbsDiff(s0[l], ref[l]), 0, `S0 layer ${l}`);
    const h = JSON.parse(await Deno.readTextFile(`${out}/history.json`));
    assertEquals(h.length, STEPS);
    assert(Number.isFinite(h.at(-1).decorrelationLoss), "DBP history kept across the resume");
  },
});
