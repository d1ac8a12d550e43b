/**
 * Headless Chromium for page tests (puppeteer-core, Debian's chromium with its SwiftShader
 * WebGPU): launch, block every request outside allowed origins (the network "off"), and collect
 * console errors, page errors and blocked requests. Tests skip with a message when Chromium is
 * missing (`apt-get install chromium`).
 */
import puppeteer from "puppeteer-core";
import type { Browser, Page } from "puppeteer-core";

/** Debian's Chromium binary (the /usr/bin/chromium wrapper fails a shell test). */
export const CHROMIUM = Deno.env.get("RWKV_CHROMIUM") ?? "/usr/lib/chromium/chromium";

/** Whether the Chromium binary exists. */
export const hasChromium: boolean = (() => {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
})();

/** Why browser tests are skipped, or "" when they run. */
export const chromiumSkip = hasChromium
  ? ""
  : `browser tests skipped: ${CHROMIUM} not found (apt-get install chromium, or set RWKV_CHROMIUM)`;

/** Launch headless Chromium with WebGPU on. */
export function launch(): Promise<Browser> {
  return puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--enable-unsafe-webgpu", "--disable-gpu-sandbox"],
  });
}

/** What a page did that a test may want to fail on. */
export interface PageLog {
  /** console.error messages and uncaught page errors */
  errors: string[];
  /** every console message (type: text) */
  messages: string[];
  /** requests refused because they left the allowed origins */
  blocked: string[];
}

/**
 * Open a page whose requests may only go to `allowed` URL prefixes (e.g. `file://` or
 * `http://127.0.0.1:PORT/`), collecting errors.
 */
export async function offlinePage(browser: Browser, allowed: string[]): Promise<{
  page: Page;
  log: PageLog;
}> {
  const page = await browser.newPage();
  const log: PageLog = { errors: [], messages: [], blocked: [] };
  await page.setRequestInterception(true);
  page.on("request", (req) => {
    const url = req.url();
    if (
      url.startsWith("data:") || url.startsWith("blob:") || allowed.some((a) => url.startsWith(a))
    ) {
      void req.continue();
    } else {
      log.blocked.push(url);
      void req.abort("internetdisconnected");
    }
  });
  page.on("console", (m) => {
    log.messages.push(`${m.type()}: ${m.text()}`);
    if (m.type() === "error") log.errors.push(m.text());
  });
  page.on("pageerror", (e) => log.errors.push(`page error: ${(e as Error).message ?? e}`));
  return { page, log };
}
