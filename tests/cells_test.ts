import { assert, assertEquals, assertRejects } from "@std/assert";
import { gpu } from "./_helpers.ts";
import { loadModel } from "../lib/model/load.ts";
import { GpuModel } from "../lib/model/gpu_model.ts";
import { ByteTokenizer } from "../lib/tokenizer/bytes.ts";
import { CellOptionsSchema, defaultGrid, runCell } from "../lib/experiments/cells.ts";
import { gridCells } from "../lib/experiments/grid.ts";
import { loraRank } from "../lib/experiments/variants.ts";

const MODEL = new URL("../models/default.safetensors", import.meta.url).pathname;

Deno.test("defaultGrid: 5 seeds, the issue's variants, M sweep, steps per K", () => {
  const cells = gridCells(defaultGrid("facts"));
  assertEquals(new Set(cells.map((c) => c.seed)).size, 5);
  assertEquals(
    [...new Set(cells.map((c) => c.kind))],
    ["untuned", "state", "lifted-memory", "lifted-writes", "dbp", "lora"],
  );
  const ms = cells.filter((c) => c.kind === "lifted-memory" && c.seed === 0).map((c) => c.params.M);
  assertEquals(ms, [64, 128]);
  const o = CellOptionsSchema.parse(defaultGrid("facts").options);
  assertEquals((o.steps as Record<string, number>)["128"], 1200);
  assertEquals(cells.length, 5 * 8);
});

Deno.test("loraRank: equal numbers to plain state and to lifted M = N", () => {
  const w = { config: { nLayer: 2, nHead: 1, headSize: 64, nEmbd: 64, dimFfn: 256 } } as never;
  assertEquals(loraRank(w, { equalTo: "state" }), 4); // 4 · 2304 = 9216 ≈ 8192
  assertEquals(loraRank(w, { equalTo: "lifted" }), 7); // 7 · 2304 = 16128 ≈ 16384
  assertEquals(loraRank(w, { r: 3 }), 3);
});

Deno.test({
  name: "runCell: untuned and state cells on facts (CPU engine, GPU scoring)",
  ignore: !gpu,
  async fn() {
    const { weights } = await loadModel(MODEL);
    const model = await GpuModel.create(gpu!, weights);
    try {
      const spec = {
        testbeds: [{ name: "facts", sweep: { key: "K", values: [8] } }],
        variants: [{ name: "untuned", kind: "untuned" }, { name: "state", kind: "state" }, {
          name: "lora",
          kind: "lora",
        }],
        seeds: [0],
      };
      const [u, s, l] = gridCells(spec);
      const options = CellOptionsSchema.parse({ steps: 3, batch: 4 });
      const ctx = { weights, model, tokenizer: new ByteTokenizer(), options };
      const ru = await runCell(ctx, u), rs = await runCell(ctx, s);
      assertEquals([ru.metrics.trainable, rs.metrics.trainable], [0, 2 * 64 * 64]);
      assertEquals(ru.items!.length, 8);
      assertEquals(rs.curve!.steps, [1, 2, 3]);
      assert(rs.metrics["heldOutLoss"]! < ru.metrics["heldOutLoss"]!, "3 steps lower the loss");
      assert(typeof rs.metrics["skill.copy"] === "number");
      const rl = await runCell(ctx, l);
      assertEquals(rl.metrics.trainable, 4 * 2304);
      assert(rl.metrics["heldOutLoss"]! < ru.metrics["heldOutLoss"]!, "LoRA lowers the loss");
      const bad = { ...u, kind: "nope" };
      await assertRejects(() => runCell(ctx, bad), RangeError, "kinds: untuned, state");
    } finally {
      model.destroy();
    }
  },
});

Deno.test({
  name: "runCell: lifted-writes, dbp and lora on the GPU engine (tune with the GPU parts)",
  ignore: !gpu,
  async fn() {
    const { weights } = await loadModel(MODEL);
    const model = await GpuModel.create(gpu!, weights);
    try {
      const cells = gridCells({
        testbeds: [{ name: "facts", sweep: { key: "K", values: [8] } }],
        variants: [
          { name: "w", kind: "lifted-writes", options: { M: 32 } },
          { name: "d", kind: "dbp", options: { M: 32 } },
          { name: "l", kind: "lora", options: { r: 2 } },
        ],
        seeds: [1],
      });
      const options = CellOptionsSchema.parse({ steps: 2, batch: 4, engine: "gpu", sideItems: 0 });
      const ctx = { weights, model, tokenizer: new ByteTokenizer(), options };
      const [w, d, l] = [
        await runCell(ctx, cells[0]),
        await runCell(ctx, cells[1]),
        await runCell(ctx, cells[2]),
      ];
      assertEquals(w.metrics.trainable, 2 * 64 * 64 + 2 * 64 * 32 + 2);
      assertEquals(d.curve!.decorrelation!.length, 2);
      assertEquals(l.metrics.trainable, 2 * 2304);
      for (const r of [w, d, l]) assert(Number.isFinite(r.metrics.heldOutLoss!));
    } finally {
      model.destroy();
    }
  },
});
