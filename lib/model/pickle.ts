/**
 * A safe reader for the pickles inside PyTorch checkpoints (`data.pkl`); the writer is
 * `pickle_write.ts`.
 *
 * The reader interprets only the opcodes a tensor state dict uses and resolves only an
 * allow-list of globals, mapped to plain data: `torch._utils._rebuild_tensor_v2` →
 * {@linkcode TorchTensor}, `torch._utils._rebuild_parameter` → its tensor,
 * `collections.OrderedDict` → `Map`, the `torch.*Storage` types → their names. Persistent ids
 * `('storage', torch.XStorage, key, location, numel)` become {@linkcode TorchStorage}. It never
 * imports or calls anything: any other global is refused by name.
 *
 * @module
 */

/** Error for a malformed or disallowed pickle. */
export class PickleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PickleError";
  }
}

/** A Python tuple (kept apart from lists). */
export class PyTuple {
  constructor(readonly items: PyValue[]) {}
}

/** An allowed global (`module.name`), kept as a name and never imported. */
export class PyGlobal {
  constructor(readonly module: string, readonly name: string) {}
  /** `module.name`. */
  get qualified(): string {
    return `${this.module}.${this.name}`;
  }
}

/** A storage named by a persistent id: `archive/data/<key>` holds `numel` elements. */
export class TorchStorage {
  constructor(
    /** e.g. `"BFloat16Storage"`. */
    readonly storageType: string,
    readonly key: string,
    readonly location: string,
    readonly numel: number,
  ) {}
}

/** A tensor view: `_rebuild_tensor_v2(storage, offset, shape, stride, …)`. Offsets in elements. */
export class TorchTensor {
  constructor(
    readonly storage: TorchStorage,
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
  ) {}
}

/** Values the reader produces. Dicts (plain and ordered) are `Map`s, lists arrays. */
export type PyValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PyValue[]
  | PyTuple
  | Map<unknown, PyValue>
  | PyGlobal
  | TorchStorage
  | TorchTensor;

/** The `torch.<Name>` storage types the reader accepts as inert names (dtype is checked later). */
export const TORCH_STORAGE_TYPES: readonly string[] = [
  "FloatStorage",
  "HalfStorage",
  "BFloat16Storage",
  "DoubleStorage",
  "LongStorage",
  "IntStorage",
  "ShortStorage",
  "CharStorage",
  "ByteStorage",
  "BoolStorage",
  "ComplexFloatStorage",
  "ComplexDoubleStorage",
];

const CALLABLES = new Set([
  "torch._utils._rebuild_tensor_v2",
  "torch._utils._rebuild_parameter",
  "torch._utils._rebuild_parameter_with_state",
  "collections.OrderedDict",
]);

/**
 * The global `module.name` if it is on the allow-list (the rebuild callables, OrderedDict, the
 * torch storage types).
 *
 * @throws {PickleError} for any other global
 */
export function allowGlobal(module: string, name: string): PyGlobal {
  const q = `${module}.${name}`;
  if (CALLABLES.has(q) || (module === "torch" && TORCH_STORAGE_TYPES.includes(name))) {
    return new PyGlobal(module, name);
  }
  throw new PickleError(
    `pickle global "${q}" is not allowed: this loader reads tensor state dicts only and ` +
      `never executes code`,
  );
}

function asInt(v: PyValue, what: string): number {
  if (typeof v === "bigint") v = Number(v);
  if (typeof v !== "number" || !Number.isSafeInteger(v)) {
    throw new PickleError(`${what}: expected an integer, found ${describe(v)}`);
  }
  return v;
}

function intTuple(v: PyValue, what: string): number[] {
  if (!(v instanceof PyTuple)) throw new PickleError(`${what}: expected a tuple of integers`);
  return v.items.map((x) => asInt(x, what));
}

