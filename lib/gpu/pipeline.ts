/**
 * Shader loading and the compute-pipeline cache.
 *
 * Pipelines are cached by (shader file, entry point, override constants). Every shader module
 * and pipeline is created inside a validation error scope and a failure is rethrown with its
 * label, so a bad shader names itself instead of surfacing as an uncaptured error later.
 *
 * @module
 */
import type { Gpu } from "./device.ts";

const shaderText = new Map<string, string>();

/**
 * Supply shader sources from elsewhere than the file system (a browser page fetches them and
 * calls this before creating a model). Later {@link shaderSource} calls use these texts.
 *
 * @param sources file stem (`"layernorm"`) → WGSL text
 */
export function provideShaderSources(sources: Record<string, string>): void {
  for (const [name, text] of Object.entries(sources)) shaderText.set(name, text);
}

/** The shader stems {@link provideShaderSources} has supplied or that were read so far. */
export function knownShaderNames(): string[] {
  return [...shaderText.keys()];
}

/**
 * The WGSL source of `shaders/<name>.wgsl`, read once (from the sources given to
 * {@link provideShaderSources}, else from the file beside this module under Deno).
 *
 * @param name file stem, for example `"layernorm"`
 */
export function shaderSource(name: string): string {
  let src = shaderText.get(name);
  if (src === undefined) {
    const url = new URL(`../../shaders/${name}.wgsl`, import.meta.url);
    // deno-lint-ignore no-explicit-any
    const deno = (globalThis as any).Deno as typeof Deno | undefined;
    if (!deno) {
      throw new Error(
        `shader "${name}" was not provided: outside Deno, fetch shaders/${name}.wgsl and pass ` +
          `it to provideShaderSources() before creating the model`,
      );
    }
    try {
      src = deno.readTextFileSync(url);
    } catch (e) {
      throw new Error(`shader "${name}" not found at ${url.pathname}: ${(e as Error).message}`);
    }
    shaderText.set(name, src);
  }
  return src;
}

/** What identifies one compute pipeline. */
export interface PipelineKey {
  /** Shader file stem under `shaders/`, or a label when `code` is given. */
  shader: string;
  /** Entry point (default `main`). */
  entryPoint?: string;
  /** WGSL `override` constants. */
  constants?: Record<string, number>;
  /** Inline WGSL instead of the file (tests, generated code). */
  code?: string;
}

interface Cache {
  modules: Map<string, GPUShaderModule>;
  pipelines: Map<string, Promise<GPUComputePipeline>>;
}
const caches = new WeakMap<GPUDevice, Cache>();

function cacheFor(device: GPUDevice): Cache {
  let c = caches.get(device);
  if (!c) {
    c = { modules: new Map(), pipelines: new Map() };
    caches.set(device, c);
  }
  return c;
}

async function createModule(gpu: Gpu, label: string, code: string): Promise<GPUShaderModule> {
  gpu.device.pushErrorScope("validation");
  const module = gpu.device.createShaderModule({ label, code });
  const err = await gpu.device.popErrorScope();
  if (err) throw new Error(`shader module "${label}" failed to compile: ${err.message}`);
  return module;
}

/**
 * The cached compute pipeline for `key`, created (with error scope) on first use.
 *
 * @example
 * ```ts ignore
 * const p = await getPipeline(gpu, { shader: "layernorm", entryPoint: "forward" });
 * ```
 */
export function getPipeline(gpu: Gpu, key: PipelineKey): Promise<GPUComputePipeline> {
  const entryPoint = key.entryPoint ?? "main";
  const consts = key.constants ?? {};
  const constKey = Object.keys(consts).sort().map((k) => `${k}=${consts[k]}`).join(",");
  const id = `${key.shader}#${entryPoint}(${constKey})${key.code ? `@${hash(key.code)}` : ""}`;
  const cache = cacheFor(gpu.device);
  let p = cache.pipelines.get(id);
  if (!p) {
    p = (async () => {
      const code = key.code ?? shaderSource(key.shader);
      const modId = key.code ? `${key.shader}@${hash(key.code)}` : key.shader;
      let module = cache.modules.get(modId);
      if (!module) {
        module = await createModule(gpu, modId, code);
        cache.modules.set(modId, module);
      }
      const t0 = performance.now();
      gpu.device.pushErrorScope("validation");
      const pipeline = gpu.device.createComputePipeline({
        label: id,
        layout: "auto",
        compute: { module, entryPoint, constants: consts },
      });
      const err = await gpu.device.popErrorScope();
      if (err) throw new Error(`compute pipeline "${id}" failed: ${err.message}`);
      if (traceCompiles()) {
        console.error(`pipeline ${id}: ${(performance.now() - t0).toFixed(0)} ms`);
      }
      return pipeline;
    })();
    p.catch(() => cache.pipelines.delete(id));
    cache.pipelines.set(id, p);
  }
  return p;
}

function hash(s: string): string {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return (h >>> 0).toString(16);
}

let trace: boolean | undefined;
/** `RWKV_TRACE_PIPELINES=1` prints each pipeline's creation (compile) time to stderr. */
function traceCompiles(): boolean {
  if (trace === undefined) {
    try {
      // deno-lint-ignore no-explicit-any
      trace = (globalThis as any).Deno?.env.get("RWKV_TRACE_PIPELINES") === "1";
    } catch {
      trace = false;
    }
  }
  return trace;
}
