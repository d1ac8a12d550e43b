/**
 * What `deno task bench` (scripts/bench.ts) measures per kernel: a recorder that tags every
 * dispatch with its FLOPs and bytes, a timestamp-query timer and a dispatch-level replay timer,
 * the adapter's known peaks, and a tracker of live GPU buffers for the memory accounts.
 *
 * Bytes moved per dispatch are estimated as the sum of its bound storage ranges (each distinct
 * buffer range once, the whole range even when the kernel touches part of it; the uniform
 * parameter block is not counted). FLOPs are counted only for the matmuls (2·M·K·N, taken from
 * the `MatmulKernel` call, not from its parameter layout); other kernels report GB/s.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { onBufferCreated, onBufferDestroyed } from "../gpu/tracking.ts";
import { type Binding, type Groups, Recorder } from "../gpu/recorder.ts";
import type { GpuMatrix, MatmulArgs, MatmulKernel } from "../kernels/matmul.ts";

/** Which timer produced the per-kernel times. */
export type TimerKind = "timestamp" | "replay";

/** One kernel (dispatches sharing a label, `[…]` suffixes merged) of one profiled recording. */
export interface KernelTime {
  kernel: string;
  dispatches: number;
  ms: number;
  /** share of the recording's summed kernel time */
  share: number;
  flop: number;
  bytes: number;
  /** achieved GFLOP/s (matmuls) or null */
  gflops: number | null;
  /** achieved GB/s by the bound-bytes estimate */
  gbs: number;
  /** GFLOP/s (matmuls) or GB/s (others) over the adapter's peak, null when the peak is unknown */
  peakFraction: number | null;
  timer: TimerKind;
}

/** The adapter's FP32 GFLOP/s and memory GB/s, and where the figures come from. */
export interface Peak {
  gflops: number | null;
  gbs: number | null;
  source: string;
}

interface Meta {
  label: string;
  flop: number;
  bytes: number;
}

type Op =
  | { kind: "dispatch"; meta: number; args: Parameters<Recorder["dispatch"]> }
  | { kind: "copy"; args: Parameters<Recorder["copy"]> }
  | { kind: "clear"; args: Parameters<Recorder["clear"]> }
  | { kind: "toTexture"; args: Parameters<Recorder["copyToTexture"]> };

/**
 * A Recorder that captures what is recorded (for replay into real recorders) and notes every
 * dispatch's label, FLOPs and bound bytes. It never submits anything itself.
 */
export class TagRecorder extends Recorder {
  readonly meta: Meta[] = [];
  readonly ops: Op[] = [];
  #tagging: number[] | null = null;

  override dispatch(
    pipeline: GPUComputePipeline,
    params: number[],
    bindings: Binding[],
    groups: Groups,
    label = pipeline.label,
  ): this {
    this.#tagging?.push(this.meta.length);
    const args: Op["args"] = [pipeline, params, bindings, groups, label];
    this.ops.push({ kind: "dispatch", meta: this.meta.length, args });
    this.meta.push({ label, flop: 0, bytes: boundBytes(bindings) });
    return this;
  }
  override copy(...args: Parameters<Recorder["copy"]>): this {
    this.ops.push({ kind: "copy", args });
    return this;
  }
  override clear(...args: Parameters<Recorder["clear"]>): this {
    this.ops.push({ kind: "clear", args });
    return this;
  }
  override copyToTexture(...args: Parameters<Recorder["copyToTexture"]>): this {
    this.ops.push({ kind: "toTexture", args });
    return this;
  }
  override submit(): void {
    throw new Error("TagRecorder only captures: replay its ops into a Recorder");
  }

  /** Record op `i` into `rec`. */
  replay(rec: Recorder, i: number): void {
    const op = this.ops[i];
    if (op.kind === "dispatch") rec.dispatch(...op.args);
    else if (op.kind === "copy") rec.copy(...op.args);
    else if (op.kind === "toTexture") rec.copyToTexture(...op.args);
    else rec.clear(...op.args);
  }