/** A short description of a value for error messages. */
export function describe(v: PyValue): string {
  if (v === null) return "None";
  if (v instanceof PyGlobal) return `global ${v.qualified}`;
  if (v instanceof PyTuple) return `tuple of ${v.items.length}`;
  if (v instanceof Map) return `dict of ${v.size}`;
  if (Array.isArray(v)) return `list of ${v.length}`;
  if (v instanceof TorchTensor) return `tensor [${v.shape.join(", ")}]`;
  if (v instanceof TorchStorage) return `storage ${v.storageType}`;
  if (v instanceof Uint8Array) return `bytes of ${v.length}`;
  return `${typeof v} ${JSON.stringify(typeof v === "bigint" ? String(v) : v)}`;
}

function persistentLoad(pid: PyValue): TorchStorage {
  const it = pid instanceof PyTuple ? pid.items : [];
  const [tag, type, key, location, numel] = it;
  if (it.length !== 5 || tag !== "storage" || !(type instanceof PyGlobal)) {
    throw new PickleError(
      `persistent id ${describe(pid)} is not ('storage', torch.XStorage, key, location, numel)`,
    );
  }
  if (typeof key !== "string" || typeof location !== "string") {
    throw new PickleError(`persistent id has a non-string storage key or location`);
  }
  return new TorchStorage(type.name, key, location, asInt(numel, "storage numel"));
}

function callGlobal(fn: PyValue, args: PyValue): PyValue {
  if (!(fn instanceof PyGlobal) || !(args instanceof PyTuple)) {
    throw new PickleError(`REDUCE needs a global and a tuple, found ${describe(fn)}`);
  }
  const a = args.items;
  switch (fn.qualified) {
    case "torch._utils._rebuild_tensor_v2": {
      if (!(a[0] instanceof TorchStorage)) {
        throw new PickleError(`_rebuild_tensor_v2: first argument is ${describe(a[0])}`);
      }
      return new TorchTensor(
        a[0],
        asInt(a[1], "storage offset"),
        intTuple(a[2], "shape"),
        intTuple(a[3], "stride"),
      );
    }
    case "torch._utils._rebuild_parameter":
    case "torch._utils._rebuild_parameter_with_state":
      return a[0];
    case "collections.OrderedDict": {
      const m = new Map<unknown, PyValue>();
      const pairs = a[0] ?? [];
      if (!Array.isArray(pairs)) throw new PickleError(`OrderedDict(${describe(pairs)})`);
      for (const p of pairs) {
        if (!(p instanceof PyTuple) || p.items.length !== 2) {
          throw new PickleError(`OrderedDict item ${describe(p)} is not a pair`);
        }
        m.set(p.items[0], p.items[1]);
      }
      return m;
    }
    default:
      throw new PickleError(`global "${fn.qualified}" cannot be called`);
  }
}

/** Interpreter state; the opcode table below drives it. */
class Unpickler {
  p = 0;
  stack: PyValue[] = [];
  marks: number[] = [];
  memo = new Map<number, PyValue>();
  readonly dv: DataView;

  constructor(readonly b: Uint8Array, readonly source: string) {
    this.dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  }

  fail(what: string): never {
    throw new PickleError(`${this.source}: ${what}`);
  }

  /** Consume `n` argument bytes of opcode `op` (at offset `at`); returns where they start. */
  need(n: number, op: number, at: number): number {
    if (this.p + n > this.b.length) {
      this.fail(
        `truncated pickle: opcode 0x${op.toString(16)} at offset ${at} needs ${n} bytes, ` +
          `${this.b.length - this.p} left`,
      );
    }
    this.p += n;
    return this.p - n;
  }

  u8(op: number, at: number): number {
    return this.b[this.need(1, op, at)];
  }

  u32(op: number, at: number): number {
    return this.dv.getUint32(this.need(4, op, at), true);
  }

  str(n: number, op: number, at: number): string {
    const p = this.need(n, op, at);
    return new TextDecoder().decode(this.b.subarray(p, p + n));
  }

