/**
 * WebGPU's default limits: every shader entry point binds at most 8 storage buffers (a static
 * count, no adapter needed), and a device created with `limits: "default"` really enforces them.
 *
 * @module
 */
import { assert, assertEquals, assertRejects, assertRejectsMatch } from "@std/assert";
import {
  defaultLimitViolations,
  entryPointBindings,
  WEBGPU_DEFAULT_LIMITS,
} from "../lib/gpu/limits.ts";
import { getGpu, requestGpu } from "../lib/gpu/device.ts";
import { getPipeline } from "../lib/gpu/pipeline.ts";
import { gpu } from "./_helpers.ts";

const SHADERS = new URL("../shaders/", import.meta.url);

/** Common files the hosts prepend (lib/kernels/codegen.ts composeShader, wkv7_chunked_common.ts). */
const PREPENDED: Record<string, string> = {
  matmul_vec4: "matmul_tile_common",
  matmul_tex: "matmul_tile_common",
  matmul_tiled: "matmul_tile_common",
  gemv_subgroup: "matmul_tile_common",
  wkv7_chunked: "wkv7_chunked_common",
  wkv7_chunked_backward: "wkv7_chunked_common",
};

/**
 * Entry points allowed over the default limits (reported, not failed): none. Any violation
 * fails.
 */
const PENDING = new Set<string>([]);

function shaderStems(): string[] {
  return [...Deno.readDirSync(SHADERS)].map((e) => e.name).filter((n) => n.endsWith(".wgsl"))
    .map((n) => n.slice(0, -5)).filter((n) => !n.includes("common")).sort();
}

function source(stem: string): string {
  const read = (s: string) => Deno.readTextFileSync(new URL(`${s}.wgsl`, SHADERS));
  return PREPENDED[stem] ? `${read(PREPENDED[stem])}\n${read(stem)}` : read(stem);
}

Deno.test("entryPointBindings: static use through helpers, per entry point", () => {
  const src = `
    @group(0) @binding(0) var<uniform> p: vec4<u32>;
    @group(0) @binding(1) var<storage, read> a: array<f32>; // used by both
    @group(0) @binding(2) var<storage, read_write> b: array<f32>; // only via helper()
    @group(0) @binding(2) var<storage, read_write> c: array<f32>; // only by two
    @group(0) @binding(3) var t: texture_2d<f32>;
    fn helper(i: u32) -> f32 { return b[i] + a[i]; }
    @compute @workgroup_size(64) fn one() { let helper2 = 1.0; b[0] = helper(p.x) + helper2; }
    /* fn fake() { c[0] = 1.0; } */
    @compute @workgroup_size(64) fn two() { c[0] = a[0] + textureLoad(t, vec2(0), 0).x; }
  `;
  const rows = entryPointBindings(src);
  assertEquals(rows.map((r) => [r.entry, r.storage, r.uniform, r.sampledTextures]), [
    ["one", 2, 1, 0],
    ["two", 2, 0, 1],
  ]);
  assertEquals(rows[0].storageNames, ["a", "b"]);
  const over = { ...rows[0], storage: 9, storageNames: ["x"] };
  assert(defaultLimitViolations(over)[0].startsWith("9 storage buffers (default limit 8"));
});

Deno.test("every shader entry point fits WebGPU's default binding limits", () => {
  const bad: string[] = [], pending: string[] = [];
  let entries = 0;
  for (const stem of shaderStems()) {
    for (const b of entryPointBindings(source(stem))) {
      entries++;
      const v = defaultLimitViolations(b);
      const id = `${stem}#${b.entry}`;
      if (v.length) (PENDING.has(id) ? pending : bad).push(`${id}: ${v.join("; ")}`);
    }
  }
  console.log(`${entries} entry points checked; ${entries - bad.length - pending.length} fit`);
  if (pending.length) console.warn(`still over (being rewritten):\n  ${pending.join("\n  ")}`);
  assert(entries > 40, `only ${entries} entry points found under ${SHADERS.pathname}`);
  assertEquals(bad, [], `entry points over the default limits:\n${bad.join("\n")}`);
});

Deno.test({
  name: "limits: 'default' gives WebGPU's defaults and enforces 8 storage buffers per stage",
  ignore: !gpu,
  async fn() {
    const g = await getGpu({ limits: "default" });
    assertEquals(g.requested.mode, "default");
    assertEquals(g.requested.limits, {});
    const L = WEBGPU_DEFAULT_LIMITS;
    assertEquals(g.limits.maxStorageBuffersPerShaderStage, L.maxStorageBuffersPerShaderStage);
    assertEquals(g.limits.maxComputeWorkgroupStorageSize, L.maxComputeWorkgroupStorageSize);
    assertEquals(
      g.limits.maxComputeInvocationsPerWorkgroup,
      L.maxComputeInvocationsPerWorkgroup,
    );
    assertEquals(g.limits.maxBufferSize, L.maxBufferSize);
    const n = 9;
    const decl = Array.from(
      { length: n },
      (_, i) => `@group(0) @binding(${i}) var<storage, read_write> b${i}: array<f32>;`,
    ).join("\n");
    const body = Array.from({ length: n }, (_, i) => `b${i}[0] = 1.0;`).join(" ");
    const code = `${decl}\n@compute @workgroup_size(1) fn main() { ${body} }`;
    await assertRejectsMatch(
      () => getPipeline(g, { shader: "limits_test_nine", code }),
      /StorageBuffers/,
    );
    const e = await assertRejects(
      // deno-lint-ignore no-explicit-any
      () => requestGpu({ limits: "small" as any }),
    );
    assertEquals(
      { name: e.name, message: e.message },
      { name: "TypeError", message: `limits must be "default" or "adapter", not "small"` },
    );
    // deno-lint-ignore no-explicit-any
    await assertRejectsMatch(() => getGpu({ limit: "default" } as any), /bad GPU options.*limit/);
  },
});
