/**
 * Checkpoint reading and writing: the fixture in both formats, round trips in every dtype,
 * random models, and the error message of each bad input.
 */
import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert";
import { fixture, hasFixtures, Rng } from "./_helpers.ts";
import type { DType, Tensor, TensorFile } from "../lib/model/types.ts";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "../lib/model/dtype.ts";
import {
  parseSafetensors,
  SafetensorsError,
  serializeSafetensors,
} from "../lib/model/safetensors.ts";
import { writeZip, ZipArchive, ZipError } from "../lib/model/zip.ts";
import { PickleError, unpickle } from "../lib/model/pickle.ts";
import type { TorchTensor } from "../lib/model/pickle.ts";
import { pickleStateDict, type PickleTensorEntry } from "../lib/model/pickle_write.ts";
import { parsePth, parsePthAsync, PthError, serializePth } from "../lib/model/pth.ts";
import {
  CheckpointError,
  countParams,
  loadModel,
  readTensorFile,
  tensorsFromWeights,
  weightsFromTensors,
} from "../lib/model/load.ts";
import { OFFICIAL_SHAPES, randomWeights, tinyConfig } from "../lib/model/random.ts";
import { modelInfo } from "../scripts/info.ts";

const PTH = fixture("models/tiny-rwkv7-834K.bf16.pth");
const ST = fixture("models/tiny-rwkv7-834K.safetensors");
const TINY = { nLayer: 12, nEmbd: 64, nHead: 1, headSize: 64, vocabSize: 256 };
const enc = new TextEncoder();

function someTensors(seed: number): Map<string, Tensor> {
  const rng = new Rng(seed);
  const shapes: Record<string, number[]> = {
    "a.weight": [3, 5],
    "b.vec": [1, 1, 7],
    "c.big": [300, 300], // numel needs BININT
    "d.scalar": [],
    "e.rank4": [2, 1, 3, 2],
  };
  const out = new Map<string, Tensor>();
  for (const [k, shape] of Object.entries(shapes)) {
    out.set(k, { shape, data: rng.f32(shape.reduce((a, b) => a * b, 1), -3, 3) });
  }
  return out;
}

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

/** A pth zip with a hand-made pickle and storages. */
function pthWith(entries: PickleTensorEntry[], storages: Record<string, Uint8Array>): Uint8Array {
  return writeZip([
    { name: "archive/data.pkl", data: pickleStateDict(entries) },
    ...Object.entries(storages).map(([k, data]) => ({ name: `archive/data/${k}`, data })),
    { name: "archive/version", data: enc.encode("3\n") },
  ]);
}

const f32Bytes = (xs: number[]) => new Uint8Array(new Float32Array(xs).buffer);

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

// ---- bad inputs: each error names what is wrong ----

Deno.test({
  name: "bad input: a truncated .pth",
  ignore: !hasFixtures,
  fn() {
    const bytes = Deno.readFileSync(PTH);
    assertThrows(
      () => parsePth(bytes.subarray(0, 900_000), "cut.pth"),
      ZipError,
      "cut.pth: truncated zip: the file (900000 bytes) starts like a zip but has no " +
        "end-of-central-directory record",
    );
  },
});

Deno.test("bad input: a .pth whose last storage is cut short names the entry", () => {
  const t = someTensors(4);
  const full = serializePth(new Map([["a", t.get("a.weight")!], ["b", t.get("c.big")!]]), "f32");
  const last = new ZipArchive(full).entries.get("archive/data/1")!;
  const dv = new DataView(full.buffer);
  const eocd = full.length - 22, cd = dv.getUint32(eocd + 16, true);
  const at = last.localOffset;
  const cut = at + 30 + dv.getUint16(at + 26, true) + dv.getUint16(at + 28, true) + 10; // in data
  const bytes = new Uint8Array(cut + full.length - cd);
  bytes.set(full.subarray(0, cut));
  bytes.set(full.subarray(cd), cut);
  new DataView(bytes.buffer).setUint32(bytes.length - 22 + 16, cut, true);
  assertThrows(() => parsePth(bytes, "cut.pth"), ZipError, `entry "archive/data/1" needs bytes`);
});

Deno.test("bad input: pickle globals outside the allow-list are refused by name", () => {
  // cos\nsystem\n (GLOBAL), 'ls', TUPLE1, REDUCE, STOP
  const evil = new Uint8Array([
    0x80,
    2,
    ...enc.encode("cos\nsystem\n"),
    0x58,
    2,
    0,
    0,
    0,
    ...enc.encode("ls"),
    0x85,
    0x52,
    0x2e,
  ]);
  const msg = 'pickle global "os.system" is not allowed: this loader reads tensor state dicts ' +
    "only and never executes code";
  assertThrows(() => unpickle(evil), PickleError, msg);
  const zip = writeZip([{ name: "archive/data.pkl", data: evil }]);
  assertThrows(() => parsePth(zip, "evil.pth"), PickleError, msg);
  // STACK_GLOBAL: 'builtins' 'eval'
  const sg = new Uint8Array([
    0x8c,
    8,
    ...enc.encode("builtins"),
    0x8c,
    4,
    ...enc.encode("eval"),
    0x93,
  ]);
  assertThrows(() => unpickle(sg), PickleError, 'pickle global "builtins.eval" is not allowed');
});

