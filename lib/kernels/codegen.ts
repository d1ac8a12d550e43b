/**
 * Shader code generation, the one scheme every derived shader goes through (the matmul family:
 * `matmul.wgsl`, `matmul_vec4.wgsl`, `matmul_tex.wgsl`, `matmul_tiled.wgsl`,
 * `gemv_subgroup.wgsl`). Each of those files says at its top which steps apply to it. A derived
 * shader is built in up to three steps, always in this order:
 *
 * 1. **Compose** ({@link composeShader}): shared files are prepended, joined by a newline
 *    (`matmul_tile_common.wgsl`: Params, the res/y bindings, the epilogue, the tile numbering).
 * 2. **Expand** ({@link expandTile}, the register-tile templates `matmul_vec4.wgsl` and
 *    `matmul_tex.wgsl` only): `//@begin e` … `//@end e` keep the section of entry `e`; a line
 *    tagged `//@rows` repeats for i = 0 … TR−1 and one tagged `//@cols` for j = 0 … TC−1 (both:
 *    every pair), with `$i` and `$j` replaced; `TRu` and `TCu` become the tile's literals. Each
 *    invocation so keeps TR × TC named accumulators (dynamically indexed private arrays spill to
 *    memory on llvmpipe).
 * 3. **Variants** ({@link applyVariants}): named, checked text edits from one table,
 *    {@link VARIANTS}; every edit must apply (else an Error names the variant and the edit), and
 *    a variant may then prepend or append text:
 *    - `f16w` / `f16w4`: packed-half weights (two IEEE halves per u32, no feature needed): the
 *      `w` binding becomes `array<u32>` / `array<vec2<u32>>` and every `w[…]` read an
 *      `ldw(…)` that unpacks with `unpack2x16float` (sums stay f32); {@link f16WeightSource}
 *      picks the scalar or vec4 form from the binding;
 *    - `f16math` (`matmul_tiled.wgsl`, needs `shader-f16`): `alias XT = f16;`, `w` as
 *      `array<f16>`, `enable f16;` prepended;
 *    - `subgroups` (`gemv_subgroup.wgsl`): `enable subgroups;` prepended;
 *    - `sg1` (`gemv_subgroup.wgsl`): the same kernel at a subgroup size of 1 (`subgroupAdd(v)` =
 *      v, every lane first), which compiles and runs on any adapter (checks only).
 *
 * Pipelines of derived shaders are cached under a key naming the file, the entry, the tile and
 * the variants (for example `matmul_vec4.linear.16x8.f16`).
 *
 * @module
 */
import { shaderSource } from "../gpu/pipeline.ts";

/** One checked text edit: `find` must occur (a RegExp with `g` replaces every match). */
export interface Edit {
  find: string | RegExp;
  replace: string;
  /** replace every occurrence of a string `find` (RegExps follow their own `g` flag) */
  all?: boolean;
}

/** A named variant: edits, a pattern that must be gone afterwards, text to prepend or append. */
export interface Variant {
  edits: Edit[];
  /** fails the variant when it still matches after the edits (before `append`) */
  forbid?: RegExp;
  prepend?: string;
  append?: string;
}

