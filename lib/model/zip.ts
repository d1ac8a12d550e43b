/**
 * A minimal ZIP reader and writer, enough for PyTorch's `torch.save` format.
 *
 * Reading: the end-of-central-directory record (and its ZIP64 form when present), the central
 * directory, and each local header to find where the data starts. Sizes always come from the
 * central directory, because `torch.save` writes local headers with zero sizes followed by a
 * data descriptor. STORED entries are read synchronously; DEFLATE entries (which torch never
 * writes) are inflated with `DecompressionStream("deflate-raw")` by {@linkcode ZipArchive.inflateAll}.
 *
 * Writing: STORED entries with CRC-32, each entry's data aligned to 64 bytes with an `FB`
 * padding extra field as torch writes it, and ZIP64 records when sizes or offsets need them.
 *
 * @module
 */

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_EOCD64 = 0x06064b50;
const SIG_LOCATOR64 = 0x07064b50;
const U32 = 0xffffffff;
const U16 = 0xffff;
/** Data alignment `torch.save` uses for every entry. */
export const ZIP_ALIGNMENT = 64;

/** Error for a malformed, truncated or unsupported ZIP file. */
export class ZipError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ZipError";
  }
}

/** One central-directory entry. */
export interface ZipEntry {
  name: string;
  /** 0 = STORED, 8 = DEFLATE. */
  method: number;
  crc32: number;
  compressedSize: number;
  size: number;
  /** Offset of the local header. */
  localOffset: number;
}

let crcTable: Uint32Array | undefined;

/** CRC-32 (IEEE, as ZIP uses) of `bytes`, continuing from `crc` when given. */
export function crc32(bytes: Uint8Array, crc = 0): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  const t = crcTable;
  let c = (crc ^ U32) >>> 0;
  for (let i = 0; i < bytes.length; i++) c = t[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ U32) >>> 0;
}

function hexBytes(bytes: Uint8Array, n = 8): string {
  return [...bytes.subarray(0, n)].map((b) => b.toString(16).padStart(2, "0")).join(" ");
}

