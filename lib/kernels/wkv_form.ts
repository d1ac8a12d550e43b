/**
 * The choice between the two WKV forms, sequential (`wkv7.ts`, `wkv7_backward.ts`) and chunked
 * (`wkv7_chunked.ts`, `wkv7_chunked_backward.ts`): the form options, the per-shape rule
 * {@link chooseWkvForm} and {@link recordWkvForward} / {@link recordWkvBackward}, which record
 * the form an option selects. The choice depends on the adapter and the shape only.
 *
 * @module
 */
import { z } from "zod";
import type { Gpu } from "../gpu/device.ts";
import { isSoftwareAdapter } from "../gpu/software.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { Wkv7Args, Wkv7Kernel } from "./wkv7.ts";
import type { Wkv7BackwardArgs, Wkv7BackwardKernel } from "./wkv7_backward.ts";
import { WKV_CHUNK, wkvChunkedScratchElems, type WkvShape } from "./wkv7_chunked_common.ts";
import type { Wkv7ChunkedKernel } from "./wkv7_chunked.ts";
import type { Wkv7ChunkedBackwardKernel } from "./wkv7_chunked_backward.ts";

export type { WkvShape } from "./wkv7_chunked_common.ts";

/** The two WKV formulations. */
export type WkvForm = "sequential" | "chunked";

/**
 * The thresholds of the "auto" rule on hardware adapters: chunked for T ≥ `minT` and
 * B·H·N ≤ `maxBHN` (defaults 64 and 8192, today's rule; a GPU run can set its own).
 */
export const WkvAutoRuleSchema = z.strictObject({
  minT: z.number().int().min(1).default(64),
  maxBHN: z.number().int().min(1).default(8192),
});
/** The thresholds of {@link chooseWkvForm} (all optional, see the schema). */
export type WkvAutoRule = z.input<typeof WkvAutoRuleSchema>;

/**
 * A form option: a fixed form, "auto" for {@link chooseWkvForm} with the default thresholds, or
 * `{ auto: { minT, maxBHN } }` for it with others.
 */
export const WkvFormOptionSchema = z.union([
  z.enum(["auto", "sequential", "chunked"]),
  z.strictObject({ auto: WkvAutoRuleSchema }),
]);
/** A form option: a fixed form, or "auto" (optionally with thresholds) for {@link chooseWkvForm}. */
export type WkvFormOption = z.input<typeof WkvFormOptionSchema>;

/**
 * Whether the chunked form can run shape `s` on `gpu`: its backward scratch is one storage
 * binding, and its per-chunk workgroups fit one dispatch dimension.
 */
export function chunkedFits(gpu: Gpu, s: WkvShape): boolean {
  const groups = s.B * s.H * Math.ceil(s.T / WKV_CHUNK);
  return wkvChunkedScratchElems(s, true) * 4 <= gpu.limits.maxStorageBufferBindingSize &&
    groups <= gpu.limits.maxComputeWorkgroupsPerDimension && s.N <= 64;
}

/**
 * The faster WKV form for shape `s` on this adapter.
 *
 * Measured on Mesa llvmpipe (2 cores, `deno run -A tmp/wkv_form_bench.ts`, N = 64, H = 12;
 * ms per call, sequential / chunked): B1 T64 forward 27 / 790, backward 141 / 2214; B1 T512
 * forward 94 / 5099, backward 955 / 17311; B16 T16 forward 66 / 3132, backward 282 / 8095. The
 * sequential form wins by 18–50×: it reads per-token vectors from uniform windows and has no
 * barriers, while every storage load of the chunked form is a scalar loop over the SIMD lanes
 * there and its state passes serialise one 256-invocation workgroup per head behind barriers.
 * So software adapters always get "sequential".
 *
 * On GPUs (no GPU was available to measure; a heuristic to revisit with this bench): the
 * sequential form runs B·H·N invocations, each a chain of ~4N dependent FMAs per token; the
 * chunked one runs 4× the invocations per head with a ~4× shorter serial chain per chunk and
 * moves the rest into work parallel over chunks. It should win when B·H·N is far below the
 * GPU's resident thread count and T spans several chunks: chunked for T ≥ 64 and B·H·N ≤ 8192,
 * when its scratch fits one storage binding.
 */
