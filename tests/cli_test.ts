/**
 * The JSON outputs other tools rely on: `logits --json`, `state-grad --json`, `info --json`,
 * run as real subprocesses.
 */
import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { loadModel } from "../lib/model/load.ts";
import { refLossAndGrad } from "../lib/ref/backward.ts";
import { assertClose, fixture, gpu, hasFixtures, runScript } from "./_helpers.ts";

const MODEL = fixture("models/tiny-rwkv7-834K.safetensors");

const run = runScript;

Deno.test({
  name: "logits --json prints {tokens, logits} after the last token, matching the reference",
  ignore: !gpu || !hasFixtures,
  fn: async () => {
    const r = await run("logits.ts", ["--model", MODEL, "--text", '"in', "--json"]);
    assertEquals(r.code, 0, r.err);
    const j = JSON.parse(r.out);
    assertEquals(Object.keys(j).sort(), ["logits", "tokens"]);
    assertEquals(j.tokens, [34, 105, 110]);
    const expected = JSON.parse(
      await Deno.readTextFile(fixture("models/tiny-rwkv7-834K.expected-logits.json")),
    );
    assertClose(j.logits, expected.logits, { maxAbs: 1e-4 }, "logits");
  },
});

Deno.test({
  name: "state-grad --json prints {loss, grads[layer][H·N·N]} equal to the reference",
  ignore: !gpu || !hasFixtures,
  fn: async () => {
    const r = await run("state_grad.ts", [
      "--model",
      MODEL,
      "--tokens",
      "72,101,108,108,111",
      "--json",
    ]);
    assertEquals(r.code, 0, r.err);
    const j = JSON.parse(r.out);
    const { weights } = await loadModel(MODEL);
    const ref = refLossAndGrad(weights, [72, 101, 108, 108], [101, 108, 108, 111]);
    assertClose([j.loss], [ref.loss], { maxAbs: 1e-5 }, "loss");
    assertEquals(j.grads.length, 12);
    for (let l = 0; l < 12; l++) {
      assertEquals(j.grads[l].length, 64 * 64);
      assertClose(j.grads[l], ref.dState[l].wkv, { rel: 1e-4 }, `layer ${l}`);
    }
  },
});

Deno.test({
  name: "CLI errors: missing file, bad token list, wrong state file",
  ignore: !hasFixtures,
  fn: async () => {
    let r = await run("logits.ts", ["--model", "/nonexistent.pth", "--tokens", "1"]);
    assertEquals(r.code, 1);
    assertStringIncludes(r.err, "/nonexistent.pth");
    r = await run("logits.ts", ["--model", MODEL, "--tokens", "1,x"]);
    assertEquals(r.code, 2);
    assertStringIncludes(r.err, "--tokens must be comma-separated");
    const { serializeState } = await import("../lib/train/state_file.ts");
    const tmp = await Deno.makeTempFile({ suffix: ".pth" });
    await Deno.writeFile(
      tmp,
      serializeState([new Float32Array(2 * 64 * 64)], { nHead: 2, headSize: 64 }, "peft", "f32"),
    );
    r = await run("logits.ts", ["--model", MODEL, "--tokens", "1", "--state", tmp]);
    assertEquals(r.code, 1);
    assertStringIncludes(r.err, "has time_state for 1 layers but the model has 12");
    assertStringIncludes(r.err, "missing: blocks.1, blocks.2");
  },
});

Deno.test({
  name: "info --json reports the inferred config and parameter count",
  ignore: !hasFixtures,
  fn: async () => {
    const r = await run("info.ts", ["--model", MODEL, "--json"]);
    assertEquals(r.code, 0, r.err);
    const j = JSON.parse(r.out);
    assertEquals(j.config.nLayer, 12);
    assertEquals(j.config.vocabSize, 256);
    assert(j.params > 800_000);
  },
});

