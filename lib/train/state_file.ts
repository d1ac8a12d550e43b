/**
 * Tuned-state files other tools read (docs/MATH.md §11).
 *
 * - RWKV-PEFT / RWKV-Runner: a PyTorch `.pth` with `blocks.{l}.att.time_state`, shape
 *   `[H, N, N]`, layout `[h][value][key]` (the same as our wkv state), bf16 or fp32.
 * - web-rwkv / Ai00: a safetensors file with the same keys in f16, last two dims transposed
 *   (`[H, key, value]`).
 *
 * Import detects the container (zip → PEFT layout; safetensors → web-rwkv layout unless its
 * metadata says `layout: h,value,key`) and checks layers, H and N against the model.
 *
 * @module
 */
import type { DType, RwkvConfig, Tensor } from "../model/types.ts";
import { parseSafetensors, serializeSafetensors } from "../model/safetensors.ts";
import { parsePth, parsePthAsync, serializePth } from "../model/pth.ts";

/** Per-layer initial wkv states, each `[H][value N][key N]` (H·N·N values). */
export type WkvStates = Float32Array[];

/** File formats for a tuned state. */
export type StateFormat = "peft" | "web-rwkv";

/** A state file that does not fit the model, or is not a state file. */
export class StateFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StateFileError";
  }
}

const KEY = (l: number) => `blocks.${l}.att.time_state`;

/** Transpose the last two dims of `[H][a][b]` with a = b = N. */
function transposeHeads(src: Float32Array, H: number, N: number): Float32Array {
  const out = new Float32Array(src.length);
  for (let h = 0; h < H; h++) {
    const o = h * N * N;
    for (let i = 0; i < N; i++) {
      for (let j = 0; j < N; j++) out[o + j * N + i] = src[o + i * N + j];
    }
  }
  return out;
}

/**
 * Serialise per-layer states.
 *
 * @param format "peft" (`.pth`, value×key, bf16 by default) or "web-rwkv" (safetensors f16,
 *   key×value)
 * @param dtype storage dtype for "peft" (bf16 or f32); web-rwkv is always f16
 */
export function serializeState(
  states: WkvStates,
  config: Pick<RwkvConfig, "nHead" | "headSize">,
  format: StateFormat,
  dtype: DType = "bf16",
): Uint8Array {
  const H = config.nHead, N = config.headSize;
  const tensors = new Map<string, Tensor>();
  states.forEach((s, l) => {
    if (s.length !== H * N * N) {
      throw new RangeError(
        `layer ${l} state has ${s.length} values, expected H·N·N = ${H * N * N}`,
      );
    }
    const data = format === "web-rwkv" ? transposeHeads(s, H, N) : s;
    tensors.set(KEY(l), { shape: [H, N, N], data });
  });
  if (format === "web-rwkv") {
    return serializeSafetensors(tensors, "f16", { format: "web-rwkv", layout: "h,key,value" });
  }
  return serializePth(tensors, dtype === "f16" ? "f16" : dtype);
}

/** Write a state file (atomically: temp file then rename). */
export async function saveState(
  path: string,
  states: WkvStates,
  config: Pick<RwkvConfig, "nHead" | "headSize">,
  format: StateFormat = path.endsWith(".safetensors") || path.endsWith(".st") ? "web-rwkv" : "peft",
  dtype: DType = "bf16",
): Promise<void> {
  const bytes = serializeState(states, config, format, dtype);
  const tmp = `${path}.tmp-${Deno.pid}`;
  await Deno.writeFile(tmp, bytes);
  await Deno.rename(tmp, path);
}

/** The layouts web-rwkv's `__metadata__.layout` may name. */
const LAYOUTS = ["h,key,value", "h,value,key"];

/** Whether a web-rwkv file's heads are `[key][value]` (to transpose); refuses unknown layouts. */
function webRwkvTransposed(bytes: Uint8Array, source: string): boolean {
  const layout = readSafetensorsMetadata(bytes)?.layout;
  if (layout !== undefined && !LAYOUTS.includes(layout)) {
    throw new StateFileError(
      `${source}: __metadata__.layout is ${JSON.stringify(layout)}; expected "h,key,value" ` +
        `(web-rwkv) or "h,value,key" (or no layout, meaning "h,key,value")`,
    );
  }
  return layout !== "h,value,key";
}

type StateDims = Pick<RwkvConfig, "nLayer" | "nHead" | "headSize">;

