import { assertEquals, assertThrows } from "@std/assert";
import { parseState, serializeState, StateFileError } from "../lib/train/state_file.ts";
import { loadModel } from "../lib/model/load.ts";
import { refForward } from "../lib/ref/model.ts";
import { zeroState } from "../lib/model/types.ts";
import { assertClose, fixture, hasFixtures, Rng } from "./_helpers.ts";

const cfg = { nLayer: 3, nHead: 2, headSize: 4 };

function randomStates(seed: number, scale = 1): Float32Array[] {
  const rng = new Rng(seed);
  return Array.from({ length: cfg.nLayer }, () => rng.f32(cfg.nHead * 16, -scale, scale));
}

Deno.test("state files: PEFT fp32 is exact, web-rwkv is transposed f16", () => {
  const states = randomStates(1);
  const peft = parseState(serializeState(states, cfg, "peft", "f32"), cfg);
  assertEquals(peft.format, "peft");
  assertEquals(peft.states, states);
  const web = parseState(serializeState(states, cfg, "web-rwkv"), cfg);
  assertEquals(web.format, "web-rwkv");
  for (let l = 0; l < cfg.nLayer; l++) {
    assertClose(web.states[l], states[l], { maxAbs: 1e-3 }, `layer ${l}`);
  }
});

Deno.test("state files: web-rwkv stores [H, key, value]", async () => {
  const states = randomStates(2);
  const bytes = serializeState(states, cfg, "web-rwkv");
  const { parseSafetensors } = await import("../lib/model/safetensors.ts");
  const t = parseSafetensors(bytes).tensors.get("blocks.1.att.time_state")!;
  assertEquals(t.shape, [2, 4, 4]);
  // element (h=1, value i=2, key j=3) sits at [1][3][2] in the file
  const ours = states[1][16 + 2 * 4 + 3];
  const theirs = t.data[16 + 3 * 4 + 2];
  assertClose([theirs], [ours], { maxAbs: 1e-3 });
});

Deno.test("state files: PEFT bf16 and web-rwkv f16 round-trip into each other", () => {
  const peftBytes = serializeState(randomStates(3), cfg, "peft", "bf16");
  const a = parseState(peftBytes, cfg).states;
  const b = parseState(serializeState(a, cfg, "web-rwkv"), cfg).states;
  assertEquals(b, a); // bf16 values of moderate size are exact in f16
  const c = parseState(serializeState(b, cfg, "peft", "bf16"), cfg).states;
  assertEquals(c, a);
});

Deno.test("state files: a state for another model is refused by name", () => {
  const bytes = serializeState(randomStates(4), cfg, "peft", "f32");
  assertThrows(
    () => parseState(bytes, { ...cfg, nLayer: 4 }, "s.pth"),
    StateFileError,
    "has time_state for 3 layers but the model has 4 (blocks.0 to blocks.3); missing: blocks.3",
  );
  assertThrows(
    () => parseState(bytes, { ...cfg, nHead: 1, headSize: 8 }, "s.pth"),
    StateFileError,
    "blocks.0.att.time_state has shape [2,4,4] but the model needs [1, 8, 8]",
  );
  assertThrows(
    () => parseState(new Uint8Array([1, 2, 3]), cfg, "junk.bin"),
    Error,
    "junk.bin",
  );
});

Deno.test({
  name: "state files: an exported state gives the same logits as the in-memory one",
  ignore: !hasFixtures,
  fn: async () => {
    const { weights } = await loadModel(fixture("models/tiny-rwkv7-834K.safetensors"));
    const c = weights.config;
    const rng = new Rng(5);
    const mem = zeroState(c);
    for (const s of mem) s.wkv.set(rng.f32(s.wkv.length, -0.5, 0.5));
    const bytes = serializeState(mem.map((s) => s.wkv), c, "peft", "f32");
    const back = zeroState(c);
    parseState(bytes, c).states.forEach((w, l) => back[l].wkv.set(w));
    const tokens = [...new TextEncoder().encode("The tuned state")];
    const a = refForward(weights, tokens, mem, { lastOnly: true }).logits;
    const b = refForward(weights, tokens, back, { lastOnly: true }).logits;
    assertClose(b, a, { maxAbs: 1e-5 }, "logits");
  },
});
