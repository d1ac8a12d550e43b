/**
 * Bad-input corpus, loaders (issue 13 items 11–16): flipped bytes in tensor data, a DEFLATE
 * bomb beside a small checkpoint, a 300k-item APPENDS, a zip extra field past the end,
 * safetensors with a lying header length, overlapping offsets or an unknown layout, re-zipped
 * (DEFLATE) state files and a state file without layer 0. Every bad file is made here.
 */
import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert";
import { crc32, ZipArchive, ZipError } from "../lib/model/zip.ts";
import { PickleError, unpickle } from "../lib/model/pickle.ts";
import { parsePth, parsePthAsync, PthError, serializePth } from "../lib/model/pth.ts";
import { SafetensorsError, serializeSafetensors } from "../lib/model/safetensors.ts";
import {
  CheckpointError,
  loadModel,
  readTensorFile,
  tensorsFromWeights,
} from "../lib/model/load.ts";
import { randomWeights, tinyConfig } from "../lib/model/random.ts";
import {
  loadState,
  parseState,
  parseStateAsync,
  serializeState,
  StateFileError,
} from "../lib/train/state_file.ts";
import type { Tensor } from "../lib/model/types.ts";

const enc = new TextEncoder();
const cfg = { nLayer: 2, nHead: 2, headSize: 4 };

function states(L: number): Float32Array[] {
  return Array.from(
    { length: L },
    (_, l) => Float32Array.from({ length: 32 }, (_, i) => l + i / 8),
  );
}

/** One raw zip entry: `data` is the stored payload (compressed for method 8). */
interface RawEntry {
  name: string;
  data: Uint8Array;
  method: 0 | 8;
  crc: number;
  size: number;
}

