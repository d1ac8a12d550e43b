/**
 * Checkpoint reading and writing: the fixture in both formats, round trips in every dtype and
 * random models. The error message of each bad input: checkpoint_bad_input_test.ts.
 */
import { assert, assertEquals, assertThrows } from "@std/assert";
import { fixture, hasFixtures } from "./_helpers.ts";
import { f32Bytes, pthWith, someTensors } from "./_checkpoint_helpers.ts";
import type { DType, Tensor } from "../lib/model/types.ts";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "../lib/model/dtype.ts";
import { parseSafetensors, serializeSafetensors } from "../lib/model/safetensors.ts";
import { ZipArchive, ZipError } from "../lib/model/zip.ts";
import { unpickle } from "../lib/model/pickle.ts";
import { pickleStateDict } from "../lib/model/pickle_write.ts";
import type { TorchTensor } from "../lib/model/pickle.ts";
import { parsePth, parsePthAsync, serializePth } from "../lib/model/pth.ts";
import {
  countParams,
  loadModel,
  tensorsFromWeights,
  weightsFromTensors,
} from "../lib/model/load.ts";
import { OFFICIAL_SHAPES, randomWeights, tinyConfig } from "../lib/model/random.ts";
import { modelInfo } from "../scripts/info.ts";

const PTH = fixture("models/tiny-rwkv7-834K.bf16.pth");
const ST = fixture("models/tiny-rwkv7-834K.safetensors");
const TINY = { nLayer: 12, nEmbd: 64, nHead: 1, headSize: 64, vocabSize: 256 };
const enc = new TextEncoder();

/** What `data` becomes after a trip through `dtype`. */
function quantised(data: Float32Array, dtype: DType): Float32Array {
  if (dtype === "f32") return data;
  return dtype === "f16" ? f16ToF32(f32ToF16(data)) : bf16ToF32(f32ToBf16(data));
}

function assertSameTensors(got: Map<string, Tensor>, want: Map<string, Tensor>, dtype: DType) {
  assertEquals([...got.keys()], [...want.keys()]);
  for (const [k, t] of want) {
    assertEquals(got.get(k)!.shape, t.shape, k);
    assertEquals(got.get(k)!.data, quantised(t.data, dtype), k);
  }
}

Deno.test({
  name: "fixture: safetensors (f32) and .pth (bf16) give the same model",
  ignore: !hasFixtures,
  async fn() {
    const a = await loadModel(ST), b = await loadModel(PTH);
    assertEquals([a.format, a.dtype, b.format, b.dtype], ["safetensors", "f32", "pth", "bf16"]);
    for (const m of [a, b]) {
      const c = m.weights.config;
      assertEquals({ ...TINY, nLayer: c.nLayer, nEmbd: c.nEmbd }, { ...TINY });
      assertEquals([c.nHead, c.headSize, c.vocabSize, c.dimFfn], [1, 64, 256, 256]);
      assertEquals(m.weights.blocks[0].v0, undefined);
    }
    const ta = tensorsFromWeights(a.weights), tb = tensorsFromWeights(b.weights);
    assertEquals([...ta.keys()], [...tb.keys()]);
    for (const [k, t] of ta) {
      const u = tb.get(k)!.data;
      for (let i = 0; i < t.data.length; i++) {
        const d = Math.abs(u[i] - t.data[i]);
        assert(d <= 2 ** -8 * Math.abs(t.data[i]) + 1e-30, `${k}[${i}]: ${u[i]} vs ${t.data[i]}`);
      }
    }
    assertEquals(countParams(a.weights), 829888);
    const info = modelInfo(b);
    // f16: every matrix at 2 bytes except the embedding (V·C = 256·64), which stays f32
    const f16 = 2 * 829888 + 2 * 256 * 64;
    assertEquals([info.params, info.gpuBytes.f16, info.fileBytes], [829888, f16, 1782400]);
  },
});

Deno.test({
  name: "fixture: the .pth zip uses a stem folder, data descriptors and ZIP64 records",
  ignore: !hasFixtures,
  fn() {
    const zip = new ZipArchive(Deno.readFileSync(PTH), PTH);
    assert(zip.has("tiny-rwkv7-834K.bf16/data.pkl"));
    assertEquals(zip.entries.size, 401);
    assertEquals(new TextDecoder().decode(zip.get("tiny-rwkv7-834K.bf16/version", true)), "3\n");
  },
});

for (const dtype of ["f32", "f16", "bf16"] as const) {
  Deno.test(`serializePth → parsePth round trip in ${dtype}`, () => {
    const t = someTensors(1);
    const file = parsePth(serializePth(t, dtype), "roundtrip");
    assertEquals(file.dtype, dtype);
    assertSameTensors(file.tensors, t, dtype);
  });
}

Deno.test("serializePth writes torch's layout: 64-byte aligned data, version, byteorder", () => {
  const bytes = serializePth(someTensors(2), "bf16", { forceZip64: true });
  const zip = new ZipArchive(bytes);
  assertEquals([...zip.entries.keys()].slice(0, 3), [
    "archive/data.pkl",
    "archive/byteorder",
    "archive/data/0",
  ]);
  assertEquals(new TextDecoder().decode(zip.get("archive/version", true)), "3\n");
  assertEquals(new TextDecoder().decode(zip.get("archive/byteorder", true)), "little");
  for (const name of zip.entries.keys()) {
    const data = zip.get(name, true);
    assertEquals(data.byteOffset % 64, 0, name);
  }
  assertSameTensors(parsePth(bytes).tensors, someTensors(2), "bf16");
});

