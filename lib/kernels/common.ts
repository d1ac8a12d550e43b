/**
 * Shared checks and dispatch-size helpers for the host wrappers in `lib/kernels/`.
 *
 * @module
 */
import type { Recorder } from "../gpu/recorder.ts";
import { splitGroups } from "../gpu/groups.ts";

/** Elementwise and per-row kernels run 64 invocations per workgroup. */
export const WORKGROUP = 64;

/**
 * Throw a RangeError unless `value` is a positive integer (or zero when `allowZero`).
 *
 * @param kernel kernel name for the message
 * @param name dimension name, for example `"T"`
 */
export function checkDim(kernel: string, name: string, value: number, allowZero = false): void {
  if (!Number.isInteger(value) || value < (allowZero ? 0 : 1)) {
    throw new RangeError(
      `${kernel}: ${name} = ${value}; expected a ${
        allowZero ? "non-negative" : "positive"
      } integer`,
    );
  }
}

/**
 * Throw a RangeError unless `buf` holds at least `elems` 32-bit elements.
 *
 * @param what what the buffer is and its expected layout, for example `"x (M, K)"`
 */
export function needElems(kernel: string, what: string, buf: GPUBuffer, elems: number): void {
  if (buf.size < elems * 4) {
    throw new RangeError(
      `${kernel}: buffer ${what} ("${buf.label}") has ${buf.size / 4} f32 elements but the ` +
        `shapes need ${elems}`,
    );
  }
}

/** Rows, heads and head size of a per-(row, head) kernel over (rows, H·N) activations. */
export interface RowsHeads {
  rows: number;
  H: number;
  N: number;
}

/**
 * Check and record one dispatch of the elementwise time-mix backward shaders
 * (`gates_backward`, `key_norm_backward`, `groupnorm_bonus_backward`), whose Params are
 * `[rows, H, N, word3, word4, n, nx]`: one invocation per (row, head), or per element when
 * `perElement`. Every buffer but `vecs` must hold rows·H·N elements.
 */
export function recordRowsHeads(
  rec: Recorder,
  pipe: GPUComputePipeline | undefined,
  name: string,
  a: RowsHeads,
  words: [number, number],
  bufs: Record<string, GPUBuffer>,
  perElement = false,
): void {
  checkDim(name, "rows", a.rows);
  checkDim(name, "H", a.H);
  checkDim(name, "N", a.N);
  const n = a.rows * a.H * a.N;
  for (const [k, b] of Object.entries(bufs)) {
    if (k !== "vecs") needElems(name, `${k} (B·T, C)`, b, n);
  }
  const { groups, nx } = splitGroups(perElement ? n : a.rows * a.H, { perGroup: WORKGROUP });
  if (!pipe) throw new RangeError(`${name}: create the kernel with weightGrads = true`);
  rec.dispatch(
    pipe,
    [a.rows, a.H, a.N, words[0], words[1], n, nx],
    Object.values(bufs),
    groups,
    name,
  );
}
