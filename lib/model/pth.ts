/**
 * PyTorch checkpoints (`torch.save` zip format) holding a flat `{name: tensor}` dict.
 *
 * Layout: `<top>/data.pkl` (the pickle, read by the safe reader in `pickle.ts`),
 * `<top>/data/<key>` (one raw little-endian storage per key), `<top>/version`, and in newer
 * files `<top>/byteorder`. Tensors may be f32, f16 or bf16 and must be contiguous; storage
 * offsets are honoured. Every tensor is decoded to f32.
 *
 * @module
 */
import type { DType, Tensor, TensorFile } from "./types.ts";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "./dtype.ts";
import { describe, TorchTensor, unpickle } from "./pickle.ts";
import { pickleStateDict, type PickleTensorEntry } from "./pickle_write.ts";
import { writeZip, ZipArchive, ZipError } from "./zip.ts";
import type { ZipInput, ZipReadOptions } from "./zip.ts";

/** Error for a checkpoint that is not a readable tensor dict. */
export class PthError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PthError";
  }
}

/** Storage types by name with their dtype and element size. */
const STORAGES: Record<string, { dtype: DType; bytes: number }> = {
  FloatStorage: { dtype: "f32", bytes: 4 },
  HalfStorage: { dtype: "f16", bytes: 2 },
  BFloat16Storage: { dtype: "bf16", bytes: 2 },
};

const STORAGE_OF: Record<DType, string> = {
  f32: "FloatStorage",
  f16: "HalfStorage",
  bf16: "BFloat16Storage",
};

const SUPPORTED = "torch.FloatStorage (f32), torch.HalfStorage (f16), torch.BFloat16Storage (bf16)";

function product(xs: number[]): number {
  return xs.reduce((a, b) => a * b, 1);
}

/** Row-major strides of `shape`. */
function contiguousStride(shape: number[]): number[] {
  return shape.map((_, i) => product(shape.slice(i + 1)));
}

/** The name of `data.pkl` (at the root or under one top folder). */
function pickleName(zip: ZipArchive, source: string): string {
  const names = [...zip.entries.keys()];
  const pkl = names.find((n) => /^([^/]+\/)?data\.pkl$/.test(n));
  if (!pkl) {
    const some = names.slice(0, 5).map((n) => `"${n}"`).join(", ");
    throw new PthError(
      `${source}: no data.pkl in the zip (entries: ${some || "none"}${
        names.length > 5 ? ", …" : ""
      }); it is not a checkpoint written by torch.save`,
    );
  }
  return pkl;
}

/** Check `byteorder` (when present); returns the folder prefix of `data.pkl`. */
function findPickle(zip: ZipArchive, source: string): string {
  const prefix = pickleName(zip, source).slice(0, -"data.pkl".length);
  const order = zip.has(prefix + "byteorder")
    ? new TextDecoder().decode(zip.get(prefix + "byteorder")).trim()
    : "little";
  if (order !== "little") {
    throw new PthError(`${source}: byteorder is "${order}"; only little-endian files are read`);
  }
  return prefix;
}

function checkLayout(name: string, t: TorchTensor, source: string): void {
  const want = contiguousStride(t.shape);
  const ok = t.shape.every((d, i) => d <= 1 || t.stride[i] === want[i]);
  if (!ok || t.stride.length !== t.shape.length) {
    throw new PthError(
      `${source}: tensor "${name}" of shape [${t.shape.join(", ")}] has strides ` +
        `[${t.stride.join(", ")}], expected contiguous [${want.join(", ")}]; ` +
        `re-save it with tensor.contiguous()`,
    );
  }
  if (t.offset < 0 || t.offset + product(t.shape) > t.storage.numel) {
    throw new PthError(
      `${source}: tensor "${name}" reads elements ${t.offset}..${t.offset + product(t.shape)} ` +
        `of storage "${t.storage.key}" which holds ${t.storage.numel}; the file is corrupt`,
    );
  }
}

/** Run `read`, adding the tensor's name to a zip error (a CRC failure names the entry only). */
function forTensor<T>(name: string, read: () => T): T {
  const add = (e: unknown) => {
    if (e instanceof ZipError) e.message += ` (the storage of tensor "${name}")`;
    return e;
  };
  try {
    const r = read();
    return (r instanceof Promise ? r.catch((e) => Promise.reject(add(e))) : r) as T;
  } catch (e) {
    throw add(e);
  }
}

/** Decode one tensor from its storage entry. */
function decodeTensor(
  name: string,
  t: TorchTensor,
  zip: ZipArchive,
  prefix: string,
  source: string,
): { tensor: Tensor; dtype: DType } {
  const st = STORAGES[t.storage.storageType];
  if (!st) {
    throw new PthError(
      `${source}: tensor "${name}" has unsupported dtype torch.${t.storage.storageType}; ` +
        `supported: ${SUPPORTED}`,
    );
  }
  checkLayout(name, t, source);
  const entry = `${prefix}data/${t.storage.key}`;
  if (!zip.has(entry)) {
    throw new PthError(
      `${source}: storage "${t.storage.key}" of tensor "${name}" is missing (no entry ` +
        `"${entry}"); the file is incomplete or corrupt`,
    );
  }
  const raw = forTensor(name, () => zip.get(entry));
  if (raw.length < t.storage.numel * st.bytes) {
    throw new PthError(
      `${source}: storage "${entry}" of tensor "${name}" has ${raw.length} bytes, ` +
        `expected ${t.storage.numel * st.bytes}; the file is truncated or corrupt`,
    );
  }
  const n = product(t.shape);
  const bytes = raw.slice(t.offset * st.bytes, (t.offset + n) * st.bytes); // aligned copy
  const data = st.dtype === "f32"
    ? new Float32Array(bytes.buffer)
    : st.dtype === "f16"
    ? f16ToF32(new Uint16Array(bytes.buffer))
    : bf16ToF32(new Uint16Array(bytes.buffer));
  return { tensor: { shape: t.shape, data }, dtype: st.dtype };
}

