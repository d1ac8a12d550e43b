/**
 * Detecting the Deno Jupyter kernel and sending mime bundles to it. Outside the kernel
 * (plain `deno run`/`deno test`) every function here is a harmless no-op.
 *
 * @module
 */
import type { MimeBundle } from "./types.ts";

/** The part of `Deno.jupyter` used here. */
export interface JupyterApi {
  display(
    obj: unknown,
    options?: { raw?: boolean; update?: boolean; display_id?: string },
  ): Promise<void>;
}

let cached: JupyterApi | null | undefined;

/**
 * `Deno.jupyter` when running inside `deno jupyter`, else null. (Outside the kernel even
 * `typeof Deno.jupyter` throws, hence the try/catch.)
 */
export function jupyter(): JupyterApi | null {
  if (cached !== undefined) return cached;
  try {
    // deno-lint-ignore no-explicit-any
    const j = (Deno as any).jupyter as JupyterApi | undefined;
    cached = j && typeof j.display === "function" ? j : null;
  } catch {
    cached = null;
  }
  return cached;
}

/** True inside the Deno Jupyter kernel. */
export function inJupyter(): boolean {
  return jupyter() !== null;
}

/**
 * Show a mime bundle as a cell output (no-op outside Jupyter). With `displayId`, a later
 * call with `update: true` replaces that output in place.
 *
 * @param bundle mime type → data
 * @param opts `displayId` to name the output, `update` to replace it
 */
export async function displayBundle(
  bundle: MimeBundle,
  opts: { displayId?: string; update?: boolean } = {},
): Promise<void> {
  const j = jupyter();
  if (!j) return;
  await j.display(bundle, {
    raw: true,
    ...(opts.displayId ? { display_id: opts.displayId } : {}),
    ...(opts.update ? { update: true } : {}),
  });
}

let counter = 0;

/** A display id unique within this kernel session. */
export function newDisplayId(prefix = "out"): string {
  counter++;
  return `${prefix}-${Date.now().toString(36)}-${counter}`;
}