Deno.test({
  name: "generate --json: greedy text is the same with the cpu and the gpu sampler, any burst",
  ignore: !gpu || !hasFixtures,
  fn: async () => {
    const base = ["--model", MODEL, "--prompt", "The ", "--temperature", "0", "--max-tokens", "12"];
    const texts: string[] = [];
    for (const extra of [["--sampler", "cpu"], ["--sampler", "gpu", "--burst", "5"]]) {
      const r = await run("generate.ts", [...base, ...extra, "--json"]);
      assertEquals(r.code, 0, r.err);
      const j = JSON.parse(r.out);
      assertEquals(j.sampler, extra[1]);
      assertEquals(j.tokens.length, 12);
      texts.push(j.text);
    }
    assertEquals(texts[1], texts[0]);
    const bad = await run("generate.ts", [...base, "--sampler", "tpu"]);
    assertEquals(bad.code, 2);
    assertStringIncludes(bad.err, "--sampler must be auto, gpu or cpu");
  },
});

Deno.test({
  name: "state-grad / logits --tokens need no tokenizer: H = 2, V = 512, no vocabulary; --lifted",
  ignore: !gpu,
  fn: async () => {
    const { randomWeights, tinyConfig } = await import("../lib/model/random.ts");
    const { tensorsFromWeights } = await import("../lib/model/load.ts");
    const { serializeSafetensors } = await import("../lib/model/safetensors.ts");
    const { saveLifted } = await import("../lib/model/gpu_lifted.ts");
    const { initLiftedLayers } = await import("../lib/parts/support.ts");
    const { LiftedConfigSchema } = await import("../lib/parts/config.ts");
    const cfg = tinyConfig({ nLayer: 2, nEmbd: 128, headSize: 64, vocabSize: 512 });
    assertEquals(cfg.nHead, 2);
    const w = randomWeights(cfg, 11);
    const dir = await Deno.makeTempDir();
    const model = `${dir}/m.safetensors`;
    await Deno.writeFile(model, serializeSafetensors(tensorsFromWeights(w), "f32"));
    const ids = [5, 300, 17, 511, 42, 8];
    const lifted = initLiftedLayers(
      w,
      [ids, ids.slice().reverse()],
      LiftedConfigSchema.parse({
        enabled: true,
        featureRatio: 1,
        featureMap: "identity",
        headMeans: false,
        layers: [1],
        read: "normalised",
      }),
    );
    lifted[1]!.s0 = Float32Array.from(lifted[1]!.s0, (_, i) => 0.05 * Math.cos(i));
    const lf = `${dir}/lifted.safetensors`;
    await saveLifted(lf, lifted, cfg.nHead);
    const tokens = ["--tokens", ids.join(",")];
    const lg = await run("logits.ts", ["--model", model, ...tokens, "--json"]);
    assertEquals(lg.code, 0, lg.err);
    assertEquals(JSON.parse(lg.out).logits.length, 512);
    const r = await run("state_grad.ts", ["--model", model, ...tokens, "--lifted", lf, "--json"]);
    assertEquals(r.code, 0, r.err);
    const j = JSON.parse(r.out);
    assertEquals(Object.keys(j).sort(), ["grads", "lifted", "loss"]);
    assertEquals(Object.keys(j.lifted), ["blocks.1.att.lifted_state"]);
    const ref = refLossAndGrad(w, ids.slice(0, -1), ids.slice(1), undefined, undefined, { lifted });
    assertClose([j.loss], [ref.loss], { rel: 1e-5 }, "loss");
    for (let l = 0; l < 2; l++) {
      assertClose(j.grads[l], ref.dState[l].wkv, { rel: 1e-4 }, `dS0 ${l}`);
    }
    const d = j.lifted["blocks.1.att.lifted_state"];
    assertEquals(d.length, 2 * 64 * 64);
    assert(d.some((x: number) => x !== 0), "dŜ0 is not all zero");
    assertClose(d, ref.dLifted![1]!, { rel: 1e-4 }, "dŜ0");
    const t = await run("state_grad.ts", ["--model", model, "--text", "hi", "--json"]);
    assertEquals(t.code, 1);
    assertStringIncludes(t.err, "no tokenizer for");
  },
});

