/**
 * Checkpoint reading, bad inputs: a truncated or cut-short file, pickle globals and opcodes
 * outside the allow-list, missing keys and wrong shapes, unsupported dtypes, broken zips and
 * files that are not checkpoints. Each error names what is wrong. Round trips:
 * checkpoint_test.ts.
 */
import { assertEquals, assertRejects, assertThrows } from "@std/assert";
import { fixture, hasFixtures } from "./_helpers.ts";
import { f32Bytes, pthWith, someTensors } from "./_checkpoint_helpers.ts";
import type { Tensor, TensorFile } from "../lib/model/types.ts";
import { parseSafetensors, SafetensorsError } from "../lib/model/safetensors.ts";
import { writeZip, ZipArchive, ZipError } from "../lib/model/zip.ts";
import { PickleError, unpickle } from "../lib/model/pickle.ts";
import type { PickleTensorEntry } from "../lib/model/pickle_write.ts";
import { parsePth, PthError, serializePth } from "../lib/model/pth.ts";
import {
  CheckpointError,
  loadModel,
  readTensorFile,
  tensorsFromWeights,
  weightsFromTensors,
} from "../lib/model/load.ts";
import { randomWeights, tinyConfig } from "../lib/model/random.ts";

const PTH = fixture("models/tiny-rwkv7-834K.bf16.pth");
const enc = new TextEncoder();

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
