/**
 * Build the demo as a static page that runs in a browser tab (WebGPU), and optionally serve it.
 *
 *     deno task web [--out results/web] [--model models/default.safetensors]
 *     deno task web --serve [--port 8765]
 *
 * The folder holds index.html, main.js (`deno bundle --platform browser` of web/main.ts),
 * plotly.min.js, shaders/*.wgsl with shaders/index.json, and models/default.safetensors; the
 * page fetches them beside itself, so any static server works (WebGPU needs https or
 * localhost). Page parameters go in the URL: `index.html?skill=sort&steps=20&seed=1`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { writePlotlyJs } from "../lib/plot/html.ts";
import { DEFAULT_MODEL, parseWith, runMain } from "./_cli.ts";

const ROOT = new URL("../", import.meta.url).pathname;

const USAGE = `Usage: deno task web [--out DIR] [--model FILE] [--serve] [--port N] [--host H]

Builds the in-browser demo (state tuning on the tab's WebGPU) into DIR.

  --out     output folder (default results/web)
  --model   byte-level RWKV-7 model copied beside the page (default models/default.safetensors)
  --serve   then serve DIR on http://HOST:PORT/ until interrupted
  --port    port for --serve (default 8765; 0 = any free port)
  --host    address for --serve (default 127.0.0.1)

Open http://127.0.0.1:8765/?steps=30&skill=reverse (parameters: skill, steps, batch, lrInit,
lrFinal, trainItems, testItems, seed, model, autorun).`;

const Args = z.object({
  out: z.string().default("results/web"),
  model: z.string().default(DEFAULT_MODEL),
  serve: z.boolean().default(false),
  port: z.coerce.number().int().min(0).max(65535).default(8765),
  host: z.string().default("127.0.0.1"),
});

/** What {@link buildWeb} wrote. */
export interface WebBuild {
  dir: string;
  files: string[];
  bundleBytes: number;
}

/**
 * Bundle a module of this repository (`entry`, relative to the root) for a browser page with
 * `deno bundle --platform browser`.
 *
 * @throws Error with deno bundle's output when bundling fails
 */
export async function bundleForBrowser(entry: string, outFile: string): Promise<void> {
  const bundle = await new Deno.Command(Deno.execPath(), {
    args: ["bundle", "--quiet", "--platform", "browser", "-o", outFile, `${ROOT}${entry}`],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!bundle.success) {
    const dec = new TextDecoder();
    throw new Error(
      `deno bundle of ${entry} failed:\n${dec.decode(bundle.stderr)}${dec.decode(bundle.stdout)}`,
    );
  }
}

/**
 * Build the page into `out`.
 *
 * @throws Error with deno bundle's output when bundling fails
 */
export async function buildWeb(
  out = "results/web",
  model: string = DEFAULT_MODEL,
): Promise<WebBuild> {
  const dir = out.replace(/\/$/, "");
  await Deno.mkdir(`${dir}/shaders`, { recursive: true });
  await Deno.mkdir(`${dir}/models`, { recursive: true });
  await bundleForBrowser("web/main.ts", `${dir}/main.js`);
  const files = ["index.html", "main.js"];
  await Deno.copyFile(`${ROOT}web/index.html`, `${dir}/index.html`);
  await writePlotlyJs(dir);
  files.push("plotly.min.js");
  const shaders: string[] = [];
  for await (const e of Deno.readDir(`${ROOT}shaders`)) {
    if (e.isFile && e.name.endsWith(".wgsl")) shaders.push(e.name.slice(0, -5));
  }
  shaders.sort();
  for (const s of shaders) {
    await Deno.copyFile(`${ROOT}shaders/${s}.wgsl`, `${dir}/shaders/${s}.wgsl`);
  }
  await Deno.writeTextFile(`${dir}/shaders/index.json`, JSON.stringify(shaders) + "\n");
  files.push(...shaders.map((s) => `shaders/${s}.wgsl`), "shaders/index.json");
  try {
    await Deno.copyFile(model, `${dir}/models/default.safetensors`);
  } catch (e) {
    throw new Error(
      `cannot copy the model ${model} (${(e as Error).message}); rebuild the default model ` +
        "with `deno task pretrain-default` or pass --model",
    );
  }
  files.push("models/default.safetensors");
  return { dir, files, bundleBytes: (await Deno.stat(`${dir}/main.js`)).size };
}

const TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  json: "application/json",
  wgsl: "text/plain; charset=utf-8",
  css: "text/css",
  png: "image/png",
  svg: "image/svg+xml",
  ipynb: "application/json",
};

/**
 * Serve a folder read-only over HTTP (GET/HEAD; `..` refused; `/` → index.html).
 *
 * @param opts port (0 = any free one) and host (default 127.0.0.1)
 */
export function serveDir(
  dir: string,
  opts: { port?: number; host?: string; quiet?: boolean } = {},
): Deno.HttpServer<Deno.NetAddr> {
  const root = dir.replace(/\/$/, "");
  return Deno.serve({
    hostname: opts.host ?? "127.0.0.1",
    port: opts.port ?? 8765,
    onListen: opts.quiet ? () => {} : undefined,
  }, async (req) => {
    if (req.method !== "GET" && req.method !== "HEAD") {
      return new Response("method not allowed", { status: 405 });
    }
    let path = decodeURIComponent(new URL(req.url).pathname);
    if (path.split("/").includes("..")) return new Response("bad path", { status: 400 });
    if (path.endsWith("/")) path += "index.html";
    try {
      const file = await Deno.open(`${root}${path}`, { read: true });
      const ext = path.slice(path.lastIndexOf(".") + 1);
      return new Response(req.method === "HEAD" ? null : file.readable, {
        headers: { "content-type": TYPES[ext] ?? "application/octet-stream" },
      });
    } catch {
      return new Response(`not found: ${path}`, { status: 404 });
    }
  });
}

if (import.meta.main) {
  await runMain(USAGE, async () => {
    const s = { type: "string" } as const;
    const { values } = parseArgs({
      options: {
        out: s,
        model: s,
        port: s,
        host: s,
        serve: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
    if (values.help) return console.log(USAGE);
    const a = parseWith(Args, values);
    const b = await buildWeb(a.out, a.model);
    console.log(
      `built ${b.dir}/ (${b.files.length} files, main.js ${(b.bundleBytes / 1024).toFixed(0)} KiB)`,
    );
    if (!a.serve) {
      return console.log(`serve it with: deno task web --serve  (or any static server)`);
    }
    const server = serveDir(b.dir, { port: a.port, host: a.host, quiet: true });
    console.log(`serving ${b.dir}/ on http://${a.host}:${server.addr.port}/ (Ctrl-C stops)`);
    console.log(`  e.g. http://${a.host}:${server.addr.port}/?steps=30&skill=reverse`);
    await server.finished;
  });
}