  /** Run `fn` and spread `flop` over the dispatches it records (outermost call only). */
  tagFlop(flop: number, fn: () => void): void {
    if (this.#tagging) return fn();
    const got: number[] = (this.#tagging = []);
    try {
      fn();
    } finally {
      this.#tagging = null;
    }
    for (const i of got) this.meta[i].flop += flop / got.length;
  }
}

/** Σ bytes of the distinct storage-buffer ranges bound to a dispatch (textures not counted). */
function boundBytes(bindings: Binding[]): number {
  const seen = new Set<string>();
  const ids = new Map<GPUBuffer, number>();
  let bytes = 0;
  for (const b of bindings) {
    if (!(b instanceof GPUBuffer) && !("buffer" in b)) continue; // a texture view: not counted
    const buf = b instanceof GPUBuffer ? b : b.buffer;
    const off = b instanceof GPUBuffer ? 0 : b.offset ?? 0;
    const size = b instanceof GPUBuffer ? b.size : b.size ?? buf.size - off;
    if (!ids.has(buf)) ids.set(buf, ids.size);
    const key = `${ids.get(buf)}:${off}:${size}`;
    if (!seen.has(key)) bytes += size;
    seen.add(key);
  }
  return bytes;
}

const tagged = new WeakSet<MatmulKernel>();

/**
 * Make `mm` report 2·M·K·N FLOPs of each call to a {@link TagRecorder} (other recorders are
 * untouched). Patches the instance's four recording methods once.
 */
export function tagMatmuls(mm: MatmulKernel): void {
  if (tagged.has(mm)) return;
  tagged.add(mm);
  const m = mm as unknown as Record<string, (...a: unknown[]) => void>;
  const wrap = (name: string, flop: (a: unknown[]) => number) => {
    const orig = m[name].bind(mm);
    m[name] = (rec: unknown, ...rest: unknown[]) =>
      rec instanceof TagRecorder
        ? rec.tagFlop(flop(rest), () => orig(rec, ...rest))
        : orig(rec, ...rest);
  };
  const plain = ([a]: unknown[]) =>
    2 * (a as MatmulArgs).rows * (a as MatmulArgs).K * (a as MatmulArgs).Nc;
  const matrix = ([W, a]: unknown[]) => {
    const w = W as GpuMatrix;
    return 2 * (a as { rows: number }).rows * w.rows * w.cols;
  };
  wrap("linear", plain);
  wrap("lowrank", plain);
  wrap("linearMatrix", matrix);
  wrap("lowrankMatrix", matrix);
}

const PROFILE_CHUNK = 2000;
const median = (a: number[]) => [...a].sort((p, q) => p - q)[a.length >> 1];

/** Summed time, FLOP and bytes of the dispatches of one kernel (labels without `[…]`). */
type KernelGroups = Map<string, { ms: number; n: number; flop: number; bytes: number }>;

/** Add one dispatch's time to its kernel's group. */
function addTime(groups: KernelGroups, m: Meta, ms: number): void {
  const key = m.label.replace(/\[.*?\]/g, "");
  const g = groups.get(key) ?? { ms: 0, n: 0, flop: 0, bytes: 0 };
  groups.set(key, { ms: g.ms + ms, n: g.n + 1, flop: g.flop + m.flop, bytes: g.bytes + m.bytes });
}

/**
 * After one plain run to warm up, the whole recording in order, each dispatch in its own pass
 * between GPU timestamps, in submits of ≤ PROFILE_CHUNK dispatches (2 timestamps each; a query
 * set holds at most 4096).
 */
async function timestampTimes(gpu: Gpu, cap: TagRecorder, groups: KernelGroups): Promise<void> {
  const warm = new Recorder(gpu, "bench.warmup");
  cap.ops.forEach((_, i) => cap.replay(warm, i));
  await warm.flush();
  let rec = new Recorder(gpu, "bench.profile", true), metas: number[] = [];
  const flush = async () => {
    rec.submit();
    (await rec.timings()).forEach((t, i) => addTime(groups, cap.meta[metas[i]], t.ms));
    rec = new Recorder(gpu, "bench.profile", true);
    metas = [];
  };
  for (const [i, op] of cap.ops.entries()) {
    cap.replay(rec, i);
    if (op.kind === "dispatch") metas.push(op.meta);
    if (metas.length === PROFILE_CHUNK) await flush();
  }
  if (metas.length) await flush();
}

/**
 * Each kernel's dispatches alone in one submit (copies and clears left out), timed by wall clock
 * minus the cost of an empty sync.
 */
async function replayTimes(gpu: Gpu, cap: TagRecorder, groups: KernelGroups): Promise<void> {
  const byKey = new Map<string, number[]>();
  for (const [i, op] of cap.ops.entries()) {
    if (op.kind !== "dispatch") continue;
    const key = cap.meta[op.meta].label.replace(/\[.*?\]/g, "");
    byKey.set(key, [...(byKey.get(key) ?? []), i]);
  }
  const syncs: number[] = [];
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    await gpu.device.queue.onSubmittedWorkDone();
    syncs.push(performance.now() - t0);
  }
  const sync = median(syncs);
  for (const idx of byKey.values()) {
    const rec = new Recorder(gpu, "bench.replay");
    for (const i of idx) cap.replay(rec, i);
    const t0 = performance.now();
    await rec.flush();
    const ms = Math.max(performance.now() - t0 - sync, 1e-3) / idx.length;
    for (const i of idx) addTime(groups, cap.meta[(cap.ops[i] as { meta: number }).meta], ms);
  }
}

/**
 * Per-kernel times of what `record` records (captured once, then replayed). `timestamp`: after
 * one plain run to warm up, the whole recording in order with each dispatch in its own pass
 * between GPU timestamps. `replay`: each kernel's dispatches alone in one submit (copies and
 * clears left out), timed by wall clock minus the cost of an empty sync.
 */
export async function profileKernels(
  gpu: Gpu,
  record: (rec: Recorder) => void,
  timer: TimerKind,
  peak: Peak,
): Promise<KernelTime[]> {
  const groups: KernelGroups = new Map();
  const cap = new TagRecorder(gpu, "bench.capture");
  record(cap);
  if (timer === "timestamp") await timestampTimes(gpu, cap, groups);
  else await replayTimes(gpu, cap, groups);
  const total = [...groups.values()].reduce((s, g) => s + g.ms, 0);
  const out = [...groups].map(([kernel, g]): KernelTime => {
    const s = Math.max(g.ms, 1e-6) / 1e3;
    const gflops = g.flop ? g.flop / s / 1e9 : null;
    const gbs = g.bytes / s / 1e9;
    const peakFraction = gflops !== null
      ? (peak.gflops ? gflops / peak.gflops : null)
      : (peak.gbs ? gbs / peak.gbs : null);
    const base = { kernel, dispatches: g.n, ms: g.ms, share: g.ms / total, flop: g.flop };
    return { ...base, bytes: g.bytes, gflops, gbs, peakFraction, timer };
  });
  return out.sort((a, b) => b.ms - a.ms);
}

/**
 * Vendor FP32 (non-tensor-core) TFLOP/s and memory GB/s, matched against the adapter
 * description, most specific first. Sources: NVIDIA H100 Tensor Core GPU datasheet (SXM 67
 * TFLOPS / 3.35 TB/s, PCIe 51 / 2.0, NVL 60 / 3.9); NVIDIA H200 datasheet (SXM 67 / 4.8, NVL 60
 * / 4.8); NVIDIA A100 datasheet (19.5 TFLOPS; 80GB SXM 2,039 GB/s, 80GB PCIe 1,935, 40GB 1,555);
 * NVIDIA GeForce RTX 4090 / 4080 / 3090 / 3080 specifications (82.6 / 48.7 / 35.6 / 29.8
 * TFLOPS shader; 1,008 / 716.8 / 936 / 760 GB/s); Apple M1 / M2 family press releases (GPU
 * TFLOPS and unified memory bandwidth).
 */
const KNOWN: [RegExp, number, number][] = [
  [/H100.*PCIe/i, 51.2, 2000],
  [/H100 NVL/i, 60, 3900],
  [/H100/i, 67, 3350],
  [/H200 NVL/i, 60, 4800],
  [/H200/i, 67, 4800],
  [/A100.*80\s*GB.*PCIe|A100-PCIE-80GB/i, 19.5, 1935],
  [/A100.*80\s*GB/i, 19.5, 2039],
  [/A100/i, 19.5, 1555],
  [/RTX 4090/i, 82.6, 1008],
  [/RTX 4080/i, 48.7, 716.8],
  [/RTX 3090/i, 35.6, 936],
  [/RTX 3080/i, 29.8, 760],
  [/M1 Ultra/i, 21, 800],
  [/M1 Max/i, 10.4, 400],
  [/M1 Pro/i, 5.2, 200],
  [/Apple M1/i, 2.6, 68.25],
  [/M2 Ultra/i, 27.2, 800],
  [/M2 Max/i, 13.6, 400],
  [/M2 Pro/i, 6.8, 200],
  [/Apple M2/i, 3.6, 100],
];

/**
 * The adapter's peak: `--peak-gflops`/`--peak-gbs` first, then the table above, then (software
 * adapter) numpy's best GFLOP/s and copy GB/s measured in the same run.
 */
export function resolvePeak(
  description: string,
  flags: { gflops?: number; gbs?: number },
  numpy: { gflops: number; gbs: number } | null,
  software: boolean,
): Peak {
  const hit = KNOWN.find(([re]) => re.test(description));
  const est = software && numpy;
  const gflops = flags.gflops ?? (hit ? hit[1] * 1e3 : est ? numpy.gflops : null);
  const gbs = flags.gbs ?? (hit ? hit[2] : est ? numpy.gbs : null);
  const source = flags.gflops !== undefined || flags.gbs !== undefined
    ? "--peak-gflops/--peak-gbs"
    : hit
    ? `vendor spec for "${hit[0].source}"`
    : est
    ? "estimated from numpy (matmul GFLOP/s, copy GB/s) on this host in the same run"
    : "unknown (pass --peak-gflops and --peak-gbs)";
  return { gflops, gbs, source };
}

/**
 * Live GPU buffers (created through `GPUDevice.createBuffer`, not yet destroyed), but for the
 * recorders' parameter buffer.
 */
export class BufferTracker {
  static #live = new Map<GPUBuffer, { label: string; seq: number }>();
  static #n = 0;

