/**
 * A minimal ZIP reader and writer, enough for PyTorch's `torch.save` format.
 *
 * Reading: the end-of-central-directory record (and its ZIP64 form when present), the central
 * directory, and each local header to find where the data starts. Sizes always come from the
 * central directory, because `torch.save` writes local headers with zero sizes followed by a
 * data descriptor. STORED entries are read synchronously; DEFLATE entries (which torch never
 * writes, but re-zipping tools do) are inflated on demand, one at a time, by
 * {@linkcode ZipArchive.read} with `DecompressionStream("deflate-raw")`: only entries that are
 * asked for, each stopped at the size its directory entry declares and refused beyond a sanity
 * limit. Every entry's CRC-32 is checked on first read (streaming while inflating).
 *
 * Writing (in `zip_write.ts`, re-exported here): STORED entries with CRC-32, 64-byte aligned
 * data with an `FB` padding extra field as torch writes it, ZIP64 records when needed.
 *
 * @module
 */

import { z } from "zod";
import { crc32 } from "../util/crc32.ts";
export { crc32 } from "../util/crc32.ts";
export { writeZip, ZIP_ALIGNMENT } from "./zip_write.ts";
export type { ZipInput, ZipWriteOptions } from "./zip_write.ts";

import {
  SIG_CENTRAL,
  SIG_EOCD,
  SIG_EOCD64,
  SIG_LOCAL,
  SIG_LOCATOR64,
  U16,
  U32,
} from "./zip_write.ts";

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

function hexBytes(bytes: Uint8Array, n = 8): string {
  return [...bytes.subarray(0, n)].map((b) => b.toString(16).padStart(2, "0")).join(" ");
}

