/**
 * `deno task reproduce` end to end on the embedded model (a tiny grid: facts K = 8, two seeds,
 * two steps): the unsharded run writes every promised file, and two shards merged with
 * `--merge` give the same table as the unsharded run (values, intervals, paired differences;
 * only the measured seconds differ). Bad arguments fail with messages that name the fix.
 */
import { assert, assertEquals, assertMatch } from "@std/assert";
import { gpu } from "./_helpers.ts";

const SCRIPT = new URL("../scripts/reproduce.ts", import.meta.url).pathname;

async function reproduce(args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", SCRIPT, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

const grid = [
  "--testbed",
  "facts",
  "--K",
  "8",
  "--seeds",
  "2",
  "--steps",
  "2",
  "--batch",
  "4",
  "--variants",
  "untuned,state,lora-eq-state",
];

/** summary.json without the measured times. */
async function summary(dir: string) {
  const lines = JSON.parse(await Deno.readTextFile(`${dir}/summary.json`));
  return lines.map(({ seconds: _s, ...rest }: Record<string, unknown>) => rest);
}

Deno.test({
  name: "reproduce: files of a run; --shard 0/2 + 1/2 merged equal the unsharded table",
  ignore: !gpu,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const whole = await reproduce([...grid, "--workers", "1", "--out", `${dir}/whole`]);
      assertEquals(whole.code, 0, whole.stderr);
      for (const f of ["rows.jsonl", "manifest.json", "table.md", "summary.json", "metric.png"]) {
        assert((await Deno.stat(`${dir}/whole/${f}`)).isFile, f);
      }
      const table = await Deno.readTextFile(`${dir}/whole/table.md`);
      assertMatch(table, /recall \(95% CI\)/);
      assertMatch(table, /Equal trainable numbers/);
      assertMatch(table, /skill\.mean/);
      for (const i of [0, 1]) {
        const r = await reproduce([...grid, "--shard", `${i}/2`, "--out", `${dir}/s${i}`]);
        assertEquals(r.code, 0, r.stderr);
      }
      const m = await reproduce([
        "--testbed",
        "facts",
        "--merge",
        `${dir}/s0`,
        `${dir}/s1`,
        "--out",
        `${dir}/merged`,
      ]);
      assertEquals(m.code, 0, m.stderr);
      assertEquals(await summary(`${dir}/merged`), await summary(`${dir}/whole`));
      const manifest = JSON.parse(await Deno.readTextFile(`${dir}/merged/manifest.json`));
      assertEquals(manifest.merged.length, 2);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("reproduce: bad arguments name the fix", async () => {
  const a = await reproduce(["--testbed", "jsonl"]);
  assertEquals(a.code, 2);
  assertMatch(a.stderr, /--data/);
  const b = await reproduce(["--testbed", "facts", "--variants", "nope", "--workers", "1"]);
  assert(b.code !== 0);
  assertMatch(b.stderr, /unknown nope; known: untuned,state/);
  const c = await reproduce(["--testbed", "facts", "--shard", "3/2"]);
  assert(c.code !== 0);
  assertMatch(c.stderr, /0 ≤ i < n/);
});

Deno.test({
  name:
    "reproduce --testbed jsonl: a prompt/response file with a held-out split, and a harness task",
  ignore: !gpu,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const rows = Array.from({ length: 20 }, (_, i) => ({
        prompt: `q${i}=`,
        response: `${i % 3 === 0 ? "yes" : "no"}\n`,
      }));
      await Deno.writeTextFile(`${dir}/d.jsonl`, rows.map((r) => JSON.stringify(r)).join("\n"));
      const r = await reproduce([
        ...["--testbed", "jsonl", "--data", `${dir}/d.jsonl`, "--seeds", "2", "--steps", "2"],
        ...["--batch", "4", "--variants", "untuned,state", "--workers", "1", "--out", `${dir}/o`],
        ...["--harness", "skill_choice", "--harness-limit", "8"],
      ]);
      assertEquals(r.code, 0, r.stderr);
      const table = await Deno.readTextFile(`${dir}/o/table.md`);
      assertMatch(table, /exact \(95% CI\)/);
      assertMatch(table, /## skill_choice\.acc\S* \(%\) after tuning/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
