/**
 * safetensors reading and writing (F32, F16, BF16).
 *
 * Layout: u64 little-endian header length, a JSON header `{name: {dtype, shape,
 * data_offsets: [begin, end]}, "__metadata__"?: {…}}`, then the raw little-endian data.
 *
 * @module
 */
import { z } from "zod";
import type { DType, Tensor, TensorFile } from "./types.ts";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "./dtype.ts";

const EntrySchema = z.object({
  dtype: z.string(),
  shape: z.array(z.number().int().nonnegative()),
  data_offsets: z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]),
});

/** Largest JSON header safetensors allows (100 MB, as the reference implementation). */
const MAX_HEADER = 100_000_000;

const DTYPES: Record<string, { dtype: DType; bytes: number }> = {
  F32: { dtype: "f32", bytes: 4 },
  F16: { dtype: "f16", bytes: 2 },
  BF16: { dtype: "bf16", bytes: 2 },
};

/** Error for a malformed or unsupported safetensors file. */
export class SafetensorsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SafetensorsError";
  }
}

/**
 * Parse a safetensors file from bytes; every tensor is decoded to f32.
 *
 * @param bytes the whole file
 * @param source a name for error messages (the path)
 * @throws {SafetensorsError} naming the tensor or offset that is wrong
 */
export function parseSafetensors(bytes: Uint8Array, source = "safetensors"): TensorFile {
  const { header, headerLen } = readHeader(bytes, source);
  const dataStart = 8 + headerLen;
  const dataLen = bytes.length - dataStart;
  const tensors = new Map<string, Tensor>();
  const spans: { name: string; begin: number; end: number }[] = [];
  let fileDtype: DType | undefined;
  for (const [name, raw] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const parsed = EntrySchema.safeParse(raw);
    if (!parsed.success) {
      throw new SafetensorsError(`${source}: tensor "${name}" has a malformed header entry`);
    }
    const { dtype, shape, data_offsets: [begin, end] } = parsed.data;
    const dt = DTYPES[dtype];
    if (!dt) {
      throw new SafetensorsError(
        `${source}: tensor "${name}" has unsupported dtype ${dtype}; expected F32, F16 or BF16`,
      );
    }
    const count = shape.reduce((a, b) => a * b, 1);
    if (end - begin !== count * dt.bytes || end > dataLen || begin > end) {
      throw new SafetensorsError(
        `${source}: tensor "${name}" ${dtype}${JSON.stringify(shape)} has data offsets ` +
          `[${begin}, ${end}] but needs ${count * dt.bytes} bytes within ${dataLen}; ` +
          `the file is truncated or corrupt`,
      );
    }
    spans.push({ name, begin, end });
    const slice = bytes.slice(dataStart + begin, dataStart + end); // aligned copy
    const data = dt.dtype === "f32"
      ? new Float32Array(slice.buffer)
      : dt.dtype === "f16"
      ? f16ToF32(new Uint16Array(slice.buffer))
      : bf16ToF32(new Uint16Array(slice.buffer));
    fileDtype ??= dt.dtype;
    tensors.set(name, { shape, data });
  }
  checkOverlaps(spans, source);
  return { tensors, dtype: fileDtype ?? "f32" };
}

/** The JSON header and its length, checked against the file's size and the format's limit. */
function readHeader(
  bytes: Uint8Array,
  source: string,
): { header: Record<string, unknown>; headerLen: number } {
  if (bytes.length < 8) {
    throw new SafetensorsError(`${source}: file is ${bytes.length} bytes, too short for a header`);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = Number(dv.getBigUint64(0, true));
  if (headerLen > bytes.length - 8) {
    throw new SafetensorsError(
      `${source}: the header length field says ${headerLen} bytes but the file has only ` +
        `${bytes.length - 8} after it; the file is truncated (incomplete download?) or its ` +
        `first 8 bytes are damaged`,
    );
  }
  if (headerLen > MAX_HEADER) {
    throw new SafetensorsError(
      `${source}: header length ${headerLen} is over the ${MAX_HEADER}-byte limit ` +
        `safetensors allows; the file is corrupt`,
    );
  }
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLen)));
  } catch (e) {
    throw new SafetensorsError(`${source}: header is not valid JSON (${(e as Error).message})`);
  }
  return { header, headerLen };
}

/** Refuse tensors whose byte ranges overlap (the format requires disjoint ranges). */
function checkOverlaps(spans: { name: string; begin: number; end: number }[], source: string) {
  const sorted = spans.filter((s) => s.end > s.begin).sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < sorted.length; i++) {
    const a = sorted[i - 1], b = sorted[i];
    if (b.begin < a.end) {
      throw new SafetensorsError(
        `${source}: tensors "${a.name}" (bytes ${a.begin}..${a.end}) and "${b.name}" ` +
          `(bytes ${b.begin}..${b.end}) overlap; each tensor needs its own bytes, the file is ` +
          `corrupt or was written by a broken tool`,
      );
    }
  }
}

/** Read and parse a safetensors file. */
export async function readSafetensors(path: string): Promise<TensorFile> {
  return parseSafetensors(await Deno.readFile(path), path);
}

/**
 * Serialise tensors to safetensors bytes in `dtype` (names sorted, 8-byte aligned header).
 *
 * @param metadata optional string map stored as `__metadata__`
 */
export function serializeSafetensors(
  tensors: Map<string, Tensor> | Record<string, Tensor>,
  dtype: DType = "f32",
  metadata?: Record<string, string>,
): Uint8Array {
  const entries = (tensors instanceof Map ? [...tensors] : Object.entries(tensors))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const tag = dtype === "f32" ? "F32" : dtype === "f16" ? "F16" : "BF16";
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  const blobs: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of entries) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.data.length) {
      throw new RangeError(
        `tensor "${name}": shape ${t.shape} does not match ${t.data.length} values`,
      );
    }
    const blob = dtype === "f32"
      ? new Uint8Array(t.data.slice().buffer)
      : new Uint8Array((dtype === "f16" ? f32ToF16(t.data) : f32ToBf16(t.data)).buffer);
    header[name] = { dtype: tag, shape: t.shape, data_offsets: [offset, offset + blob.length] };
    blobs.push(blob);
    offset += blob.length;
  }
  let json = JSON.stringify(header);
  while ((json.length + 8) % 8 !== 0) json += " ";
  const head = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + head.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  let p = 8 + head.length;
  for (const b of blobs) {
    out.set(b, p);
    p += b.length;
  }
  return out;
}
