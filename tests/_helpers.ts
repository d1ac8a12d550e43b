/**
 * Test helpers: fixture paths (skipping with a message when `../shared/fixtures` is absent),
 * GPU availability, seeded random numbers and error measures.
 *
 * @module
 */
import { describeGpu, tryGetGpu } from "../lib/gpu/device.ts";
import type { Gpu, LimitsMode } from "../lib/gpu/device.ts";
import { Rng as LibRng } from "../lib/util/rng.ts";
import { uploadStorage } from "../lib/gpu/buffers.ts";
import type { Example } from "../lib/train/data.ts";

/** Absolute path of `../shared/fixtures` beside the project. */
export const FIXTURES = new URL("../../shared/fixtures/", import.meta.url).pathname;

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** True when the shared fixtures folder is present. */
export const hasFixtures: boolean = exists(FIXTURES);
if (!hasFixtures) {
  console.warn(
    `SKIP fixture tests: ${FIXTURES} is absent. Place the shared fixtures beside the project ` +
      `(../shared/fixtures) to run them.`,
  );
}

/** Path of a fixture file (relative to `../shared/fixtures`). */
export function fixture(rel: string): string {
  return FIXTURES + rel;
}

/**
 * Which limits the test device requests: `RWKV_TEST_LIMITS=default` runs the GPU tests on a
 * device with only WebGPU's default limits (the portability mode of `.ci/run`); unset or
 * `adapter`: the adapter's own. Only this test helper reads it; the library takes the option.
 */
export const testLimits: LimitsMode = (() => {
  const v = Deno.env.get("RWKV_TEST_LIMITS") ?? "adapter";
  if (v !== "default" && v !== "adapter") {
    throw new Error(`RWKV_TEST_LIMITS must be "default" or "adapter", not ${JSON.stringify(v)}`);
  }
  return v;
})();

/** The GPU, or null (tests that need it use `ignore: !gpu`). Resolved once at import. */
export const gpu: Gpu | null = await tryGetGpu({ limits: testLimits });
if (!gpu) {
  console.warn("SKIP GPU tests: no WebGPU adapter (install mesa-vulkan-drivers or a GPU driver)");
} else if (!printedAdapter()) {
  const backend = Deno.env.get("DENO_WEBGPU_BACKEND") ?? "platform default";
  const icd = Deno.env.get("VK_ICD_FILENAMES");
  console.error(
    `GPU tests on ${describeGpu(gpu)}; backend: ${backend}${
      icd ? ` (VK_ICD_FILENAMES=${icd})` : ""
    }`,
  );
}

/** True after the first test module of this process printed the adapter (print it once). */
function printedAdapter(): boolean {
  const g = globalThis as { __rwkvAdapterPrinted?: boolean };
  const was = Boolean(g.__rwkvAdapterPrinted);
  g.__rwkvAdapterPrinted = true;
  return was;
}

/** The library's seeded PRNG plus a helper for random test vectors. */
export class Rng extends LibRng {
  /** A Float32Array of `n` values uniform in [lo, hi). */
  f32(n: number, lo = -1, hi = 1): Float32Array {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = this.uniform(lo, hi);
    return a;
  }
}

/** max |a − b| over all elements. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

/** rms(a − b) / rms(b): the relative error used for kernel-vs-reference tests. */
export function errRatio(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError(`length ${a.length} vs ${b.length}`);
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  if (den === 0) return num === 0 ? 0 : Infinity;
  return Math.sqrt(num / den);
}

/**
 * Assert `a` ≈ `b` within `maxAbs` (max |Δ|) and optionally `rel` (errRatio), printing the
 * first mismatches on failure.
 */
