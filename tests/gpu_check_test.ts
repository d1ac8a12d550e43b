/**
 * `deno task gpu-check` cannot rot: its `--dry-run` (every stage at tiny shapes, PyTorch on the
 * CPU) runs here as a subprocess and its report is checked; without `--dry-run` a software
 * adapter must fail loudly (exit 2). Plus the pure parts: costs, the software check, the
 * chunked-threshold suggestion and the markdown.
 */
import { assert, assertEquals, assertMatch, assertStrictEquals } from "@std/assert";
import { softwareReason } from "../lib/bench/adapter.ts";
import { phaseFractions, shapeCost } from "../lib/bench/cost.ts";
import type { GpuCheckReport } from "../lib/bench/report.ts";
import { suggestMinT } from "../lib/bench/wkv.ts";
import { OFFICIAL_SHAPES } from "../lib/model/random.ts";
import { gpu } from "./_helpers.ts";

const ROOT = new URL("../", import.meta.url).pathname;

async function gpuCheck(args: string[]): Promise<{ code: number; out: string }> {
  const p = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--cached-only", "scripts/gpu_check.ts", ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1", XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp" },
  }).output();
  const dec = new TextDecoder();
  return { code: p.code, out: dec.decode(p.stdout) + dec.decode(p.stderr) };
}

Deno.test("shape costs: 0.1B has ~0.15 G matmul weights (with the head), f16 halves the bytes", () => {
  const c32 = shapeCost(OFFICIAL_SHAPES["0.1B"], "f32"),
    c16 = shapeCost(OFFICIAL_SHAPES["0.1B"], "f16");
  // 12 · (4·768² + 2·768·3072 + 2·768·(64+64+128+32)) − 2·768·32 + 65536·768
  assertStrictEquals(
    c32.matmulParams,
    12 * (4 * 768 ** 2 + 2 * 768 * 3072 + 2 * 768 * 288) - 2 * 768 * 32 + 65536 * 768,
  );
  assertStrictEquals(c16.weightBytes * 2, c32.weightBytes);
  const f = phaseFractions(c32, "step", 512, 1000, { gflops: 1e4, gbs: null });
  assert(Math.abs(f.gflops - 6 * c32.matmulParams * 1000 / 1e9) < 1e-9);
  assertEquals(f.bandwidthFraction, null);
  assert(Math.abs(f.flopFraction! - f.gflops / 1e4) < 1e-12);
});

Deno.test("software adapters are named; hardware ones pass", () => {
  for (
    const d of ["llvmpipe (LLVM 15.0.6, 256 bits)", "SwiftShader Device (Subzero)", "lavapipe"]
  ) {
    assert(softwareReason({ isFallback: false, description: d }), d);
  }
  assertEquals(softwareReason({ isFallback: false, description: "NVIDIA H200" }), null);
  assertMatch(softwareReason({ isFallback: true, description: "x" })!, /isFallbackAdapter/);
});

Deno.test("chunked-WKV threshold suggestion: the T from which chunked always won", () => {
  const row = (T: number, s: number, c: number | null) => ({
    H: 12,
    N: 64,
    T,
    sequentialMs: s,
    chunkedMs: c,
    timer: "wall" as const,
  });
  assertEquals(suggestMinT([row(16, 1, 2), row(64, 2, 1), row(512, 8, 3)]), { 12: 64 });
  assertEquals(suggestMinT([row(16, 1, 0.5), row(64, 2, 3), row(512, 8, 3)]), { 12: 512 });
  assertEquals(suggestMinT([row(16, 1, 2), row(512, 8, null)]), { 12: null });
});

Deno.test(
  { name: "gpu-check --dry-run: every stage runs and the report holds", ignore: !gpu },
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "gpu_check_" });
    const t0 = performance.now();
    const { code, out } = await gpuCheck([dir, "--dry-run"]);
    const s = (performance.now() - t0) / 1000;
    console.log(`gpu-check --dry-run: ${s.toFixed(1)} s`);
    assertEquals(code, 0, out.slice(-3000));
    assertMatch(out, /^adapter: /m);
    const r: GpuCheckReport = JSON.parse(await Deno.readTextFile(`${dir}/gpu_check.json`));
    assertEquals(r.mode, "dry-run");
    assert(r.subset?.ok && r.subset.passed >= 3, JSON.stringify(r.subset));
    for (const dtype of ["f32", "f16"]) {
      for (const phase of ["prefill", "generate", "step"]) {
        const rows = r.phases.filter((p) => p.dtype === dtype && p.phase === phase);
        assert(
          rows.length > 0 && rows.every((p) => p.tokensPerSecond > 0 && p.gflops > 0),
          `${dtype} ${phase}`,
        );
      }
      assertEquals(
        r.phases.filter((p) => p.dtype === dtype && p.phase === "step").map((p) => p.T),
        [16, 40],
      );
    }
    assert(r.kernels.length > 0, "per-kernel times");
    const variants = new Set(r.matmuls.map((m) => m.variant));
    assert(
      variants.has("register tiles f32") && variants.has("workgroup-tiled f32"),
      [...variants].join(),
    );
    assert(r.matmuls.every((m) => m.gflops > 0 && Number.isFinite(m.seconds)));
    if (gpu!.hasTimestamps) {
      const tiled = r.matmuls.filter((m) => m.variant === "workgroup-tiled f32" && m.M > 1);
      assert(
        tiled.every((m) => m.kernels.some((k) => k.includes("tiled"))),
        JSON.stringify(tiled),
      );
    }
    assertEquals(r.wkv.length, 2);
    if (r.torch.length) {
      const kinds = new Set(r.torch.map((t) => `${t.dtype} ${t.form}`));
      assertEquals(kinds.size, 4, [...kinds].join());
      assertStrictEquals(r.ratios.length, 2 * 4 * 2, "2 WebGPU dtypes × 4 PyTorch variants × 2 T");
      assert(
        r.ratios.every((x) => x.ratio > 0 && /eager sequential|pure-PyTorch chunked/.test(x.torch)),
      );
    } else {
      assert(r.torchStatus.length > 0, "no PyTorch rows and no reason");
      console.warn(`SKIP PyTorch part of the dry run: ${r.torchStatus.join("; ")}`);
    }
    const md = await Deno.readTextFile(`${dir}/gpu_check.md`);
    assertMatch(md, /## Model phases/);
    assertMatch(md, /WebGPU \/ PyTorch/);
    await Deno.remove(dir, { recursive: true });
  },
);

Deno.test({
  name: "gpu-check without --dry-run fails loudly on a software adapter",
  ignore: !gpu || !softwareReason(gpu),
}, async () => {
  const dir = await Deno.makeTempDir({ prefix: "gpu_check_" });
  const { code, out } = await gpuCheck([dir, "--quick"]);
  assertEquals(code, 2, out);
  assertMatch(out, /SOFTWARE FALLBACK/);
  const r: GpuCheckReport = JSON.parse(await Deno.readTextFile(`${dir}/gpu_check.json`));
  assert(r.adapter.software && r.skipped[0].reason.includes("software"));
  await Deno.remove(dir, { recursive: true });
});