Deno.test({
  name: "state-grad --lifted (writes: gate) --lora --json on H = 2, V = 512: every part's gradient",
  ignore: !gpu,
  fn: async () => {
    const { randomWeights, tinyConfig } = await import("../lib/model/random.ts");
    const { tensorsFromWeights } = await import("../lib/model/load.ts");
    const { serializeSafetensors } = await import("../lib/model/safetensors.ts");
    const { saveLifted } = await import("../lib/model/gpu_lifted.ts");
    const { initLiftedLayers } = await import("../lib/parts/support.ts");
    const { LiftedConfigSchema } = await import("../lib/parts/config.ts");
    const { initLora } = await import("../lib/model/lora.ts");
    const { saveLora, mergeLoraWeights, loraGradsFromRef } = await import(
      "../lib/model/lora_file.ts"
    );
    const cfg = tinyConfig({ nLayer: 2, nEmbd: 128, headSize: 64, vocabSize: 512 });
    const w = randomWeights(cfg, 12);
    const dir = await Deno.makeTempDir();
    const model = `${dir}/m.safetensors`;
    await Deno.writeFile(model, serializeSafetensors(tensorsFromWeights(w), "f32"));
    const ids = [5, 300, 17, 511, 42, 8, 99];
    const lifted = initLiftedLayers(
      w,
      Array.from({ length: 12 }, (_, i) => ids.map((x) => (x * (i + 3) + i) % 512)),
      LiftedConfigSchema.parse({ enabled: true, featureRatio: 1, writes: true, layers: [0] }),
    );
    lifted[0]!.s0 = Float32Array.from(lifted[0]!.s0, (_, i) => 0.05 * Math.sin(i));
    lifted[0]!.gate = Float32Array.of(0.3, -0.2);
    const lf = `${dir}/lifted.safetensors`;
    await saveLifted(lf, lifted, cfg.nHead);
    const adapter = initLora(cfg, { r: 2, targets: ["att.key", "ffn.value"], layers: [1] });
    for (const m of adapter.modules) m.B = Float32Array.from(m.B, (_, i) => 0.01 * Math.cos(i));
    const lo = `${dir}/lora.safetensors`;
    await saveLora(lo, adapter);
    const args = ["--model", model, "--tokens", ids.join(","), "--lifted", lf, "--lora", lo];
    const r = await run("state_grad.ts", [...args, "--json"]);
    assertEquals(r.code, 0, r.err);
    const j = JSON.parse(r.out);
    assertEquals(Object.keys(j).sort(), ["grads", "lifted", "lora", "loss"]);
    assertEquals(Object.keys(j.lifted).sort(), [
      "blocks.0.att.lifted_gate",
      "blocks.0.att.lifted_state",
    ]);
    assertEquals(Object.keys(j.lora).sort(), [
      "blocks.1.att.key.lora_A",
      "blocks.1.att.key.lora_B",
      "blocks.1.ffn.value.lora_A",
      "blocks.1.ffn.value.lora_B",
    ]);
    const ref = refLossAndGrad(
      mergeLoraWeights(w, adapter),
      ids.slice(0, -1),
      ids.slice(1),
      undefined,
      undefined,
      { lifted, weightGrads: true },
    );
    assertClose([j.loss], [ref.loss], { rel: 1e-5 }, "loss");
    for (let l = 0; l < 2; l++) assertClose(j.grads[l], ref.dState[l].wkv, { rel: 1e-4 }, `dS0`);
    assertClose(j.lifted["blocks.0.att.lifted_state"], ref.dLifted![0]!, { rel: 1e-4 }, "dŜ0");
    assertClose(j.lifted["blocks.0.att.lifted_gate"], ref.dLiftedGate![0]!, { rel: 1e-4 }, "dg");
    const lr = loraGradsFromRef(adapter, ref.dWeights!);
    for (const [k, v] of Object.entries(lr)) assertClose(j.lora[k], v, { rel: 1e-4 }, k);
    const cpu = JSON.parse(
      (await run("state_grad.ts", [...args, "--engine", "cpu", "--json"])).out,
    );
    // the CLI reads the f32 file, the reference here used the float64 weights: 1e-6, not 1e-12
    assertClose(cpu.lora["blocks.1.att.key.lora_B"], lr["blocks.1.att.key.lora_B"], { rel: 1e-6 });
  },
});