/** Assemble a zip from raw entries (no alignment, no ZIP64). */
function assembleZip(entries: RawEntry[]): Uint8Array {
  const parts: Uint8Array[] = [], central: Uint8Array[] = [];
  let at = 0;
  for (const e of entries) {
    const n = enc.encode(e.name);
    const head = new Uint8Array(30 + n.length), dv = new DataView(head.buffer);
    dv.setUint32(0, 0x04034b50, true);
    dv.setUint16(8, e.method, true);
    dv.setUint32(14, e.crc, true);
    dv.setUint32(18, e.data.length, true);
    dv.setUint32(22, e.size, true);
    dv.setUint16(26, n.length, true);
    head.set(n, 30);
    const c = new Uint8Array(46 + n.length), cv = new DataView(c.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(10, e.method, true);
    cv.setUint32(16, e.crc, true);
    cv.setUint32(20, e.data.length, true);
    cv.setUint32(24, e.size, true);
    cv.setUint16(28, n.length, true);
    cv.setUint32(42, at, true);
    c.set(n, 46);
    parts.push(head, e.data);
    central.push(c);
    at += head.length + e.data.length;
  }
  const cdSize = central.reduce((s, c) => s + c.length, 0);
  const end = new Uint8Array(22), ev = new DataView(end.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, central.length, true);
  ev.setUint16(10, central.length, true);
  ev.setUint32(12, cdSize, true);
  ev.setUint32(16, at, true);
  const out = new Uint8Array(at + cdSize + 22);
  let p = 0;
  for (const x of [...parts, ...central, end]) (out.set(x, p), (p += x.length));
  return out;
}

async function deflate(raw: Uint8Array): Promise<Uint8Array> {
  const s = new Blob([raw.slice()]).stream().pipeThrough(new CompressionStream("deflate-raw"));
  return new Uint8Array(await new Response(s).arrayBuffer());
}

/** The entries of a (STORED) zip, re-compressed with DEFLATE. */
async function rezip(bytes: Uint8Array): Promise<RawEntry[]> {
  const zip = new ZipArchive(bytes);
  const out: RawEntry[] = [];
  for (const [name, e] of zip.entries) {
    const raw = zip.get(name);
    out.push({ name, data: await deflate(raw), method: 8, crc: e.crc32, size: raw.length });
  }
  return out;
}

/**
 * A DEFLATE stream of `1 + 258·k` zero bytes: one fixed-Huffman block holding a literal 0 and
 * k copies of ⟨length 258, distance 1⟩ (13 bits each).
 */
function zeroBomb(k: number): { data: Uint8Array; size: number } {
  const out = new Uint8Array(Math.ceil((3 + 8 + 13 * k + 7) / 8));
  let bit = 0;
  const put = (v: number, n: number) => { // LSB-first
    for (let i = 0; i < n; i++, bit++) if ((v >> i) & 1) out[bit >> 3] |= 1 << (bit & 7);
  };
  const huff = (code: number, n: number) => { // Huffman codes go MSB first
    for (let i = n - 1; i >= 0; i--, bit++) if ((code >> i) & 1) out[bit >> 3] |= 1 << (bit & 7);
  };
  put(1, 1); // BFINAL
  put(1, 2); // BTYPE = fixed Huffman
  huff(0x30, 8); // literal 0
  for (let i = 0; i < k; i++) {
    huff(0xc5, 8); // length code 285 (258)
    huff(0, 5); // distance code 0 (1)
  }
  huff(0, 7); // end of block
  return { data: out, size: 1 + 258 * k };
}

Deno.test("bad input 11: a byte flipped inside a tensor fails the CRC, naming entry and tensor", () => {
  const w = randomWeights(tinyConfig(), 3);
  const bytes = serializePth(tensorsFromWeights(w), "f32");
  const zip = new ZipArchive(bytes);
  const name = "archive/data/1"; // the second tensor written: blocks.0.ln1.weight
  const e = zip.entries.get(name)!;
  const start = zip.get(name).byteOffset - bytes.byteOffset;
  const bad = bytes.slice();
  bad[start + 5] ^= 0x40;
  const err = assertThrows(() => parsePth(bad, "flip.pth"), ZipError);
  assert(err.message.startsWith(`flip.pth: entry "${name}" fails its CRC-32 check`), err.message);
  assert(err.message.includes(`tensor "blocks.0.ln1.weight"`), err.message);
  assert(err.message.includes(`the directory says 0x${e.crc32.toString(16).padStart(8, "0")}`));
});

Deno.test("bad input 11: a NaN weight is refused at load, naming the tensor", async () => {
  const w = randomWeights(tinyConfig(), 4);
  const t = tensorsFromWeights(w);
  const tw = t.get("blocks.1.att.key.weight")!;
  tw.data[7] = NaN;
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/nan.safetensors`;
    await Deno.writeFile(path, serializeSafetensors(t, "f32"));
    await assertRejects(
      () => loadModel(path),
      CheckpointError,
      `${path}: blocks.1.att.key.weight: element 7 of ${tw.data.length} is NaN`,
    );
    tw.data[7] = 0;
    t.get("head.weight")!.data[0] = -Infinity;
    const pth = `${dir}/inf.pth`; // CRC-valid file (written so), value infinite
    await Deno.writeFile(pth, serializePth(t, "bf16"));
    await assertRejects(() => loadModel(pth), CheckpointError, "head.weight: element 0");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bad input 12: an unused 1 GiB DEFLATE entry is never inflated", async () => {
  const bomb = zeroBomb(4_161_790); // 1 073 741 821 zero bytes from ~6.8 MB
  assert(bomb.size > 2 ** 30 - 8);
  const small = serializeState(states(2), cfg, "peft", "f32");
  const entries = await rezip(small);
  entries.push({ name: "archive/extra/junk", data: bomb.data, method: 8, crc: 0, size: bomb.size });
  const bytes = assembleZip(entries);
  const rss0 = Deno.memoryUsage().rss;
  const { states: got } = await parseStateAsync(bytes, cfg, "bomb.pth");
  assertEquals(got[1], states(2)[1]);
  const grew = Deno.memoryUsage().rss - rss0;
  assert(grew < 256 * 2 ** 20, `memory grew by ${grew} bytes`);
});

Deno.test("bad input 12: a used DEFLATE entry is bounded by its declared size and a limit", async () => {
  const bomb = zeroBomb(40_000); // 10 320 001 bytes
  const lie = (size: number, name = "archive/data/0") => ({
    name,
    data: bomb.data,
    method: 8 as const,
    crc: 0,
    size,
  });
  const entries = await rezip(
    serializePth(new Map([["x", { shape: [4], data: new Float32Array(4) }]])),
  );
  const withStorage = (e: RawEntry) => entries.map((x) => (x.name === "archive/data/0" ? e : x));
  // the generator is valid DEFLATE: read honestly, it inflates to its zeros with their CRC
  const honest = { ...lie(bomb.size, "zeros"), crc: crc32(new Uint8Array(bomb.size)) };
  const zeros = await new ZipArchive(assembleZip([honest])).read("zeros");
  assertEquals(zeros.length, bomb.size);
  assert(zeros.every((b) => b === 0));
  await assertRejects(
    () => parsePthAsync(assembleZip(withStorage(lie(16))), "lie.pth"),
    ZipError,
    `lie.pth: entry "archive/data/0" inflates past the 16 bytes its directory entry declares`,
  );
  await assertRejects(
    () =>
      parsePthAsync(assembleZip(withStorage(lie(bomb.size))), "big.pth", {
        maxEntryBytes: 2 ** 20,
      }),
    ZipError,
    `declares ${bomb.size} bytes, over the 1048576-byte limit`,
  );
  await assertRejects(
    () => parsePthAsync(assembleZip(withStorage(lie(2 ** 31))), "ratio.pth"),
    ZipError,
    "more than DEFLATE can produce",
  );
});

Deno.test("bad input 13: a 300k-item APPENDS is read; the file is named, not a stack overflow", () => {
  const n = 300_000;
  const pkl = new Uint8Array(4 + 2 * n + 2);
  pkl.set([0x80, 0x02, 0x5d, 0x28]); // PROTO 2, EMPTY_LIST, MARK
  for (let i = 0; i < n; i++) pkl.set([0x4b, i & 0x7f], 4 + 2 * i); // BININT1
  pkl.set([0x65, 0x2e], 4 + 2 * n); // APPENDS, STOP
  const list = unpickle(pkl, "appends.pkl");
  assert(Array.isArray(list));
  assertEquals(list.length, n);
  assertEquals(list[n - 1], (n - 1) & 0x7f);
  const zip = assembleZip([{
    name: "archive/data.pkl",
    data: pkl,
    method: 0,
    crc: crc32(pkl),
    size: pkl.length,
  }]);
  assertThrows(
    () => parsePth(zip, "appends.pth"),
    PthError,
    "appends.pth: data.pkl holds a list of 300000, expected a dict of tensors",
  );
  // a pickle that fails inside is named too (here: an APPENDS on a non-list)
  assertThrows(
    () => unpickle(new Uint8Array([0x4e, 0x28, 0x65, 0x2e]), "x.pkl"),
    PickleError,
    "x.pkl: APPEND(S) on None",
  );
});

Deno.test("bad input 13: a zip extra field past the end is named, not a DataView error", () => {
  const bytes = serializeState(states(2), cfg, "peft", "f32");
  const dv = new DataView(bytes.buffer);
  const eocd = bytes.length - 22;
  const cd = dv.getUint32(eocd + 16, true);
  // the central directory's first extra length → past the end of the directory
  const a = bytes.slice();
  new DataView(a.buffer).setUint16(cd + 30, 0xfff0, true);
  assertThrows(
    () => parsePth(a, "extra.pth"),
    ZipError,
    `extra.pth: corrupt zip: central directory entry 0`,
  );
  // an extra sub-field whose size runs past its extra area (entry with 4 extra bytes)
  const entries = [{
    name: "a",
    data: new Uint8Array(3),
    method: 0 as const,
    crc: crc32(new Uint8Array(3)),
    size: 3,
  }];
  const z = assembleZip(entries);
  const zdv = new DataView(z.buffer);
  const zcd = zdv.getUint32(z.length - 22 + 16, true);
  const grown = new Uint8Array(z.length + 4);
  grown.set(z.subarray(0, zcd + 46 + 1));
  const gdv = new DataView(grown.buffer);
  gdv.setUint16(zcd + 30, 4, true);
  gdv.setUint16(zcd + 47, 1, true); // id 1 (ZIP64)
  gdv.setUint16(zcd + 49, 400, true); // 400 bytes, in an area of 4
  grown.set(z.subarray(zcd + 47), zcd + 51);
  new DataView(grown.buffer).setUint32(grown.length - 22 + 12, 46 + 1 + 4, true);
  const err = assertThrows(() => new ZipArchive(grown, "sub.zip"), ZipError);
  assert(err.message.startsWith("sub.zip: corrupt zip: central directory entry 0"), err.message);
  assert(err.message.includes("extra field (id 0x1, 400 bytes"), err.message);
  // the local header's lengths past the end of the file
  const b = bytes.slice();
  new DataView(b.buffer).setUint16(28, 0xffff, true);
  assertThrows(
    () => parsePth(b, "local.pth"),
    ZipError,
    'local.pth: corrupt zip: the local header of entry "archive/data.pkl" at offset 0 has a name',
  );
});

Deno.test("bad input 14: safetensors: header length past the end, overlaps, unknown layout", async () => {
  const t = new Map<string, Tensor>([
    ["a", { shape: [2], data: Float32Array.from([1, 2]) }],
    ["b", { shape: [2], data: Float32Array.from([3, 4]) }],
  ]);
  const good = serializeSafetensors(t, "f32");
  const dir = await Deno.makeTempDir();
  try {
    const long = good.slice();
    new DataView(long.buffer).setBigUint64(0, BigInt(good.length), true);
    const path = `${dir}/long.safetensors`;
    await Deno.writeFile(path, long);
    await assertRejects(
      () => readTensorFile(path),
      SafetensorsError,
      `${path}: the header length field says ${good.length} bytes but the file has only ` +
        `${good.length - 8} after it`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const header = {
    a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
    b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
  };
  const h = enc.encode(JSON.stringify(header));
  const overlap = new Uint8Array(8 + h.length + 12);
  new DataView(overlap.buffer).setBigUint64(0, BigInt(h.length), true);
  overlap.set(h, 8);
  const { parseSafetensors } = await import("../lib/model/safetensors.ts");
  assertThrows(
    () => parseSafetensors(overlap, "o.safetensors"),
    SafetensorsError,
    'o.safetensors: tensors "a" (bytes 0..8) and "b" (bytes 4..12) overlap',
  );
  const ws = serializeState(states(2), cfg, "web-rwkv");
  const weird = serializeSafetensors(
    new Map(
      [0, 1].map((l) => [`blocks.${l}.att.time_state`, { shape: [2, 4, 4], data: states(2)[l] }]),
    ),
    "f16",
    { format: "web-rwkv", layout: "k,v" },
  );
  assertEquals(parseState(ws, cfg).format, "web-rwkv");
  assertThrows(
    () => parseState(weird, cfg, "w.st"),
    StateFileError,
    'w.st: __metadata__.layout is "k,v"; expected "h,key,value"',
  );
});

Deno.test("bad input 15: a re-zipped (DEFLATE) state .pth loads", async () => {
  const want = states(2);
  const bytes = assembleZip(await rezip(serializeState(want, cfg, "peft", "f32")));
  assertEquals(new ZipArchive(bytes).entries.get("archive/data.pkl")!.method, 8);
  assertEquals((await parseStateAsync(bytes, cfg, "re.pth")).states, want);
  assertThrows(() => parseState(bytes, cfg, "re.pth"), ZipError, "loadState");
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/re.pth`, bytes);
    const got = await loadState(`${dir}/re.pth`, cfg);
    assertEquals(got.format, "peft");
    assertEquals(got.states, want);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bad input 16: a state file without layer 0 names the missing layer", () => {
  const s = states(3);
  const t = new Map(
    [1, 2].map((l) => [`blocks.${l}.att.time_state`, { shape: [2, 4, 4], data: s[l] }]),
  );
  const bytes = serializePth(t, "f32");
  assertThrows(
    () => parseState(bytes, { ...cfg, nLayer: 2 }, "no0.pth"),
    StateFileError,
    "no0.pth: has time_state for 2 layers but the model has 2 (blocks.0 to blocks.1); " +
      "missing: blocks.0; beyond the model: blocks.2",
  );
  assertThrows(
    () => parseState(bytes, { ...cfg, nLayer: 3 }, "no0.pth"),
    StateFileError,
    "missing: blocks.0;",
  );
});
