/**
 * Test helpers: fixture paths (skipping with a message when `../shared/fixtures` is absent),
 * GPU availability, seeded random numbers and error measures.
 *
 * @module
 */
import { describeGpu, tryGetGpu } from "../lib/gpu/device.ts";
import type { Gpu, LimitsMode } from "../lib/gpu/device.ts";
import { uploadStorage } from "../lib/gpu/buffers.ts";
import type { Example } from "../lib/train/data.ts";
import { Rng } from "./_numeric.ts";

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

export { assertClose, errRatio, maxAbsDiff, Rng } from "./_numeric.ts";

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
  const rng = new Rng(seed), enc = new TextEncoder();
  const s = () => Array.from({ length: 4 + rng.int(5) }, () => "abcdefgh"[rng.int(8)]).join("");
  return Array.from({ length: n }, (_, line) => {
    const k = s(), ids = [...enc.encode(`${k}=${s()}\n`)];
    const loss = new Uint8Array(ids.length).map((_, t) => (t > k.length ? 1 : 0));
    return { ids, loss, line };
  });
}