  static #installed = false;

  /** Start tracking (once, process-wide; buffers made before are not seen). */
  static install(): void {
    if (BufferTracker.#installed) return;
    BufferTracker.#installed = true;
    onBufferCreated((b, d) => {
      // the recorders' per-device parameter buffer is a transient, as the memory plan counts it
      if (d.label === "recorder.params") return;
      BufferTracker.#live.set(b, { label: d.label ?? "", seq: BufferTracker.#n++ });
    });
    onBufferDestroyed((b) => BufferTracker.#live.delete(b));
  }

  /** A mark: buffers created after it are {@link since} it. */
  static mark(): number {
    return BufferTracker.#n;
  }

  /** Bytes of the live buffers created after `mark` whose label `keep` accepts. */
  static since(
    mark: number,
    keep: (label: string, buffer: GPUBuffer) => boolean = () => true,
  ): number {
    let bytes = 0;
    for (const [b, { label, seq }] of BufferTracker.#live) {
      if (seq >= mark && keep(label, b)) bytes += b.size;
    }
    return bytes;
  }

  /** Largest live buffer per label among labels starting with `prefix`, summed. */
  static largestByLabel(prefix: string, except: Set<GPUBuffer> = new Set()): number {
    const best = new Map<string, number>();
    for (const [b, { label }] of BufferTracker.#live) {
      if (label.startsWith(prefix) && !except.has(b)) {
        best.set(label, Math.max(best.get(label) ?? 0, b.size));
      }
    }
    return [...best.values()].reduce((s, x) => s + x, 0);
  }
}