export function chooseWkvForm(gpu: Gpu, s: WkvShape, rule: WkvAutoRule = {}): WkvForm {
  if (isSoftwareAdapter(gpu) || !chunkedFits(gpu, s)) return "sequential";
  const r = WkvAutoRuleSchema.parse(rule);
  return s.T >= r.minT && s.B * s.H * s.N <= r.maxBHN ? "chunked" : "sequential";
}

/**
 * Whether `option` can ever pick the chunked form on `gpu` for head size `N` (so its kernel is
 * worth compiling).
 */
export function mayChooseChunked(gpu: Gpu, option: WkvFormOption | undefined, N: number): boolean {
  const o = WkvFormOptionSchema.parse(option ?? "auto");
  return o === "chunked" || (o !== "sequential" && !isSoftwareAdapter(gpu) && N <= 64);
}

/** `option` resolved for shape `s`: a fixed form as is, "auto" (the default) by {@link chooseWkvForm}. */
export function resolveWkvForm(
  gpu: Gpu,
  option: WkvFormOption | undefined,
  s: WkvShape,
): WkvForm {
  const o = WkvFormOptionSchema.parse(option ?? "auto");
  if (o === "auto") return chooseWkvForm(gpu, s);
  return typeof o === "object" ? chooseWkvForm(gpu, s, o.auto) : o;
}

/** Which form {@link recordWkvForward} / {@link recordWkvBackward} record. */
export interface WkvForms<S, C> {
  /** the sequential kernel (the default) */
  wkv: S;
  /** the chunked kernel; omitted: always sequential (unless `wkvForm` is "chunked": an error) */
  wkvChunked?: C;
  /** "auto" (default): {@link chooseWkvForm}; or force one form */
  wkvForm?: WkvFormOption;
}

function pick(gpu: Gpu, f: WkvForms<unknown, unknown>, s: WkvShape, what: string): WkvForm {
  if (!f.wkvChunked && f.wkvForm !== "chunked") return "sequential";
  const form = resolveWkvForm(gpu, f.wkvForm, s);
  if (form === "chunked" && !f.wkvChunked) {
    throw new Error(`wkvForm "chunked" needs the chunked kernel: pass ${what}.create(gpu, …)`);
  }
  return form;
}

/**
 * Record the WKV forward in the form `f` selects (sequential when no chunked kernel is given).
 *
 * @returns the form recorded
 */
export function recordWkvForward(
  rec: Recorder,
  f: WkvForms<Wkv7Kernel, Wkv7ChunkedKernel>,
  a: Wkv7Args,
): WkvForm {
  const form = pick(rec.gpu, f, { B: a.B, T: a.T, H: a.H, N: f.wkv.N }, "Wkv7ChunkedKernel");
  (form === "chunked" ? f.wkvChunked! : f.wkv).record(rec, a);
  return form;
}

/**
 * Record the WKV backward in the form `f` selects; the chunked form uses its own scratch
 * ({@link Wkv7ChunkedBackwardKernel.ensureScratch}), so `a.scratch` is the sequential one's.
 *
 * @returns the form recorded
 */
export function recordWkvBackward(
  rec: Recorder,
  f: WkvForms<Wkv7BackwardKernel, Wkv7ChunkedBackwardKernel>,
  a: Wkv7BackwardArgs,
): WkvForm {
  const form = pick(rec.gpu, f, a, "Wkv7ChunkedBackwardKernel");
  if (form === "sequential") f.wkv.record(rec, a);
  else {
    const scratch = f.wkvChunked!.ensureScratch(a.B, a.T, a.H, a.N);
    f.wkvChunked!.record(rec, { ...a, scratch });
  }
  return form;
}