Deno.test("parsePth honours storage offsets (two tensors sharing one storage)", () => {
  const bytes = pthWith([
    { name: "x", shape: [2], storageType: "FloatStorage", key: "0", offset: 1, storageNumel: 5 },
    { name: "y", shape: [1, 2], storageType: "FloatStorage", key: "0", offset: 3, storageNumel: 5 },
  ], { "0": f32Bytes([0, 1, 2, 3, 4]) });
  const f = parsePth(bytes);
  assertEquals([...f.tensors.get("x")!.data], [1, 2]);
  assertEquals([...f.tensors.get("y")!.data], [3, 4]);
});

Deno.test("parsePthAsync reads DEFLATE entries", async () => {
  const plain = serializePth(someTensors(3), "f16");
  const deflated = await deflateZip(new ZipArchive(plain));
  assertThrows(() => parsePth(deflated), ZipError, "compression method 8");
  assertSameTensors((await parsePthAsync(deflated)).tensors, someTensors(3), "f16");
});

/** Re-zip every entry with DEFLATE (method 8), for the reader test. */
async function deflateZip(zip: ZipArchive): Promise<Uint8Array> {
  const parts: Uint8Array<ArrayBuffer>[] = [], central: Uint8Array<ArrayBuffer>[] = [];
  let at = 0;
  for (const [name, e] of zip.entries) {
    const raw = zip.get(name).slice();
    const stream = new Blob([raw]).stream().pipeThrough(new CompressionStream("deflate-raw"));
    const comp = new Uint8Array(await new Response(stream).arrayBuffer());
    const n = enc.encode(name);
    const head = new Uint8Array(30 + n.length), dv = new DataView(head.buffer);
    dv.setUint32(0, 0x04034b50, true);
    dv.setUint16(8, 8, true);
    dv.setUint32(14, e.crc32, true);
    dv.setUint32(18, comp.length, true);
    dv.setUint32(22, raw.length, true);
    dv.setUint16(26, n.length, true);
    head.set(n, 30);
    const c = new Uint8Array(46 + n.length), cv = new DataView(c.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(10, 8, true);
    cv.setUint32(16, e.crc32, true);
    cv.setUint32(20, comp.length, true);
    cv.setUint32(24, raw.length, true);
    cv.setUint16(28, n.length, true);
    cv.setUint32(42, at, true);
    c.set(n, 46);
    parts.push(head, comp);
    central.push(c);
    at += head.length + comp.length;
  }
  const cdSize = central.reduce((s, c) => s + c.length, 0);
  const end = new Uint8Array(22), ev = new DataView(end.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, central.length, true);
  ev.setUint16(10, central.length, true);
  ev.setUint32(12, cdSize, true);
  ev.setUint32(16, at, true);
  return new Uint8Array(await new Blob([...parts, ...central, end]).arrayBuffer());
}

Deno.test("safetensors round trip through weightsFromTensors", () => {
  const w = randomWeights(tinyConfig(), 5);
  const bytes = serializeSafetensors(tensorsFromWeights(w), "f32");
  const back = weightsFromTensors(parseSafetensors(bytes), "rt.safetensors");
  assertEquals(back, w);
});

Deno.test("randomWeights: deterministic, finite, official layout round trip", () => {
  const cfg = tinyConfig({ nLayer: 3 });
  const a = randomWeights(cfg, 42), b = randomWeights(cfg, 42), c = randomWeights(cfg, 43);
  assertEquals(a, b);
  assert(a.emb.some((v, i) => v !== c.emb[i]), "different seeds give different weights");
  const t = tensorsFromWeights(a);
  for (const [k, { data }] of t) assert(data.every(Number.isFinite), `${k} is finite`);
  assertEquals(a.blocks[0].v0, undefined);
  assert(a.blocks[1].v0 && a.blocks[2].v2);
  assertEquals(t.get("blocks.1.att.x_r")!.shape, [1, 1, 32]);
  assertEquals(weightsFromTensors({ tensors: t, dtype: "f32" }), a);
  const viaPth = weightsFromTensors(parsePth(serializePth(t, "bf16")), "rt.pth");
  assertEquals(viaPth.config, cfg);
  for (const [k, p] of Object.entries(OFFICIAL_SHAPES)) {
    assertEquals(p.nHead * p.headSize, p.nEmbd, k);
  }
});

Deno.test("unpickle reads a state_dict() OrderedDict with _metadata (protocols 2 and 4)", () => {
  // pickle.dumps(OrderedDict(a=1, b=[1.5, None, True]) with ._metadata set), by CPython 3.11
  const p2 = "800263636f6c6c656374696f6e730a4f726465726564446963740a71002952710128580100000061" +
    "71024b0158010000006271035d710428473ff80000000000004e8865757d710558090000005f6d65746164" +
    "61746171066800295271075800000000710871097d580700000076657273696f6e710a4b01737373622e";
  const p4 = "80049565000000000000008c0b636f6c6c656374696f6e73948c0b4f72646572656444696374949394" +
    "295294288c0161944b018c0162945d9428473ff80000000000004e8865757d948c095f6d65746164617461" +
    "9468022952948c00947d948c0776657273696f6e944b01737373622e";
  for (const hex of [p2, p4]) {
    const bytes = new Uint8Array(hex.match(/../g)!.map((h) => parseInt(h, 16)));
    assertEquals(unpickle(bytes), new Map<unknown, unknown>([["a", 1], ["b", [1.5, null, true]]]));
  }
  const big = pickleStateDict([
    { name: "x", shape: [1], storageType: "HalfStorage", key: "7", storageNumel: 2 ** 40 + 3 },
  ]);
  const t = (unpickle(big) as Map<string, TorchTensor>).get("x")!;
  assertEquals([t.storage.numel, t.storage.key, t.storage.storageType], [
    2 ** 40 + 3,
    "7",
    "HalfStorage",
  ]);
});
