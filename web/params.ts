/**
 * The browser demo's parameters, read from the page URL (`?skill=reverse&steps=20&seed=1`),
 * with the same defaults as `deno task demo`. Pure: no DOM, so Deno tests it too.
 *
 * @module
 */
import { z } from "zod";
import { SKILLS } from "../lib/train/synthetic.ts";

/** Demo parameters: URL names, defaults of `scripts/demo.ts`. */
export const DemoParamsSchema = z.object({
  skill: z.enum(SKILLS).default("reverse"),
  steps: z.coerce.number().int().positive().max(10_000).default(60),
  batch: z.coerce.number().int().positive().max(256).default(16),
  lrInit: z.coerce.number().positive().default(0.1),
  lrFinal: z.coerce.number().positive().default(0.001),
  trainItems: z.coerce.number().int().min(10).max(100_000).default(400),
  testItems: z.coerce.number().int().positive().max(10_000).default(100),
  seed: z.coerce.number().int().default(0),
  /** the model file, relative to the page (a .safetensors or .pth RWKV-7 byte-level model) */
  model: z.string().min(1).default("models/default.safetensors"),
  /** start at once instead of waiting for the Run button */
  autorun: z.enum(["0", "1", "true", "false"]).default("0").transform((v) =>
    v === "1" || v === "true"
  ),
});

/** Parsed demo parameters. */
export type DemoParams = z.output<typeof DemoParamsSchema>;

/** The URL names of the parameters. */
export const PARAM_NAMES: readonly string[] = Object.keys(DemoParamsSchema.shape);

/**
 * Parse URL search parameters; unknown names and bad values are errors that name them.
 *
 * @param search `location.search` or a `URLSearchParams`
 * @throws RangeError naming the parameter and the value
 */
export function parseDemoParams(search: string | URLSearchParams): DemoParams {
  const sp = typeof search === "string" ? new URLSearchParams(search) : search;
  const raw: Record<string, string> = {};
  for (const [k, v] of sp) {
    if (!PARAM_NAMES.includes(k)) {
      throw new RangeError(
        `unknown URL parameter "${k}" (=${JSON.stringify(v)}); known: ${PARAM_NAMES.join(", ")}`,
      );
    }
    raw[k] = v;
  }
  const r = DemoParamsSchema.safeParse(raw);
  if (!r.success) {
    const msg = r.error.issues.map((i) => {
      const key = String(i.path[0] ?? "");
      return `${key}=${JSON.stringify(raw[key])}: ${i.message}`;
    }).join("; ");
    throw new RangeError(`bad URL parameter: ${msg}`);
  }
  return r.data;
}

/**
 * The query string for parameters (only the given ones, in `PARAM_NAMES` order), e.g. for
 * the report's "rerun this here" link.
 */
export function demoQuery(params: Partial<Record<string, unknown>>): string {
  const sp = new URLSearchParams();
  for (const k of PARAM_NAMES) {
    const v = params[k];
    if (v !== undefined && v !== null) sp.set(k, String(v));
  }
  const s = sp.toString();
  return s ? `?${s}` : "";
}