export function assertClose(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  tol: { maxAbs?: number; rel?: number },
  what = "values",
): void {
  const m = maxAbsDiff(a, b);
  const r = errRatio(a, b);
  const bad = (tol.maxAbs !== undefined && !(m <= tol.maxAbs)) ||
    (tol.rel !== undefined && !(r <= tol.rel));
  if (bad) {
    const first: string[] = [];
    for (let i = 0; i < a.length && first.length < 5; i++) {
      const lim = tol.maxAbs ?? 0;
      if (!(Math.abs(a[i] - b[i]) <= lim)) first.push(`[${i}] ${a[i]} vs ${b[i]}`);
    }
    throw new Error(
      `${what}: max|Δ| ${m.toExponential(3)} (tol ${tol.maxAbs}), rel ${r.toExponential(3)} ` +
        `(tol ${tol.rel}); first mismatches: ${first.join("; ")}`,
    );
  }
}

/**
 * B random sequences of the given lengths over a vocabulary of V, right-padded to the longest,
 * with random masks (position 0 always counts): flat (B, T) arrays for the GPU backward and
 * the same sequences for the CPU reference.
 */
export function randomBatch(rng: Rng, V: number, lengths: number[]): {
  B: number;
  T: number;
  tokens: Uint32Array;
  targets: Uint32Array;
  mask: Float32Array;
  seqs: { tokens: number[]; targets: number[]; mask: number[] }[];
} {
  const T = Math.max(...lengths), B = lengths.length;
  const tokens = new Uint32Array(B * T), targets = new Uint32Array(B * T);
  const mask = new Float32Array(B * T);
  const seqs = lengths.map((len, b) => {
    const tok = Array.from({ length: len }, () => rng.int(V));
    const tgt = Array.from({ length: len }, () => rng.int(V));
    const m = Array.from({ length: len }, (_, t) => (t === 0 || rng.next() < 0.8 ? 1 : 0));
    for (let t = 0; t < len; t++) {
      tokens[b * T + t] = tok[t];
      targets[b * T + t] = tgt[t];
      mask[b * T + t] = m[t];
    }
    return { tokens: tok, targets: tgt, mask: m };
  });
  return { B, T, tokens, targets, mask, seqs };
}

/** Run `scripts/<script>` as a subprocess (NO_COLOR); exit code, stdout and stderr. */
export async function runScript(
  script: string,
  args: string[],
): Promise<{ code: number; out: string; err: string }> {
  const cmd = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `scripts/${script}`, ...args],
    cwd: new URL("..", import.meta.url).pathname,
    env: { NO_COLOR: "1", XDG_RUNTIME_DIR: "/tmp" },
    stdout: "piped",
    stderr: "piped",
  });
  const o = await cmd.output();
  const dec = new TextDecoder();
  return { code: o.code, out: dec.decode(o.stdout), err: dec.decode(o.stderr) };
}

/** `GpuBackward.lossAndGrad` arguments of a {@link randomBatch} from a shared flat S0 (L·H·N·N). */
export function sharedS0Args(g: Gpu, batch: ReturnType<typeof randomBatch>, s0: Float32Array) {
  return {
    B: batch.B,
    T: batch.T,
    tokens: uploadStorage(g, "test.tokens", batch.tokens),
    targets: uploadStorage(g, "test.targets", batch.targets),
    mask: uploadStorage(g, "test.mask", batch.mask),
    init: { kind: "shared" as const, wkv: uploadStorage(g, "test.s0", s0) },
  };
}

/** The embedded default model (L2, C64, byte-level). */
export const DEFAULT_MODEL_PATH =
  new URL("../models/default.safetensors", import.meta.url).pathname;

/** `key=value\n` facts over a–h (4–8 letters each), the loss on the value and the newline. */
export function factExamples(n: number, seed: number): Example[] {
  const rng = new LibRng(seed), enc = new TextEncoder();
  const s = () => Array.from({ length: 4 + rng.int(5) }, () => "abcdefgh"[rng.int(8)]).join("");
  return Array.from({ length: n }, (_, line) => {
    const k = s(), ids = [...enc.encode(`${k}=${s()}\n`)];
    const loss = new Uint8Array(ids.length).map((_, t) => (t > k.length ? 1 : 0));
    return { ids, loss, line };
  });
}