  line(op: number, at: number): string {
    const end = this.b.indexOf(0x0a, this.p);
    if (end < 0) this.fail(`truncated pickle: opcode 0x${op.toString(16)} at offset ${at}`);
    return this.str(end - this.p + 1, op, at).slice(0, -1);
  }

  long(n: number, op: number, at: number): PyValue {
    const p = this.need(n, op, at);
    let v = 0n;
    for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(this.b[p + i]);
    if (n > 0 && this.b[p + n - 1] & 0x80) v -= 1n << BigInt(8 * n);
    const safe = v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER);
    return safe ? Number(v) : v;
  }

  pop(): PyValue {
    if (this.stack.length === 0) this.fail("pickle stack underflow");
    return this.stack.pop()!;
  }

  top(): PyValue {
    if (this.stack.length === 0) this.fail("pickle stack underflow");
    return this.stack[this.stack.length - 1];
  }

  popN(n: number): PyValue[] {
    if (this.stack.length < n) this.fail("pickle stack underflow");
    return this.stack.splice(this.stack.length - n);
  }

  popMark(): PyValue[] {
    const m = this.marks.pop();
    if (m === undefined) this.fail("pickle MARK missing");
    return this.stack.splice(m);
  }

  get(i: number, at: number): PyValue {
    if (!this.memo.has(i)) this.fail(`pickle memo ${i} read at offset ${at} is unset`);
    return this.memo.get(i)!;
  }

  setItems(items: PyValue[]): void {
    const d = this.top();
    if (!(d instanceof Map)) this.fail(`SETITEM(S) on ${describe(d)}`);
    for (let i = 0; i + 1 < items.length; i += 2) d.set(items[i], items[i + 1]);
  }

  append(items: PyValue[]): void {
    const l = this.top();
    if (!Array.isArray(l)) this.fail(`APPEND(S) on ${describe(l)}`);
    for (const x of items) l.push(x); // a spread overflows the call stack past ~125k items
  }

  /** BUILD: tensors and dicts ignore attribute state (`_metadata`, hooks); nothing is set. */
  build(at: number): void {
    this.pop();
    const obj = this.top();
    if (!(obj instanceof Map || obj instanceof TorchTensor)) {
      this.fail(`BUILD at offset ${at} on ${describe(obj)} is not supported`);
    }
  }

  stackGlobal(at: number): PyGlobal {
    const [module, name] = this.popN(2);
    if (typeof module !== "string" || typeof name !== "string") {
      this.fail(`STACK_GLOBAL at offset ${at} needs two strings`);
    }
    return allowGlobal(module, name);
  }

  reduce(): PyValue {
    const [fn, args] = this.popN(2);
    return callGlobal(fn, args);
  }

  /** Interpret the whole pickle and return the value STOP leaves. */
  run(): PyValue {
    while (this.p < this.b.length) {
      const at = this.p, op = this.b[this.p++];
      if (op === 0x2e) return this.pop(); // STOP
      const push = PUSH_OPS[op];
      if (push) {
        this.stack.push(push(this, op, at));
        continue;
      }
      const effect = EFFECT_OPS[op];
      if (!effect) {
        this.fail(
          `unsupported pickle opcode 0x${op.toString(16).padStart(2, "0")} at offset ${at}; ` +
            `this loader reads tensor state dicts only`,
        );
      }
      effect(this, op, at);
    }
    return this.fail("truncated pickle: no STOP opcode before the end");
  }
}

type Op<T> = (u: Unpickler, op: number, at: number) => T;