function u64(dv: DataView, at: number): number {
  const v = dv.getBigUint64(at, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ZipError(`ZIP64 value ${v} is too large`);
  return Number(v);
}

/** A parsed ZIP archive over an in-memory file. Entry data are views into the file bytes. */
export class ZipArchive {
  /** Entries by name, in central-directory order. */
  readonly entries: Map<string, ZipEntry>;
  readonly #bytes: Uint8Array;
  readonly #dv: DataView;
  readonly #source: string;
  readonly #inflated = new Map<string, Uint8Array>();

  /**
   * Parse the central directory of `bytes`.
   *
   * @param bytes the whole file
   * @param source a name for error messages (the path)
   * @throws {ZipError} when the file is not a zip or is truncated
   */
  constructor(bytes: Uint8Array, source = "zip") {
    this.#bytes = bytes;
    this.#dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.#source = source;
    this.entries = new Map();
    const { count, cdOffset, cdSize } = this.#readEnd();
    this.#readCentral(count, cdOffset, cdSize);
  }

  #fail(what: string): never {
    throw new ZipError(`${this.#source}: ${what}`);
  }

  #readEnd(): { count: number; cdOffset: number; cdSize: number } {
    const b = this.#bytes, dv = this.#dv;
    const isZipStart = b.length >= 4 && dv.getUint32(0, true) === SIG_LOCAL;
    if (!isZipStart && !(b.length >= 4 && dv.getUint32(0, true) === SIG_EOCD)) {
      this.#fail(
        `not a zip file: first bytes are [${hexBytes(b)}], expected 50 4b 03 04 ("PK\\x03\\x04")`,
      );
    }
    let eocd = -1;
    for (let i = b.length - 22; i >= Math.max(0, b.length - 22 - 65535); i--) {
      if (dv.getUint32(i, true) === SIG_EOCD) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) {
      this.#fail(
        `truncated zip: the file (${b.length} bytes) starts like a zip but has no ` +
          `end-of-central-directory record; it was cut short (incomplete download or copy?)`,
      );
    }
    let count = dv.getUint16(eocd + 10, true);
    let cdSize = dv.getUint32(eocd + 12, true);
    let cdOffset = dv.getUint32(eocd + 16, true);
    const loc = eocd - 20;
    if (loc >= 0 && dv.getUint32(loc, true) === SIG_LOCATOR64) {
      const at = u64(dv, loc + 8);
      if (at + 56 > b.length || dv.getUint32(at, true) !== SIG_EOCD64) {
        this.#fail(`truncated or corrupt zip: ZIP64 end record expected at offset ${at}`);
      }
      count = u64(dv, at + 32);
      cdSize = u64(dv, at + 40);
      cdOffset = u64(dv, at + 48);
    } else if (count === U16 || cdSize === U32 || cdOffset === U32) {
      this.#fail(`corrupt zip: ZIP64 sizes are flagged but the ZIP64 locator is missing`);
    }
    if (cdOffset + cdSize > b.length) {
      this.#fail(
        `truncated zip: central directory at offset ${cdOffset} (+${cdSize} bytes) lies beyond ` +
          `the file size ${b.length}`,
      );
    }
    return { count, cdOffset, cdSize };
  }

  #readCentral(count: number, cdOffset: number, cdSize: number): void {
    const dv = this.#dv, end = cdOffset + cdSize;
    let p = cdOffset;
    for (let i = 0; i < count; i++) {
      if (p + 46 > end || dv.getUint32(p, true) !== SIG_CENTRAL) {
        this.#fail(`corrupt zip: central directory entry ${i} of ${count} at offset ${p} is bad`);
      }
      const nameLen = dv.getUint16(p + 28, true);
      const extraLen = dv.getUint16(p + 30, true);
      const commentLen = dv.getUint16(p + 32, true);
      const name = new TextDecoder().decode(this.#bytes.subarray(p + 46, p + 46 + nameLen));
      const entry: ZipEntry = {
        name,
        method: dv.getUint16(p + 10, true),
        crc32: dv.getUint32(p + 16, true),
        compressedSize: dv.getUint32(p + 20, true),
        size: dv.getUint32(p + 24, true),
        localOffset: dv.getUint32(p + 42, true),
      };
      this.#applyZip64(entry, p + 46 + nameLen, extraLen);
      this.entries.set(name, entry);
      p += 46 + nameLen + extraLen + commentLen;
    }
  }

  /** Replace 0xFFFFFFFF fields with the values from a ZIP64 extra field (id 1). */
  #applyZip64(e: ZipEntry, at: number, len: number): void {
    const dv = this.#dv;
    for (let q = at; q + 4 <= at + len;) {
      const id = dv.getUint16(q, true), size = dv.getUint16(q + 2, true);
      if (id === 1) {
        let r = q + 4;
        if (e.size === U32) (e.size = u64(dv, r)), (r += 8);
        if (e.compressedSize === U32) (e.compressedSize = u64(dv, r)), (r += 8);
        if (e.localOffset === U32) e.localOffset = u64(dv, r);
      }
      q += 4 + size;
    }
  }

  /** True when the archive holds `name`. */
  has(name: string): boolean {
    return this.entries.has(name);
  }

  /** The raw (possibly compressed) bytes of an entry, bounds-checked. */
  #raw(e: ZipEntry): Uint8Array {
    const dv = this.#dv, n = this.#bytes.length;
    if (e.localOffset + 30 > n || dv.getUint32(e.localOffset, true) !== SIG_LOCAL) {
      this.#fail(
        `truncated or corrupt zip: entry "${e.name}" has no local header at offset ` +
          `${e.localOffset} (file is ${n} bytes)`,
      );
    }
    const start = e.localOffset + 30 + dv.getUint16(e.localOffset + 26, true) +
      dv.getUint16(e.localOffset + 28, true);
    if (start + e.compressedSize > n) {
      this.#fail(
        `truncated zip: entry "${e.name}" needs bytes ${start}..${start + e.compressedSize} ` +
          `but the file is ${n} bytes`,
      );
    }
    return this.#bytes.subarray(start, start + e.compressedSize);
  }

  /**
   * The bytes of entry `name` (a view into the file for STORED entries).
   *
   * @param verify check the CRC-32 (costs a pass over the data)
   * @throws {ZipError} when the entry is missing, truncated, corrupt, or DEFLATE-compressed and
   *   not yet inflated with {@linkcode ZipArchive.inflateAll}
   */
  get(name: string, verify = false): Uint8Array {
    const e = this.entries.get(name);
    if (!e) this.#fail(`entry "${name}" is missing`);
    let data = this.#inflated.get(name);
    if (!data) {
      if (e.method !== 0) {
        this.#fail(
          `entry "${name}" uses compression method ${e.method}; only STORED (0) is read ` +
            `synchronously (call inflateAll() first for DEFLATE)`,
        );
      }
      data = this.#raw(e);
    }
    if (data.length !== e.size) {
      this.#fail(`entry "${name}" has ${data.length} bytes, the directory says ${e.size}`);
    }
    if (verify && crc32(data) !== e.crc32) {
      this.#fail(`entry "${name}" fails its CRC-32 check; the file is corrupt`);
    }
    return data;
  }

  /**
   * Inflate every DEFLATE entry so {@linkcode ZipArchive.get} can return it.
   *
   * @throws {ZipError} for compression methods other than STORED and DEFLATE
   */
  async inflateAll(): Promise<void> {
    for (const e of this.entries.values()) {
      if (e.method === 0 || this.#inflated.has(e.name)) continue;
      if (e.method !== 8) {
        this.#fail(`entry "${e.name}" uses unsupported compression method ${e.method}`);
      }
      const stream = new Blob([this.#raw(e).slice()]).stream()
        .pipeThrough(new DecompressionStream("deflate-raw"));
      this.#inflated.set(e.name, new Uint8Array(await new Response(stream).arrayBuffer()));
    }
  }
}

/** One file to write into a ZIP. */
export interface ZipInput {
  name: string;
  data: Uint8Array;
}

/** Options for {@linkcode writeZip}. */
export interface ZipWriteOptions {
  /** Write ZIP64 records even when not needed (for tests). */
  forceZip64?: boolean;
}

interface Placed {
  name: Uint8Array;
  data: Uint8Array;
  crc: number;
  offset: number;
  extra: Uint8Array;
}

/** Local-header extra field: ZIP64 sizes when needed, then `FB` padding to align the data. */
function localExtra(at: number, nameLen: number, size: number, z64: boolean): Uint8Array {
  const z = z64 ? 20 : 0;
  const before = at + 30 + nameLen + z + 4;
  const pad = (ZIP_ALIGNMENT - (before % ZIP_ALIGNMENT)) % ZIP_ALIGNMENT;
  const extra = new Uint8Array(z + 4 + pad);
  const dv = new DataView(extra.buffer);
  if (z64) {
    dv.setUint16(0, 1, true);
    dv.setUint16(2, 16, true);
    dv.setBigUint64(4, BigInt(size), true);
    dv.setBigUint64(12, BigInt(size), true);
  }
  dv.setUint16(z, 0x4246, true); // "FB", as torch writes
  dv.setUint16(z + 2, pad, true);
  extra.fill(0x5a, z + 4); // "Z"
  return extra;
}

function writeLocal(dv: DataView, p: number, e: Placed, z64: boolean): void {
  dv.setUint32(p, SIG_LOCAL, true);
  dv.setUint16(p + 4, z64 ? 45 : 20, true);
  dv.setUint16(p + 6, 0x0800, true); // UTF-8 names
  dv.setUint32(p + 14, e.crc, true);
  dv.setUint32(p + 18, z64 ? U32 : e.data.length, true);
  dv.setUint32(p + 22, z64 ? U32 : e.data.length, true);
  dv.setUint16(p + 26, e.name.length, true);
  dv.setUint16(p + 28, e.extra.length, true);
}

function writeCentral(dv: DataView, p: number, e: Placed, z64: boolean): number {
  dv.setUint32(p, SIG_CENTRAL, true);
  dv.setUint16(p + 4, z64 ? 45 : 20, true);
  dv.setUint16(p + 6, z64 ? 45 : 20, true);
  dv.setUint16(p + 8, 0x0800, true);
  dv.setUint32(p + 16, e.crc, true);
  dv.setUint32(p + 20, z64 ? U32 : e.data.length, true);
  dv.setUint32(p + 24, z64 ? U32 : e.data.length, true);
  dv.setUint16(p + 28, e.name.length, true);
  dv.setUint16(p + 30, z64 ? 28 : 0, true);
  dv.setUint32(p + 42, z64 ? U32 : e.offset, true);
  new Uint8Array(dv.buffer).set(e.name, p + 46);
  const q = p + 46 + e.name.length;
  if (z64) {
    dv.setUint16(q, 1, true);
    dv.setUint16(q + 2, 24, true);
    dv.setBigUint64(q + 4, BigInt(e.data.length), true);
    dv.setBigUint64(q + 12, BigInt(e.data.length), true);
    dv.setBigUint64(q + 20, BigInt(e.offset), true);
    return q + 28;
  }
  return q;
}

function writeEnd(dv: DataView, p: number, n: number, cd: number, cdSize: number, z64: boolean) {
  if (z64) {
    dv.setUint32(p, SIG_EOCD64, true);
    dv.setBigUint64(p + 4, 44n, true);
    dv.setUint16(p + 12, 45, true);
    dv.setUint16(p + 14, 45, true);
    dv.setBigUint64(p + 24, BigInt(n), true);
    dv.setBigUint64(p + 32, BigInt(n), true);
    dv.setBigUint64(p + 40, BigInt(cdSize), true);
    dv.setBigUint64(p + 48, BigInt(cd), true);
    dv.setUint32(p + 56, SIG_LOCATOR64, true);
    dv.setBigUint64(p + 64, BigInt(p), true);
    dv.setUint32(p + 72, 1, true);
    p += 76;
  }
  dv.setUint32(p, SIG_EOCD, true);
  dv.setUint16(p + 8, z64 ? U16 : n, true);
  dv.setUint16(p + 10, z64 ? U16 : n, true);
  dv.setUint32(p + 12, z64 ? U32 : cdSize, true);
  dv.setUint32(p + 16, z64 ? U32 : cd, true);
}

/**
 * Write `files` as a ZIP of STORED entries, each entry's data 64-byte aligned.
 *
 * @returns the whole archive
 */
export function writeZip(files: ZipInput[], options: ZipWriteOptions = {}): Uint8Array {
  const enc = new TextEncoder();
  const total = files.reduce((s, f) => s + f.data.length + 30 + 200, 0);
  const z64 = options.forceZip64 === true || total >= U32 || files.length >= U16;
  const placed: Placed[] = [];
  let p = 0;
  for (const f of files) {
    const name = enc.encode(f.name);
    const extra = localExtra(p, name.length, f.data.length, z64);
    placed.push({ name, data: f.data, crc: crc32(f.data), offset: p, extra });
    p += 30 + name.length + extra.length + f.data.length;
  }
  const cd = p;
  const cdSize = placed.reduce((s, e) => s + 46 + e.name.length + (z64 ? 28 : 0), 0);
  const out = new Uint8Array(cd + cdSize + (z64 ? 76 : 0) + 22);
  const dv = new DataView(out.buffer);
  for (const e of placed) {
    writeLocal(dv, e.offset, e, z64);
    out.set(e.name, e.offset + 30);
    out.set(e.extra, e.offset + 30 + e.name.length);
    out.set(e.data, e.offset + 30 + e.name.length + e.extra.length);
  }
  let q = cd;
  for (const e of placed) q = writeCentral(dv, q, e, z64);
  writeEnd(dv, q, placed.length, cd, cdSize, z64);
  return out;
}