/** The variants, by name (see the module comment). */
export const VARIANTS = {
  f16w: {
    edits: [
      { find: "var<storage, read> w: array<f32>", replace: "var<storage, read> w: array<u32>" },
      { find: /\bw\[([^\]\[]+)\]/g, replace: "ldw($1)" },
    ],
    forbid: /\bw\[/,
    append: "\nfn ldw(i: u32) -> f32 {\n  return unpack2x16float(w[i >> 1u])[i & 1u];\n}\n",
  },
  f16w4: {
    edits: [
      {
        find: "var<storage, read> w: array<vec4<f32>>",
        replace: "var<storage, read> w: array<vec2<u32>>",
      },
      { find: /\bw\[([^\]\[]+)\]/g, replace: "ldw($1)" },
    ],
    forbid: /\bw\[/,
    append: "\nfn ldw(i: u32) -> vec4<f32> {\n  let h = w[i];\n" +
      "  return vec4<f32>(unpack2x16float(h.x), unpack2x16float(h.y));\n}\n",
  },
  f16math: {
    edits: [
      { find: "alias XT = f32;", replace: "alias XT = f16;" },
      { find: "var<storage, read> w: array<f32>;", replace: "var<storage, read> w: array<f16>;" },
    ],
    prepend: "enable f16;\n",
  },
  subgroups: { edits: [], prepend: "enable subgroups;\n" },
  sg1: {
    edits: [
      { find: "@builtin(subgroup_invocation_id) sgLane: u32,", replace: "" },
      { find: "subgroupAdd(", replace: "sgAdd1(", all: true },
    ],
    forbid: /subgroup_invocation_id/,
    append: "\nconst sgLane = 0u;\nfn sgAdd1(v: f32) -> f32 {\n  return v;\n}\n",
  },
} as const satisfies Record<string, Variant>;

/** The name of a variant in {@link VARIANTS}. */
export type VariantName = keyof typeof VARIANTS;

/** Step 1: `shaders/<name>.wgsl` of each name, in order, joined by a newline. */
export function composeShader(...names: string[]): string {
  return names.map((n) => shaderSource(n)).join("\n");
}

/**
 * Step 2: expand a register-tile template for one entry and tile: keep that entry's section,
 * repeat `//@rows` / `//@cols` lines and substitute `$i`, `$j`, `TRu`, `TCu`.
 *
 * @example
 * ```ts ignore
 * const code = expandTile(composeShader("matmul_tile_common", "matmul_vec4"), "linear", 4, 4);
 * ```
 */
export function expandTile(src: string, entry: string, TR: number, TC: number): string {
  const out: string[] = [];
  let skip = false;
  for (const line of src.split("\n")) {
    const sec = /^\/\/@(begin|end) (\w+)/.exec(line.trim());
    if (sec) {
      skip = sec[1] === "begin" && sec[2] !== entry;
      continue;
    }
    if (skip) continue;
    if (line.trim().startsWith("//")) {
      out.push(line); // comments (the header describes the tags) are kept once
      continue;
    }
    const rows = line.includes("//@rows"), cols = line.includes("//@cols");
    const body = line.replace(/\s*\/\/@(rows|cols)/g, "").replaceAll("TRu", `${TR}u`)
      .replaceAll("TCu", `${TC}u`);
    for (let i = 0; i < (rows ? TR : 1); i++) {
      for (let j = 0; j < (cols ? TC : 1); j++) {
        out.push(body.replaceAll("$i", String(i)).replaceAll("$j", String(j)));
      }
    }
  }
  return out.join("\n");
}

/**
 * Step 3: apply the named variants in order.
 *
 * @throws {Error} when an edit finds nothing or a `forbid` pattern remains ("unexpected shader
 *   text": the shader changed under the variant)
 */
export function applyVariants(src: string, names: readonly VariantName[]): string {
  let out = src;
  for (const name of names) {
    const v: Variant = VARIANTS[name];
    for (const e of v.edits) {
      const found = typeof e.find === "string" ? out.includes(e.find) : out.search(e.find) >= 0;
      if (!found) {
        throw new Error(`codegen: variant "${name}": unexpected shader text, no ${e.find}`);
      }
      out = typeof e.find === "string" && e.all
        ? out.replaceAll(e.find, e.replace)
        : out.replace(e.find, e.replace);
    }
    if (v.forbid?.test(out)) {
      throw new Error(`codegen: variant "${name}": unexpected shader text, ${v.forbid} remains`);
    }
    out = `${v.prepend ?? ""}${out}${v.append ?? ""}`;
  }
  return out;
}

/**
 * The packed-f16-weight variant of a matmul shader: `f16w4` when `w` is bound as
 * `array<vec4<f32>>`, else `f16w`.
 */
export function f16WeightSource(src: string): string {
  const vec4 = src.includes("var<storage, read> w: array<vec4<f32>>");
  return applyVariants(src, [vec4 ? "f16w4" : "f16w"]);
}
