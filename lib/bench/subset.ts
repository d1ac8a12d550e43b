/**
 * The GPU-vs-reference subset of `deno task gpu-check`: the kernel test files run by the same
 * Deno binary (`deno test --cached-only`) on whatever adapter this process sees, their output
 * kept for the report.
 *
 * @module
 */

/** The test files of the subset (kernels, model, backward, hardware kernels). */
export const GPU_SUBSET = [
  "tests/matmul_tiled_test.ts",
  "tests/matmul_test.ts",
  "tests/f16_weights_test.ts",
  "tests/kernels_test.ts",
  "tests/kernels_backward_test.ts",
  "tests/wkv_test.ts",
  "tests/wkv_chunked_test.ts",
  "tests/gpu_model_test.ts",
  "tests/gpu_backward_test.ts",
];

/** The outcome of one subset run. */
export interface SubsetResult {
  files: string[];
  filter: string | null;
  passed: number;
  failed: number;
  ignored: number;
  ok: boolean;
  seconds: number;
  /** the full output (written beside the report) */
  log: string;
}

/**
 * Run `files` (optionally `--filter`) with this Deno binary; never throws for failing tests.
 *
 * @example
 * ```ts ignore
 * const r = await runSubset(GPU_SUBSET, null, 600);
 * if (!r.ok) console.error(r.log);
 * ```
 */
export async function runSubset(
  files: string[],
  filter: string | null,
  timeoutS: number,
): Promise<SubsetResult> {
  const root = new URL("../../", import.meta.url).pathname;
  const args = ["test", "-A", "--cached-only", ...(filter ? ["--filter", filter] : []), ...files];
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), timeoutS * 1000);
  const t0 = performance.now();
  let log: string, code: number;
  try {
    const p = await new Deno.Command(Deno.execPath(), {
      args,
      cwd: root,
      signal: ac.signal,
      env: { NO_COLOR: "1" },
    }).output();
    const dec = new TextDecoder();
    log = dec.decode(p.stdout) + dec.decode(p.stderr);
    code = p.code;
  } finally {
    clearTimeout(timer);
  }
  if (ac.signal.aborted) log += `\ngpu-check: the subset ran past ${timeoutS} s and was killed\n`;
  const m = /(\d+) passed(?: \(\d+ steps?\))? \| (\d+) failed(?: \| (\d+) ignored)?/.exec(log);
  const [passed, failed, ignored] = m ? [1, 2, 3].map((i) => Number(m[i] ?? 0)) : [0, 0, 0];
  const seconds = (performance.now() - t0) / 1000;
  const ok = code === 0 && !ac.signal.aborted && passed > 0 && failed === 0;
  return { files, filter, passed, failed, ignored, ok, seconds, log };
}
