/**
 * Shared checks and dispatch-size helpers for the host wrappers in `lib/kernels/`.
 *
 * @module
 */

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