/** The `{name: tensor}` entries of `data.pkl`, validated. */
function pickledTensors(zip: ZipArchive, source: string): [string, TorchTensor][] {
  const prefix = findPickle(zip, source);
  const root = unpickle(zip.get(prefix + "data.pkl"), `${source}: data.pkl`);
  if (!(root instanceof Map)) {
    throw new PthError(`${source}: data.pkl holds a ${describe(root)}, expected a dict of tensors`);
  }
  const out: [string, TorchTensor][] = [];
  for (const [key, value] of root) {
    if (typeof key !== "string") {
      throw new PthError(`${source}: data.pkl has a non-string key ${String(key)}`);
    }
    if (!(value instanceof TorchTensor)) {
      throw new PthError(
        `${source}: "${key}" holds a ${describe(value)}, expected a tensor; only flat ` +
          `{name: tensor} state dicts are read`,
      );
    }
    out.push([key, value]);
  }
  return out;
}

function tensorsFromArchive(zip: ZipArchive, source: string): TensorFile {
  const prefix = findPickle(zip, source);
  const tensors = new Map<string, Tensor>();
  let dtype: DType | undefined;
  for (const [key, value] of pickledTensors(zip, source)) {
    const t = decodeTensor(key, value, zip, prefix, source);
    dtype ??= t.dtype;
    tensors.set(key, t.tensor);
  }
  return { tensors, dtype: dtype ?? "f32" };
}

/**
 * Parse a PyTorch checkpoint whose entries are STORED (as `torch.save` writes them). Every
 * entry read is CRC-checked; entries the pickle does not use are never touched.
 *
 * @param bytes the whole file
 * @param source a name for error messages (the path)
 * @throws {PthError} for a non-tensor dict, missing storage or unsupported dtype
 * @throws {ZipError} for a file that is not a zip, is truncated, fails a CRC, or uses DEFLATE
 *   (use {@linkcode parsePthAsync})
 * @throws {PickleError} for a disallowed global or an unknown opcode in `data.pkl`
 */
export function parsePth(bytes: Uint8Array, source = "pth"): TensorFile {
  return tensorsFromArchive(new ZipArchive(bytes, source), source);
}

/**
 * Like {@linkcode parsePth}, and also reads DEFLATE-compressed entries (re-zipped files):
 * only `data.pkl`, `byteorder` and the storages the pickle names are inflated, one at a time,
 * each bounded by its declared size and {@linkcode ZipReadOptions.maxEntryBytes}.
 */
export async function parsePthAsync(
  bytes: Uint8Array,
  source = "pth",
  options: ZipReadOptions = {},
): Promise<TensorFile> {
  const zip = new ZipArchive(bytes, source, options);
  const pkl = pickleName(zip, source);
  const prefix = pkl.slice(0, -"data.pkl".length);
  await zip.read(pkl);
  if (zip.has(prefix + "byteorder")) await zip.read(prefix + "byteorder");
  for (const [key, t] of pickledTensors(zip, source)) {
    const entry = `${prefix}data/${t.storage.key}`;
    if (zip.has(entry)) await forTensor(key, () => zip.read(entry));
  }
  return tensorsFromArchive(zip, source);
}

/** Options for {@linkcode serializePth}. */
export interface PthWriteOptions {
  /** Top folder inside the zip (`torch.save` uses the file's stem; default `"archive"`). */
  archiveName?: string;
  /** Write ZIP64 records even when not needed (for tests). */
  forceZip64?: boolean;
}

function encode(data: Float32Array, dtype: DType): Uint8Array {
  if (dtype === "f32") return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const u16 = dtype === "f16" ? f32ToF16(data) : f32ToBf16(data);
  return new Uint8Array(u16.buffer);
}

/**
 * Serialise tensors to a `torch.load`-compatible checkpoint (`archive/data.pkl`,
 * `archive/byteorder`, `archive/data/<i>`, `archive/version`), every tensor in `dtype`.
 *
 * @param tensors by name, in the order to write them
 * @param dtype storage dtype of every tensor
 * @returns the zip file's bytes
 */
export function serializePth(
  tensors: Map<string, Tensor> | Record<string, Tensor>,
  dtype: DType = "f32",
  options: PthWriteOptions = {},
): Uint8Array {
  if (!(dtype in STORAGE_OF)) {
    throw new TypeError(`dtype "${dtype}" is not supported; expected "f32", "f16" or "bf16"`);
  }
  const top = options.archiveName ?? "archive";
  const list = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  const entries: PickleTensorEntry[] = [];
  const files: ZipInput[] = [];
  list.forEach(([name, t], i) => {
    if (product(t.shape) !== t.data.length) {
      throw new RangeError(
        `tensor "${name}": shape [${t.shape.join(", ")}] does not match ${t.data.length} values`,
      );
    }
    entries.push({ name, shape: t.shape, storageType: STORAGE_OF[dtype], key: String(i) });
    files.push({ name: `${top}/data/${i}`, data: encode(t.data, dtype) });
  });
  const enc = new TextEncoder();
  return writeZip([
    { name: `${top}/data.pkl`, data: pickleStateDict(entries) },
    { name: `${top}/byteorder`, data: enc.encode("little") },
    ...files,
    { name: `${top}/version`, data: enc.encode("3\n") },
  ], { forceZip64: options.forceZip64 });
}