Deno.test("bad input: unknown pickle opcode names the byte and offset", () => {
  const bytes = new Uint8Array([0x80, 2, 0x49, ...enc.encode("1\n"), 0x2e]); // INT (text)
  assertThrows(
    () => unpickle(bytes, "x"),
    PickleError,
    "unsupported pickle opcode 0x49 at offset 2",
  );
});

Deno.test("bad input: missing key, wrong shape, non-x070 checkpoint", () => {
  const w = randomWeights(tinyConfig({ nLayer: 4 }), 1);
  const t = tensorsFromWeights(w);
  const file = (m: Map<string, Tensor>): TensorFile => ({ tensors: m, dtype: "f32" });
  const missing = new Map(t);
  missing.delete("blocks.3.att.key.weight");
  assertThrows(
    () => weightsFromTensors(file(missing), "m.pth"),
    CheckpointError,
    'm.pth: missing tensor "blocks.3.att.key.weight"; the file is not an RWKV-7 x070 checkpoint',
  );
  const wrong = new Map(t);
  wrong.set("blocks.3.att.key.weight", { shape: [32, 16], data: new Float32Array(512) });
  assertThrows(
    () => weightsFromTensors(file(wrong), "w.pth"),
    CheckpointError,
    "w.pth: blocks.3.att.key.weight: expected [32, 32], found [32, 16]; the file is not an " +
      "RWKV-7 x070 checkpoint or is corrupt",
  );
  const old = new Map(t);
  old.delete("blocks.0.att.r_k");
  old.set("blocks.0.att.time_decay", { shape: [32], data: new Float32Array(32) });
  assertThrows(() => weightsFromTensors(file(old)), CheckpointError, "looks like an RWKV-4/5/6");
  const l0 = new Map(t); // layer 0 value-residual is ignored; layer 1's is required
  l0.set("blocks.0.att.v0", { shape: [1, 1, 32], data: new Float32Array(32) });
  assertEquals(weightsFromTensors(file(l0)).blocks[0].v0, undefined);
  l0.delete("blocks.1.att.v2");
  assertThrows(() => weightsFromTensors(file(l0)), CheckpointError, '"blocks.1.att.v2"');
});

Deno.test("bad input: unsupported dtypes are named with the supported ones", () => {
  const header = enc.encode(
    JSON.stringify({ ids: { dtype: "I64", shape: [1], data_offsets: [0, 8] } }),
  );
  const st = new Uint8Array(8 + header.length + 8);
  new DataView(st.buffer).setBigUint64(0, BigInt(header.length), true);
  st.set(header, 8);
  assertThrows(
    () => parseSafetensors(st, "i64.safetensors"),
    SafetensorsError,
    "unsupported dtype I64",
  );
  for (const type of ["LongStorage", "DoubleStorage"]) {
    const bytes = pthWith([{ name: "ids", shape: [1], storageType: type, key: "0" }], {
      "0": new Uint8Array(8),
    });
    assertThrows(
      () => parsePth(bytes, "d.pth"),
      PthError,
      `d.pth: tensor "ids" has unsupported dtype torch.${type}; supported: torch.FloatStorage ` +
        "(f32), torch.HalfStorage (f16), torch.BFloat16Storage (bf16)",
    );
  }
});

Deno.test("bad input: zip without data.pkl, missing storage, non-contiguous strides", () => {
  const noPkl = writeZip([{ name: "archive/version", data: enc.encode("3\n") }]);
  assertThrows(
    () => parsePth(noPkl, "n.pth"),
    PthError,
    'n.pth: no data.pkl in the zip (entries: "archive/version")',
  );
  const entry: PickleTensorEntry = {
    name: "x",
    shape: [2, 2],
    storageType: "FloatStorage",
    key: "0",
  };
  assertThrows(
    () => parsePth(pthWith([entry], {}), "s.pth"),
    PthError,
    's.pth: storage "0" of tensor "x" is missing (no entry "archive/data/0")',
  );
  const strided = pthWith([{ ...entry, stride: [1, 2] }], { "0": f32Bytes([1, 2, 3, 4]) });
  assertThrows(() => parsePth(strided), PthError, "has strides [1, 2], expected contiguous [2, 1]");
});

Deno.test("bad input: a file that is not a checkpoint", async () => {
  const path = await Deno.makeTempFile({ suffix: ".pth" });
  try {
    await Deno.writeTextFile(path, "hello, world");
    await assertRejects(
      () => readTensorFile(path),
      CheckpointError,
      "not a checkpoint: first bytes are [68 65 6c 6c 6f 2c 20 77]",
    );
    assertThrows(
      () => parsePth(enc.encode("hello, world"), "h.pth"),
      ZipError,
      "h.pth: not a zip file: first bytes are [68 65 6c 6c 6f 2c 20 77], expected 50 4b 03 04",
    );
    await assertRejects(() => loadModel(path + ".absent"), CheckpointError, "cannot read");
  } finally {
    await Deno.remove(path);
  }
});
