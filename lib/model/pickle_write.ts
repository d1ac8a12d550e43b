/**
 * A small pickle writer for PyTorch checkpoints: a protocol-2 pickle of a `{name: tensor}` dict
 * that `torch.load` accepts (also with `weights_only=True`). The reader is `pickle.ts`.
 *
 * @module
 */
import { allowGlobal } from "./pickle.ts";

/** One tensor for {@linkcode pickleStateDict} (contiguous, offset 0, own storage by default). */
export interface PickleTensorEntry {
  name: string;
  shape: number[];
  /** e.g. `"BFloat16Storage"`. */
  storageType: string;
  /** Storage key: the file `archive/data/<key>`. */
  key: string;
  /** Storage offset in elements (default 0). */
  offset?: number;
  /** Strides in elements (default row-major). */
  stride?: number[];
  /** Elements in the storage (default the tensor's). */
  storageNumel?: number;
}

function le32(n: number): number[] {
  return [n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, n >>> 24];
}

/** Protocol-2 writer (small output: a number array) with a memo for repeated globals. */
class Pickler {
  out: number[] = [];
  memo = new Map<string, number>();

  byte(...bs: number[]): void {
    for (const b of bs) this.out.push(b);
  }

  int(v: number): void {
    if (!Number.isSafeInteger(v)) throw new RangeError(`cannot pickle ${v} as an integer`);
    if (v >= 0 && v < 256) return this.byte(0x4b, v); // BININT1
    if (v >= 0 && v < 65536) return this.byte(0x4d, v & 0xff, v >> 8); // BININT2
    if (v >= -(2 ** 31) && v < 2 ** 31) return this.byte(0x4a, ...le32(v)); // BININT
    const bs: number[] = [];
    for (let x = BigInt(v);;) {
      const b = Number(x & 0xffn);
      bs.push(b);
      x >>= 8n;
      if ((x === 0n && !(b & 0x80)) || (x === -1n && b & 0x80)) break;
    }
    this.byte(0x8a, bs.length, ...bs); // LONG1
  }

  str(s: string): void {
    const b = new TextEncoder().encode(s);
    this.byte(0x58, ...le32(b.length), ...b); // BINUNICODE
  }

  intTuple(xs: number[]): void {
    if (xs.length === 0) return this.byte(0x29);
    if (xs.length > 3) this.byte(0x28);
    for (const x of xs) this.int(x);
    this.byte(xs.length > 3 ? 0x74 : 0x84 + xs.length); // TUPLE or TUPLE1..3
  }

  global(module: string, name: string): void {
    const key = `${module}\n${name}\n`;
    const id = this.memo.get(key);
    if (id !== undefined) return this.byte(...(id < 256 ? [0x68, id] : [0x6a, ...le32(id)]));
    this.byte(0x63, ...new TextEncoder().encode(key)); // GLOBAL
    const n = this.memo.size;
    this.memo.set(key, n);
    this.byte(...(n < 256 ? [0x71, n] : [0x72, ...le32(n)])); // BINPUT / LONG_BINPUT
  }

  tensor(t: PickleTensorEntry): void {
    const numel = t.storageNumel ?? t.shape.reduce((a, b) => a * b, 1);
    const stride = t.stride ??
      t.shape.map((_, i) => t.shape.slice(i + 1).reduce((a, b) => a * b, 1));
    this.global("torch._utils", "_rebuild_tensor_v2");
    this.byte(0x28, 0x28); // MARK (args), MARK (persistent id)
    this.str("storage");
    this.global("torch", t.storageType);
    this.str(t.key);
    this.str("cpu");
    this.int(numel);
    this.byte(0x74, 0x51); // TUPLE, BINPERSID
    this.int(t.offset ?? 0);
    this.intTuple(t.shape);
    this.intTuple(stride);
    this.byte(0x89); // requires_grad False
    this.global("collections", "OrderedDict");
    this.byte(0x29, 0x52); // OrderedDict() (backward hooks)
    this.byte(0x74, 0x52); // TUPLE, REDUCE
  }
}

/**
 * Pickle a `{name: tensor}` dict (protocol 2) whose tensors are
 * `_rebuild_tensor_v2(('storage', torch.<type>, key, 'cpu', numel), 0, shape, stride, False,
 * OrderedDict())`, as `torch.save(state_dict)` writes it.
 *
 * @returns the bytes for `archive/data.pkl`
 */
export function pickleStateDict(tensors: PickleTensorEntry[]): Uint8Array {
  const p = new Pickler();
  p.byte(0x80, 2, 0x7d); // PROTO 2, EMPTY_DICT
  for (let i = 0; i < tensors.length; i += 1000) {
    p.byte(0x28); // MARK
    for (const t of tensors.slice(i, i + 1000)) {
      allowGlobal("torch", t.storageType);
      p.str(t.name);
      p.tensor(t);
    }
    p.byte(0x75); // SETITEMS
  }
  p.byte(0x2e); // STOP
  return Uint8Array.from(p.out);
}
