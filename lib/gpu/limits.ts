/**
 * WebGPU's default (guaranteed) limits and a static count of what each WGSL entry point binds.
 *
 * Every pipeline of the project must fit {@link WEBGPU_DEFAULT_LIMITS}, so that it runs on any
 * conforming adapter (browsers on many GPUs expose 8–10 storage buffers per stage). Larger adapter
 * limits may be requested for speed (bigger buffers), never needed for correctness.
 * {@link entryPointBindings} counts, per entry point, the bindings it statically uses (the WGSL
 * rule: a global counts when the entry point or a function it calls names it; a function that
 * declares a local or parameter of a global's name is taken not to use that global), so a test can
 * fail
 * before any adapter is asked.
 *
 * @module
 */

/** The limits WebGPU guarantees on every adapter (the spec's defaults) that matter here. */
export const WEBGPU_DEFAULT_LIMITS = {
  maxStorageBuffersPerShaderStage: 8,
  maxUniformBuffersPerShaderStage: 12,
  maxSampledTexturesPerShaderStage: 16,
  maxStorageTexturesPerShaderStage: 4,
  maxStorageBufferBindingSize: 128 * 2 ** 20,
  maxUniformBufferBindingSize: 64 * 2 ** 10,
  maxBufferSize: 256 * 2 ** 20,
  maxComputeWorkgroupStorageSize: 16 * 2 ** 10,
  maxComputeInvocationsPerWorkgroup: 256,
  maxComputeWorkgroupSizeX: 256,
  maxComputeWorkgroupSizeY: 256,
  maxComputeWorkgroupSizeZ: 64,
  maxComputeWorkgroupsPerDimension: 65535,
  maxBindGroups: 4,
  maxTextureDimension2D: 8192,
} as const;

/** What one entry point statically binds. */
export interface EntryBindings {
  /** Entry point name. */
  entry: string;
  /** Storage buffers (`var<storage, …>`). */
  storage: number;
  /** Uniform buffers (`var<uniform>`). */
  uniform: number;
  /** Sampled textures (`texture_2d<…>` and other non-storage textures). */
  sampledTextures: number;
  /** Storage textures (`texture_storage_*`). */
  storageTextures: number;
  /** Names of the storage buffers used (for messages). */
  storageNames: string[];
}

interface Global {
  name: string;
  kind: "storage" | "uniform" | "sampled" | "storageTexture" | "other";
}

function stripComments(src: string): string {
  return src.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/[^\n]*/g, "");
}

function bindingGlobals(src: string): Global[] {
  const re =
    /@group\(\s*\d+\s*\)\s*@binding\(\s*\d+\s*\)\s*var\s*(<[^>]*>)?\s*(\w+)\s*:\s*([^;]+);/g;
  const out: Global[] = [];
  for (const m of src.matchAll(re)) {
    const space = (m[1] ?? "").replace(/[<>\s]/g, "").split(",")[0];
    const type = m[3].trim();
    let kind: Global["kind"] = "other";
    if (space === "storage") kind = "storage";
    else if (space === "uniform") kind = "uniform";
    else if (type.startsWith("texture_storage")) kind = "storageTexture";
    else if (type.startsWith("texture_")) kind = "sampled";
    out.push({ name: m[2], kind });
  }
  return out;
}

/** Function name → { text of the function, whether it is a compute entry point }. */
function functions(src: string): Map<string, { text: string; entry: boolean }> {
  const out = new Map<string, { text: string; entry: boolean }>();
  const re = /((?:@[\w]+(?:\([^)]*\))?\s*)*)fn\s+(\w+)\s*\(/g;
  for (const m of src.matchAll(re)) {
    const open = src.indexOf("{", m.index! + m[0].length);
    let depth = 0, end = open;
    for (let i = open; i < src.length; i++) {
      if (src[i] === "{") depth++;
      else if (src[i] === "}" && --depth === 0) {
        end = i;
        break;
      }
    }
    const text = src.slice(m.index! + m[0].length, end + 1);
    out.set(m[2], { text, entry: /@compute\b/.test(m[1]) });
  }
  return out;
}

/**
 * Count, per `@compute` entry point of `source`, the bindings it statically uses.
 *
 * @param source complete WGSL (with any prepended common file)
 * @returns one row per entry point, in source order
 * @example
 * ```ts
 * const src = "@group(0) @binding(0) var<storage, read_write> a: array<f32>;\n" +
 *   "@compute @workgroup_size(1) fn main() { a[0] = 1.0; }";
 * console.assert(entryPointBindings(src)[0].storage === 1);
 * ```
 */
export function entryPointBindings(source: string): EntryBindings[] {
  const src = stripComments(source);
  const globals = bindingGlobals(src);
  const fns = functions(src);
  const idents = (text: string) => new Set(text.match(/\b[A-Za-z_]\w*\b/g) ?? []);
  const rows: EntryBindings[] = [];
  for (const [name, f] of fns) {
    if (!f.entry) continue;
    const used = new Set<string>();
    const seen = new Set<string>([name]);
    const stack = [f.text];
    while (stack.length) {
      const text = stack.pop()!;
      const locals = new Set(
        [...text.matchAll(/\b(?:let|var|const)\s+([A-Za-z_]\w*)|([A-Za-z_]\w*)\s*:/g)]
          .map((m) => m[1] ?? m[2]),
      );
      for (const id of idents(text)) if (!locals.has(id)) used.add(id);
      for (const [, id] of text.matchAll(/\b([A-Za-z_]\w*)\s*\(/g)) {
        const g = fns.get(id);
        if (g && !seen.has(id)) {
          seen.add(id);
          stack.push(g.text);
        }
      }
    }
    const hit = globals.filter((g) => used.has(g.name));
    const count = (k: Global["kind"]) => hit.filter((g) => g.kind === k).length;
    rows.push({
      entry: name,
      storage: count("storage"),
      uniform: count("uniform"),
      sampledTextures: count("sampled"),
      storageTextures: count("storageTexture"),
      storageNames: hit.filter((g) => g.kind === "storage").map((g) => g.name),
    });
  }
  return rows;
}

/**
 * The ways an entry point exceeds {@link WEBGPU_DEFAULT_LIMITS}, as messages (empty when it fits).
 *
 * @param b the counts from {@link entryPointBindings}
 */
export function defaultLimitViolations(b: EntryBindings): string[] {
  const L = WEBGPU_DEFAULT_LIMITS;
  const out: string[] = [];
  if (b.storage > L.maxStorageBuffersPerShaderStage) {
    out.push(
      `${b.storage} storage buffers (default limit ${L.maxStorageBuffersPerShaderStage}: ` +
        `${b.storageNames.join(", ")}); split the kernel or pack buffers`,
    );
  }
  if (b.uniform > L.maxUniformBuffersPerShaderStage) {
    out.push(`${b.uniform} uniform buffers (default limit ${L.maxUniformBuffersPerShaderStage})`);
  }
  if (b.sampledTextures > L.maxSampledTexturesPerShaderStage) {
    out.push(
      `${b.sampledTextures} sampled textures (default limit ${L.maxSampledTexturesPerShaderStage})`,
    );
  }
  if (b.storageTextures > L.maxStorageTexturesPerShaderStage) {
    out.push(
      `${b.storageTextures} storage textures (default limit ${L.maxStorageTexturesPerShaderStage})`,
    );
  }
  return out;
}
