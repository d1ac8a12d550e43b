/**
 * Writing ZIP files as `torch.save` does: STORED entries with CRC-32, each entry's data aligned
 * to 64 bytes with an `FB` padding extra field, and ZIP64 records when sizes or offsets need
 * them. Reading is in `zip.ts`.
 *
 * @module
 */
import { crc32 } from "../util/crc32.ts";

export const SIG_LOCAL = 0x04034b50;
export const SIG_CENTRAL = 0x02014b50;
export const SIG_EOCD = 0x06054b50;
export const SIG_EOCD64 = 0x06064b50;
export const SIG_LOCATOR64 = 0x07064b50;
export const U32 = 0xffffffff;
export const U16 = 0xffff;
/** Data alignment `torch.save` uses for every entry. */
export const ZIP_ALIGNMENT = 64;

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