/**
 * Parse a state file and check it against the model. PyTorch files must be STORED (as
 * `torch.save` writes them); {@link parseStateAsync} also reads re-zipped (DEFLATE) ones.
 *
 * @param config the model's config: layers, H and N must match
 * @returns per-layer states in our layout (value×key) and the detected format
 * @throws {StateFileError} naming the key or dimension that does not match
 */
export function parseState(
  bytes: Uint8Array,
  config: StateDims,
  source = "state file",
): { states: WkvStates; format: StateFormat } {
  if (isZip(bytes)) return checkStates(parsePth(bytes, source).tensors, config, source, "peft");
  const tensors = parseSafetensors(bytes, source).tensors;
  return checkStates(tensors, config, source, "web-rwkv", webRwkvTransposed(bytes, source));
}

/** Like {@link parseState}, and also reads DEFLATE-compressed (re-zipped) `.pth` files. */
export async function parseStateAsync(
  bytes: Uint8Array,
  config: StateDims,
  source = "state file",
): Promise<{ states: WkvStates; format: StateFormat }> {
  if (!isZip(bytes)) return parseState(bytes, config, source);
  return checkStates((await parsePthAsync(bytes, source)).tensors, config, source, "peft");
}

const isZip = (bytes: Uint8Array) => bytes[0] === 0x50 && bytes[1] === 0x4b;

function layerList(ls: number[]): string {
  return ls.slice(0, 8).map((l) => `blocks.${l}`).join(", ") + (ls.length > 8 ? ", …" : "");
}

function checkLayers(tensors: Map<string, Tensor>, L: number, source: string): void {
  const layers = new Set<number>();
  for (const k of tensors.keys()) {
    const m = /^blocks\.(\d+)\.att\.time_state$/.exec(k);
    if (m) layers.add(Number(m[1]));
  }
  if (layers.size === 0) {
    throw new StateFileError(
      `${source}: no blocks.{l}.att.time_state tensor found (keys: ${
        [...tensors.keys()].slice(0, 5).join(", ")
      }…); this is not a state file`,
    );
  }
  const missing = Array.from({ length: L }, (_, l) => l).filter((l) => !layers.has(l));
  const extra = [...layers].filter((l) => l >= L).sort((a, b) => a - b);
  if (missing.length || extra.length) {
    throw new StateFileError(
      `${source}: has time_state for ${layers.size} layers but the model has ${L} (blocks.0 to ` +
        `blocks.${L - 1})` + (missing.length ? `; missing: ${layerList(missing)}` : "") +
        (extra.length ? `; beyond the model: ${layerList(extra)}` : "") +
        `; this state is incomplete or was tuned for another model`,
    );
  }
}

function checkStates(
  tensors: Map<string, Tensor>,
  config: StateDims,
  source: string,
  format: StateFormat,
  transposed = format === "web-rwkv",
): { states: WkvStates; format: StateFormat } {
  const { nLayer: L, nHead: H, headSize: N } = config;
  checkLayers(tensors, L, source);
  const states: WkvStates = [];
  for (let l = 0; l < L; l++) {
    const t = tensors.get(KEY(l))!;
    const [h, a, b] = t.shape.length === 3 ? t.shape : [NaN, NaN, NaN];
    if (h !== H || a !== N || b !== N) {
      throw new StateFileError(
        `${source}: ${KEY(l)} has shape [${t.shape}] but the model needs [${H}, ${N}, ${N}] ` +
          `(H = ${H} heads of size N = ${N}); this state was tuned for another model`,
      );
    }
    for (let i = 0; i < t.data.length; i++) {
      if (!Number.isFinite(t.data[i])) {
        throw new StateFileError(`${source}: ${KEY(l)} holds a non-finite value at index ${i}`);
      }
    }
    states.push(transposed ? transposeHeads(t.data, H, N) : t.data);
  }
  return { states, format };
}

/** Read and parse a state file (see {@link parseState}). */
export async function loadState(
  path: string,
  config: Pick<RwkvConfig, "nLayer" | "nHead" | "headSize">,
): Promise<{ states: WkvStates; format: StateFormat }> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw new StateFileError(`cannot read state file ${path}: ${(e as Error).message}`);
  }
  return await parseStateAsync(bytes, config, path);
}

function readSafetensorsMetadata(bytes: Uint8Array): Record<string, string> | undefined {
  try {
    const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
    const h = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
    return h.__metadata__;
  } catch {
    return undefined;
  }
}
