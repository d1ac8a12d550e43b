/**
 * SVG → PNG with resvg, using the DejaVu Sans fonts shipped by the `dejavu-fonts-ttf` npm
 * package (system fonts are never consulted), so text renders the same on every machine
 * without a browser.
 *
 * Backend: the native `@resvg/resvg-js` addon (~0.1 s per figure; needs `--allow-ffi`,
 * which `deno jupyter` and `-A` grant), falling back to `@resvg/resvg-wasm` (about 5–10×
 * slower, needs only `--allow-read`) when the addon cannot be loaded.
 *
 * @module
 */
// `node:module` is imported lazily so that a browser bundle of code that imports this file
// (the web demo imports the tuner, which imports the plot layer) loads without it.
type NodeRequire = ((id: string) => unknown) & { resolve(id: string): string };
let requireFn: NodeRequire | undefined;

async function nodeRequire(): Promise<NodeRequire> {
  if (!requireFn) {
    const { createRequire } = await import("node:module");
    requireFn = createRequire(import.meta.url) as unknown as NodeRequire;
  }
  return requireFn;
}

/** Which resvg build renders PNGs. */
export type PngBackend = "native" | "wasm";

type Render = (svg: string, scale: number) => Uint8Array;

const loaded: Partial<Record<PngBackend, Promise<Render>>> = {};
let chosen: Promise<{ backend: PngBackend; render: Render }> | null = null;

async function resolvePackageFile(spec: string): Promise<string> {
  const require = await nodeRequire();
  try {
    return require.resolve(spec);
  } catch (e) {
    throw new Error(
      `cannot find ${spec} (${(e as Error).message.split("\n")[0]}). Install the npm ` +
        `dependencies with \`npm install\` in the project root.`,
    );
  }
}

async function fontFiles(): Promise<string[]> {
  const pkg = await resolvePackageFile("dejavu-fonts-ttf/package.json");
  const dir = pkg.replace(/package\.json$/, "ttf/");
  return [dir + "DejaVuSans.ttf", dir + "DejaVuSans-Bold.ttf"];
}

const FONT_OPTS = { defaultFontFamily: "DejaVu Sans", sansSerifFamily: "DejaVu Sans" };

interface ResvgLike {
  render(): { asPng(): Uint8Array; free?(): void };
  free?(): void;
}
type ResvgCtor = new (svg: string, opts: unknown) => ResvgLike;

function draw(R: ResvgCtor, svg: string, opts: unknown): Uint8Array {
  const r = new R(svg, opts);
  try {
    const img = r.render();
    try {
      return new Uint8Array(img.asPng());
    } finally {
      img.free?.();
    }
  } finally {
    r.free?.();
  }
}

function loadNative(): Promise<Render> {
  return Promise.resolve().then(async () => {
    const files = await fontFiles();
    const require = await nodeRequire();
    const { Resvg } = require("@resvg/resvg-js") as { Resvg: ResvgCtor };
    return (svg: string, scale: number) =>
      draw(Resvg, svg, {
        fitTo: { mode: "zoom", value: scale },
        imageRendering: 1, // nearest neighbour: heatmap cells stay crisp
        background: "#ffffff",
        font: { fontFiles: files, loadSystemFonts: false, ...FONT_OPTS },
      });
  });
}

async function loadWasm(): Promise<Render> {
  const mod = await import("@resvg/resvg-wasm");
  const paths = [await resolvePackageFile("@resvg/resvg-wasm/index_bg.wasm"), ...await fontFiles()];
  const [wasm, ...fonts] = await Promise.all(paths.map((p) => Deno.readFile(p)));
  await mod.initWasm(wasm);
  return (svg: string, scale: number) =>
    draw(mod.Resvg as unknown as ResvgCtor, svg, {
      fitTo: { mode: "zoom", value: scale },
      imageRendering: 1,
      background: "#ffffff",
      font: { fontBuffers: fonts, ...FONT_OPTS },
    });
}

function load(backend: PngBackend): Promise<Render> {
  const p = loaded[backend] ??= backend === "native" ? loadNative() : loadWasm();
  p.catch(() => delete loaded[backend]);
  return p;
}

/** Pick the backend once: native, else wasm (with a one-line warning). */
function pick(): Promise<{ backend: PngBackend; render: Render }> {
  chosen ??= load("native").then(
    (render) => ({ backend: "native" as const, render }),
    async (e) => {
      const render = await load("wasm");
      console.warn(
        `plot: native resvg unavailable (${String(e?.message ?? e).split("\n")[0]}); ` +
          `using the slower wasm renderer. Run with --allow-ffi (or -A) for speed.`,
      );
      return { backend: "wasm" as const, render };
    },
  ).catch((e) => {
    chosen = null;
    throw e;
  });
  return chosen;
}

/** The backend that renders PNGs here ("native" or "wasm"); loads it if needed. */
export async function pngBackend(): Promise<PngBackend> {
  return (await pick()).backend;
}

/**
 * Rasterise an SVG document to PNG bytes.
 *
 * @param svg SVG text (every font family falls back to DejaVu Sans)
 * @param scale output pixels per SVG px (default 2 for sharp text)
 * @param backend force "native" or "wasm" (default: native when it loads)
 * @returns PNG file bytes
 * @example
 * ```ts
 * import { svgToPng } from "./png.ts";
 * const png = await svgToPng('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>');
 * if (png[1] !== 0x50) throw new Error("not a PNG");
 * ```
 */
export async function svgToPng(
  svg: string,
  scale = 2,
  backend?: PngBackend,
): Promise<Uint8Array> {
  if (!(scale > 0 && scale <= 8)) {
    throw new RangeError(`png scale ${scale}: use a value in (0, 8]`);
  }
  const render = backend ? await load(backend) : (await pick()).render;
  return render(svg, scale);
}
