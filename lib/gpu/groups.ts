/**
 * The one workgroup-splitting helper: every dispatch whose workgroup count may exceed
 * `maxComputeWorkgroupsPerDimension` (65535 by default) spreads it over (x, y).
 *
 * @module
 */

/** Workgroup counts (x, y) of a 1-D dispatch and `nx`, the workgroups along x. */
export interface GroupGrid {
  groups: [number, number];
  nx: number;
}

/** Options of {@link splitGroups}. */
export interface SplitGroupsOptions {
  /** invocations per workgroup (default 1: `count` already counts workgroups) */
  perGroup?: number;
  /** the per-dimension limit (default 65535, WebGPU's default) */
  maxPerDim?: number;
}

/**
 * Split `count` invocations in groups of `perGroup` (at least one workgroup) over (x, y) so that
 * neither exceeds `maxPerDim`. Shaders recover the flat workgroup index as `wid.x + wid.y * nx`
 * with `nx` passed as a parameter.
 *
 * @example
 * ```ts
 * import { splitGroups } from "./groups.ts";
 * splitGroups(100_000); // { groups: [50000, 2], nx: 50000 }
 * splitGroups(1000, { perGroup: 64 }); // { groups: [16, 1], nx: 16 }
 * ```
 */
export function splitGroups(count: number, options: SplitGroupsOptions = {}): GroupGrid {
  const { perGroup = 1, maxPerDim = 65535 } = options;
  const g = Math.max(1, Math.ceil(count / perGroup));
  if (g <= maxPerDim) return { groups: [g, 1], nx: g };
  const y = Math.ceil(g / maxPerDim);
  const x = Math.ceil(g / y);
  return { groups: [x, y], nx: x };
}
