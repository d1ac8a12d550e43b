/**
 * The hardware kernels that need a feature no Deno adapter here offers, run in a real browser:
 * headless Chromium's WebGPU on SwiftShader offers `subgroups` (subgroup size 4), so the GEMV
 * with real subgroup reductions (`shaders/gemv_subgroup.wgsl`, `gemv: "on"`) runs there against
 * the float64 reference, on a device with WebGPU's default limits. Tolerance: errRatio ≤ 1e-5
 * (f32 sums against float64, as for every matmul; f16 weights against the reference on the same
 * f16-rounded weights). The page is `tests/browser/kernel_page.ts`, bundled with `deno bundle`
 * and served on loopback. Skipped with a message when Chromium is absent.
 */
import { assert, assertEquals } from "@std/assert";
import { bundleForBrowser, serveDir } from "../scripts/web.ts";
import { chromiumSkip, hasChromium, launch, offlinePage } from "./_browser.ts";
import type { PageReport } from "./browser/kernel_page.ts";

const ROOT = new URL("../", import.meta.url).pathname;

/** Bundle the page module and write it with an index.html into a fresh folder. */
async function buildPage(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "rwkv-kernel-page-" });
  await bundleForBrowser("tests/browser/kernel_page.ts", `${dir}/main.js`);
  await Deno.writeTextFile(
    `${dir}/index.html`,
    '<!DOCTYPE html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">' +
      '<script type="module" src="main.js"></script></head><body></body></html>\n',
  );
  return dir;
}

/** Every shader's text, keyed by stem (the page has no file system). */
async function shaderTexts(): Promise<Record<string, string>> {
  const texts: Record<string, string> = {};
  for await (const e of Deno.readDir(`${ROOT}shaders`)) {
    if (e.isFile && e.name.endsWith(".wgsl")) {
      texts[e.name.slice(0, -5)] = await Deno.readTextFile(`${ROOT}shaders/${e.name}`);
    }
  }
  return texts;
}

Deno.test({
  name: `subgroup GEMV in headless Chromium vs reference${hasChromium ? "" : ` (${chromiumSkip})`}`,
  ignore: !hasChromium,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await buildPage();
    const server = serveDir(dir, { port: 0, quiet: true });
    const origin = `http://127.0.0.1:${server.addr.port}/`;
    const browser = await launch();
    try {
      const { page, log } = await offlinePage(browser, [origin]);
      await page.goto(`${origin}index.html`);
      await page.waitForFunction(() => "runKernelCheck" in globalThis, { timeout: 30_000 });
      const shaders = await shaderTexts();
      const r = await page.evaluate(
        (s) =>
          (globalThis as unknown as {
            runKernelCheck: (s: Record<string, string>) => Promise<unknown>;
          }).runKernelCheck(s),
        shaders,
      ) as PageReport;
      console.log(`Chromium adapter features: ${r.features.join(", ")}`);
      console.log(`subgroup sizes ${r.subgroupSizes.join("–")}`);
      assertEquals(log.errors, [], "page errors");
      assert(
        r.features.includes("subgroups") && r.gemv,
        'this Chromium\'s WebGPU adapter offers no "subgroups": the real-subgroups GEMV cannot ' +
          "be checked here (Debian's chromium 150 on SwiftShader does offer it)",
      );
      for (const [dtype, c] of Object.entries(r.gemv)) {
        for (const p of c.products) assert(p.errRatio <= 1e-5, `${p.tag}: errRatio ${p.errRatio}`);
        for (const ran of c.ran) assert(/matmul\.gemv/.test(ran), `kernels that ran: ${ran}`);
        if (dtype === "f16") {
          assert(c.products.some((p) => (p.f16Gap ?? 0) > 1e-6), "f16 weights equal f32 ones?");
        }
        console.log(
          `gemv (subgroups, Chromium): ${dtype} worst errRatio ${c.worst.toExponential(2)} over ` +
            `${c.products.length} products; kernels: ${c.ran[0] ?? "(no timestamps)"}`,
        );
      }
    } finally {
      await browser.close();
      await server.shutdown();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