/** Opcodes that push one value. */
const PUSH_OPS: Record<number, Op<PyValue>> = {
  0x7d: () => new Map(), // EMPTY_DICT
  0x5d: () => [], // EMPTY_LIST
  0x29: () => new PyTuple([]), // EMPTY_TUPLE
  0x74: (u) => new PyTuple(u.popMark()), // TUPLE
  0x85: (u) => new PyTuple(u.popN(1)), // TUPLE1
  0x86: (u) => new PyTuple(u.popN(2)), // TUPLE2
  0x87: (u) => new PyTuple(u.popN(3)), // TUPLE3
  0x4a: (u, op, at) => u.dv.getInt32(u.need(4, op, at), true), // BININT
  0x4b: (u, op, at) => u.u8(op, at), // BININT1
  0x4d: (u, op, at) => u.dv.getUint16(u.need(2, op, at), true), // BININT2
  0x8a: (u, op, at) => u.long(u.u8(op, at), op, at), // LONG1
  0x47: (u, op, at) => u.dv.getFloat64(u.need(8, op, at), false), // BINFLOAT (big-endian)
  0x4e: () => null, // NONE
  0x88: () => true, // NEWTRUE
  0x89: () => false, // NEWFALSE
  0x58: (u, op, at) => u.str(u.u32(op, at), op, at), // BINUNICODE
  0x8c: (u, op, at) => u.str(u.u8(op, at), op, at), // SHORT_BINUNICODE
  0x8d: (u, op, at) => u.str(u.long(8, op, at) as number, op, at), // BINUNICODE8
  0x55: (u, op, at) => u.str(u.u8(op, at), op, at), // SHORT_BINSTRING
  0x43: (u, op, at) => u.b.slice(u.need(u.u8(op, at), op, at), u.p), // SHORT_BINBYTES
  0x42: (u, op, at) => u.b.slice(u.need(u.u32(op, at), op, at), u.p), // BINBYTES
  0x63: (u, op, at) => allowGlobal(u.line(op, at), u.line(op, at)), // GLOBAL
  0x93: (u, _op, at) => u.stackGlobal(at), // STACK_GLOBAL
  0x51: (u) => persistentLoad(u.pop()), // BINPERSID
  0x52: (u) => u.reduce(), // REDUCE
  0x68: (u, op, at) => u.get(u.u8(op, at), at), // BINGET
  0x6a: (u, op, at) => u.get(u.u32(op, at), at), // LONG_BINGET
};

/** Opcodes that only change the stack, marks or memo. */
const EFFECT_OPS: Record<number, Op<void>> = {
  0x80: (u, op, at) => void u.need(1, op, at), // PROTO
  0x95: (u, op, at) => void u.need(8, op, at), // FRAME
  0x28: (u) => void u.marks.push(u.stack.length), // MARK
  0x30: (u) => void u.pop(), // POP
  0x62: (u, _op, at) => u.build(at), // BUILD
  0x73: (u) => u.setItems(u.popN(2)), // SETITEM
  0x75: (u) => u.setItems(u.popMark()), // SETITEMS
  0x61: (u) => u.append(u.popN(1)), // APPEND
  0x65: (u) => u.append(u.popMark()), // APPENDS
  0x71: (u, op, at) => void u.memo.set(u.u8(op, at), u.top()), // BINPUT
  0x72: (u, op, at) => void u.memo.set(u.u32(op, at), u.top()), // LONG_BINPUT
  0x94: (u) => void u.memo.set(u.memo.size, u.top()), // MEMOIZE
};

/**
 * Unpickle `bytes` safely (see the module doc).
 *
 * @param bytes a pickle (e.g. `archive/data.pkl`)
 * @param source a name for error messages
 * @throws {PickleError} for a disallowed global, an unknown opcode, or a truncated pickle
 */
export function unpickle(bytes: Uint8Array, source = "pickle"): PyValue {
  const u = new Unpickler(bytes, source);
  try {
    return u.run();
  } catch (e) {
    if (e instanceof PickleError) {
      if (!e.message.startsWith(source)) e.message = `${source}: ${e.message}`;
      throw e;
    }
    throw new PickleError(
      `${source}: the pickle cannot be read near offset ${u.p} of ${bytes.length} ` +
        `(${(e as Error).name}: ${(e as Error).message}); the file is corrupt or not a ` +
        `tensor state dict`,
    );
  }
}