function u64(dv: DataView, at: number): number {
  const v = dv.getBigUint64(at, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ZipError(`ZIP64 value ${v} is too large`);
  return Number(v);
}

/** Largest entry {@linkcode ZipArchive.read} inflates by default (4 GiB). */
export const MAX_ENTRY_BYTES = 2 ** 32;
/** DEFLATE's largest expansion: a 258-byte match costs at least 2 bits (1032:1). */
const MAX_DEFLATE_RATIO = 1032;

/** Options of {@linkcode ZipArchive}. */
export const ZipReadOptionsSchema = z.object({
  /** Refuse to inflate an entry declaring more bytes than this. Default {@link MAX_ENTRY_BYTES}. */
  maxEntryBytes: z.number().int().positive().default(MAX_ENTRY_BYTES),
});
/** Options of {@linkcode ZipArchive} (input form). */
export type ZipReadOptions = z.input<typeof ZipReadOptionsSchema>;

/** A parsed ZIP archive over an in-memory file. Entry data are views into the file bytes. */
export class ZipArchive {
  /** Entries by name, in central-directory order. */
  readonly entries: Map<string, ZipEntry>;
  readonly #bytes: Uint8Array;
  readonly #dv: DataView;
  readonly #source: string;
  readonly #maxEntry: number;
  readonly #inflated = new Map<string, Uint8Array>();
  readonly #verified = new Set<string>();

  /**
   * Parse the central directory of `bytes`.
   *
   * @param bytes the whole file
   * @param source a name for error messages (the path)
   * @throws {ZipError} when the file is not a zip or is truncated
   */
  constructor(bytes: Uint8Array, source = "zip", options: ZipReadOptions = {}) {
    this.#bytes = bytes;
    this.#dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.#source = source;
    this.#maxEntry = ZipReadOptionsSchema.parse(options).maxEntryBytes;
    this.entries = new Map();
    try {
      const { count, cdOffset, cdSize } = this.#readEnd();
      this.#readCentral(count, cdOffset, cdSize);
    } catch (e) {
      if (e instanceof RangeError) {
        this.#fail(`corrupt zip: a record points past the end of the file (${e.message})`);
      }
      throw e;
    }
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
      if (p + 46 + nameLen + extraLen + commentLen > end) {
        this.#fail(
          `corrupt zip: central directory entry ${i} ("${name}") has a name, extra field and ` +
            `comment of ${nameLen} + ${extraLen} + ${commentLen} bytes that run past the end of ` +
            `the directory (offset ${end}); the file is corrupt`,
        );
      }
      const entry: ZipEntry = {
        name,
        method: dv.getUint16(p + 10, true),
        crc32: dv.getUint32(p + 16, true),
        compressedSize: dv.getUint32(p + 20, true),
        size: dv.getUint32(p + 24, true),
        localOffset: dv.getUint32(p + 42, true),
      };
      this.#applyZip64(entry, p + 46 + nameLen, extraLen, i);
      this.entries.set(name, entry);
      p += 46 + nameLen + extraLen + commentLen;
    }
  }

  /** Replace 0xFFFFFFFF fields with the values from a ZIP64 extra field (id 1). */
  #applyZip64(e: ZipEntry, at: number, len: number, index: number): void {
    const dv = this.#dv;
    for (let q = at; q + 4 <= at + len;) {
      const id = dv.getUint16(q, true), size = dv.getUint16(q + 2, true);
      if (q + 4 + size > at + len) {
        this.#fail(
          `corrupt zip: central directory entry ${index} ("${e.name}") has an extra field ` +
            `(id 0x${id.toString(16)}, ${size} bytes at offset ${q}) that runs past the end of ` +
            `its ${len}-byte extra area; the file is corrupt`,
        );
      }
      if (id === 1) {
        const need = 8 * [e.size, e.compressedSize, e.localOffset].filter((v) => v === U32).length;
        if (need > size) {
          this.#fail(
            `corrupt zip: entry "${e.name}" has a ${size}-byte ZIP64 extra field, ${need} needed`,
          );
        }
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
    if (start > n) {
      this.#fail(
        `corrupt zip: the local header of entry "${e.name}" at offset ${e.localOffset} has a ` +
          `name and extra field that run past the end of the file (${n} bytes)`,
      );
    }
    if (start + e.compressedSize > n) {
      this.#fail(
        `truncated zip: entry "${e.name}" needs bytes ${start}..${start + e.compressedSize} ` +
          `but the file is ${n} bytes`,
      );
    }
    return this.#bytes.subarray(start, start + e.compressedSize);
  }

  #entry(name: string): ZipEntry {
    return this.entries.get(name) ?? this.#fail(`entry "${name}" is missing`);
  }

  #checkCrc(e: ZipEntry, crc: number): void {
    if (crc !== e.crc32) {
      this.#fail(
        `entry "${e.name}" fails its CRC-32 check (computed ${hex32(crc)}, the directory says ` +
          `${hex32(e.crc32)}): its bytes were changed or damaged; the file is corrupt, ` +
          `download or copy it again`,
      );
    }
  }

  /**
   * The bytes of entry `name` (a view into the file for STORED entries), CRC-checked on the
   * first read. DEFLATE entries must have been read with {@linkcode ZipArchive.read} first.
   *
   * @param verify check the CRC-32 (one pass over the data, done once per entry)
   * @throws {ZipError} when the entry is missing, truncated, corrupt, or DEFLATE-compressed and
   *   not yet read with {@linkcode ZipArchive.read}
   */
  get(name: string, verify = true): Uint8Array {
    const e = this.#entry(name);
    let data = this.#inflated.get(name);
    if (!data) {
      if (e.method !== 0) {
        this.#fail(
          `entry "${name}" uses compression method ${e.method} (${
            e.method === 8 ? "DEFLATE" : "unsupported"
          }); the synchronous reader takes STORED (0) entries only: load the file with ` +
            `loadModel / parsePthAsync / loadState, which inflate DEFLATE entries`,
        );
      }
      data = this.#raw(e);
    }
    if (data.length !== e.size) {
      this.#fail(`entry "${name}" has ${data.length} bytes, the directory says ${e.size}`);
    }
    if (verify && !this.#verified.has(name)) {
      this.#checkCrc(e, crc32(data));
      this.#verified.add(name);
    }
    return data;
  }

  /**
   * The bytes of entry `name`, inflating a DEFLATE entry on first use (then kept). The output
   * is bounded by the size the directory declares, refused above the sanity limit, and its
   * CRC-32 is computed while it streams.
   *
   * @throws {ZipError} for a missing, corrupt, oversized or unsupported entry
   */
  async read(name: string): Promise<Uint8Array> {
    const e = this.#entry(name);
    if (e.method === 0 || this.#inflated.has(name)) return this.get(name);
    if (e.method !== 8) {
      this.#fail(`entry "${name}" uses unsupported compression method ${e.method}`);
    }
    const raw = this.#raw(e);
    if (e.size > this.#maxEntry) {
      this.#fail(
        `entry "${name}" declares ${e.size} bytes, over the ${this.#maxEntry}-byte limit ` +
          `per entry (maxEntryBytes); it is corrupt or not a checkpoint entry`,
      );
    }
    if (e.size > raw.length * MAX_DEFLATE_RATIO + 1024) {
      this.#fail(
        `entry "${name}" declares ${e.size} bytes from ${raw.length} compressed bytes, more ` +
          `than DEFLATE can produce (${MAX_DEFLATE_RATIO}:1); the file is corrupt`,
      );
    }
    const out = await this.#inflate(e, raw);
    this.#inflated.set(name, out);
    this.#verified.add(name);
    return out;
  }

  async #inflate(e: ZipEntry, raw: Uint8Array): Promise<Uint8Array> {
    const out = new Uint8Array(e.size);
    const reader = new Blob([raw.slice()]).stream()
      .pipeThrough(new DecompressionStream("deflate-raw")).getReader();
    let n = 0, crc = 0;
    try {
      while (true) {
        const { done, value } = await reader.read();
        if (done) break;
        if (n + value.length > e.size) {
          this.#fail(
            `entry "${e.name}" inflates past the ${e.size} bytes its directory entry declares; ` +
              `the file is corrupt (stopped at ${e.size} bytes)`,
          );
        }
        out.set(value, n);
        crc = crc32(value, crc);
        n += value.length;
      }
    } catch (err) {
      await reader.cancel().catch(() => {});
      if (err instanceof ZipError) throw err;
      this.#fail(`entry "${e.name}" is not valid DEFLATE data (${(err as Error).message})`);
    }
    if (n !== e.size) {
      this.#fail(`entry "${e.name}" inflates to ${n} bytes, the directory says ${e.size}`);
    }
    this.#checkCrc(e, crc);
    return out;
  }

  /** Inflate every DEFLATE entry (see {@linkcode ZipArchive.read}; prefer reading only what is used). */
  async inflateAll(): Promise<void> {
    for (const name of this.entries.keys()) await this.read(name);
  }
}

function hex32(v: number): string {
  return "0x" + v.toString(16).padStart(8, "0");
}
