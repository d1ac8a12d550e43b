/**
 * `scripts/reproduce.ts` end to end on a seeded random tiny model: a minimal grid (one seed,
 * two steps, a handful of items) writes every promised file; and the ablation helpers'
 * bookkeeping (trainable counts, mean ± std, CSV) on their own.
 */
import { assert, assertEquals } from "@std/assert";
import { gpu } from "./_helpers.ts";
import { randomWeights, tinyConfig } from "../lib/model/random.ts";
import { tensorsFromWeights } from "../lib/model/load.ts";
import { serializeSafetensors } from "../lib/model/safetensors.ts";
import {
  type AblationRun,
  markdownTable,
  meanStd,
  runsToCsv,
  summariseRuns,
  trainableCount,
} from "../lib/experiments/ablation.ts";

Deno.test("ablation: trainable counts, mean ± std, table and CSV", () => {
  const cfg = { nLayer: 2, nHead: 1, headSize: 64 };
  assertEquals(trainableCount(cfg, "untuned", 0, []), 0);
  assertEquals(trainableCount(cfg, "state", 0, []), 2 * 64 * 64);
  assertEquals(trainableCount(cfg, "dbp", 128, [1]), 2 * 64 * 64 + 64 * 128);
  const ms = meanStd([1, 2, 3]);
  assertEquals([ms.mean, ms.std, ms.n], [2, 1, 3]);
  const run = (seed: number, acc: number): AblationRun => ({
    variant: "state",
    label: "state tuning",
    seed,
    task: "t",
    M: 0,
    liftedLayers: [],
    trainable: 8192,
    accuracy: acc,
    tokenAccuracy: 0.5,
    heldOutLoss: 1,
    finalLoss: 1,
    history: [],
    seconds: 1,
  });
  const sum = summariseRuns([run(0, 0.5), run(1, 0.7)]);
  assertEquals(sum.length, 1);
  assert(Math.abs(sum[0].accuracy.mean - 0.6) < 1e-12);
  assert(markdownTable(sum).includes("| state tuning | – | 8192 | 2 | 60.0 ± 14.1 |"));
  assertEquals(runsToCsv([run(0, 0.5)]).trim().split("\n").length, 2);
});

Deno.test({
  name: "reproduce: a minimal grid on a random tiny model writes every promised file",
  ignore: !gpu,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "reproduce_test_" });
    try {
      const w = randomWeights(
        tinyConfig({ nLayer: 1, nEmbd: 64, headSize: 64, vocabSize: 256 }),
        1,
      );
      const modelPath = `${dir}/tiny.safetensors`;
      await Deno.writeFile(modelPath, serializeSafetensors(tensorsFromWeights(w)));
      const script = new URL("../scripts/reproduce.ts", import.meta.url).pathname;
      const args = [
        "run",
        "-A",
        script,
        ...["--model", modelPath, "--seeds", "1", "--steps", "2", "--batch", "2"],
        ...["--skill", "copy", "--train-items", "16", "--val-items", "2", "--test-items", "2"],
        ...["--out", dir, "--name", "grid"],
      ];
      const t0 = performance.now();
      const out = await new Deno.Command(Deno.execPath(), {
        args,
        stdout: "piped",
        stderr: "piped",
      })
        .output();
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      assert(out.success, `reproduce failed:\n${text}`);
      const res = `${dir}/grid`;
      const files = ["runs.json", "runs.csv", "table.md", "manifest.json"];
      for (const p of ["loss", "held_out_loss", "accuracy", "decorrelation"]) {
        files.push(`${p}.svg`, `${p}.png`, `${p}.html`);
      }
      for (const f of files) {
        const st = await Deno.stat(`${res}/${f}`);
        assert(st.size > 0, `${f} is empty`);
      }
      const runs = JSON.parse(await Deno.readTextFile(`${res}/runs.json`));
      assertEquals(runs.map((r: AblationRun) => r.variant), ["untuned", "state", "lifted", "dbp"]);
      const table = await Deno.readTextFile(`${res}/table.md`);
      for (const v of ["untuned", "state tuning", "+ kernel upscaling", "+ DBP"]) {
        assert(table.includes(v), `table.md lacks ${v}`);
      }
      const manifest = JSON.parse(await Deno.readTextFile(`${res}/manifest.json`));
      assertEquals(manifest.model.sha256.length, 64);
      assert(typeof manifest.adapter === "string" && manifest.deno.deno);
      assert("gitCommit" in manifest);
      console.log(`reproduce grid: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
