/**
 * The layers run one way (docs/ARCHITECTURE.md, "Layers"): this test walks every static import
 * under lib/ and mod.ts and fails on an import from a lower layer into a higher one, and on any
 * import cycle between files, so the layering cannot rot. Allowed exceptions live in
 * {@link ALLOWED} and are documented in ARCHITECTURE.md.
 */
import { assert, assertEquals } from "@std/assert";

/** Folder under lib/ → layer rank (a folder may import only ranks ≤ its own). */
export const RANKS: Record<string, number> = {
  util: 0,
  gpu: 1,
  plot: 1,
  tokenizer: 1,
  io: 1,
  ref: 2,
  kernels: 2,
  model: 3,
  formats: 3,
  generate: 4,
  train: 4,
  eval: 4,
  parts: 5,
  bench: 5,
  experiments: 6,
  serve: 6,
  test_time: 6,
};

/** Files every layer may import (shared type definitions). */
const SHARED = new Set(["lib/model/types.ts", "lib/model/dtype.ts"]);

/** Documented exceptions, "from -> to" (see ARCHITECTURE.md). */
const ALLOWED = new Set<string>([]);

const root = new URL("../", import.meta.url).pathname;
const IMPORT = /^\s*(?:import|export)\b[^'"]*?from\s*["'](\.[^"']+)["']/gm;

async function walk(dir: string, out: string[] = []): Promise<string[]> {
  for await (const e of Deno.readDir(root + dir)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) await walk(p, out);
    else if (e.name.endsWith(".ts")) out.push(p);
  }
  return out;
}

function resolve(from: string, spec: string): string {
  const parts = from.split("/").slice(0, -1);
  for (const s of spec.split("/")) {
    if (s === "..") parts.pop();
    else if (s !== ".") parts.push(s);
  }
  return parts.join("/");
}

/** file → the project files it imports (relative specifiers only). */
async function importGraph(): Promise<Map<string, string[]>> {
  const files = [...await walk("lib"), "mod.ts"];
  const g = new Map<string, string[]>();
  for (const f of files) {
    // doc comments hold runnable examples that import their own module: skip comments
    const text = (await Deno.readTextFile(root + f)).replace(/\/\*[\s\S]*?\*\//g, "");
    const deps = [...text.matchAll(IMPORT)].map((m) => resolve(f, m[1]));
    g.set(f, deps.filter((d) => d.endsWith(".ts")));
  }
  return g;
}

const layerOf = (f: string) => f.startsWith("lib/") ? f.split("/")[1] : undefined;

/** Strongly connected components of size > 1 (or self-loops): the import cycles. */
function cycles(g: Map<string, string[]>): string[][] {
  let index = 0;
  const idx = new Map<string, number>(), low = new Map<string, number>();
  const stack: string[] = [], on = new Set<string>(), out: string[][] = [];
  const visit = (v: string) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of g.get(v) ?? []) {
      if (!g.has(w)) continue;
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const comp: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || (g.get(v) ?? []).includes(v)) out.push(comp.sort());
    }
  };
  for (const v of g.keys()) if (!idx.has(v)) visit(v);
  return out;
}

Deno.test("layers: every folder under lib/ has a rank", async () => {
  const g = await importGraph();
  const unknown = [...new Set([...g.keys()].map(layerOf).filter((l) => l && !(l in RANKS)))];
  assertEquals(unknown, [], `add these folders to RANKS and to ARCHITECTURE.md: ${unknown}`);
});

Deno.test("layers: no import runs up a layer", async () => {
  const g = await importGraph();
  const bad: string[] = [];
  for (const [f, deps] of g) {
    const a = layerOf(f);
    if (!a) continue;
    for (const d of deps) {
      const b = layerOf(d);
      if (!b || a === b || SHARED.has(d) || ALLOWED.has(`${f} -> ${d}`)) continue;
      if (RANKS[b] > RANKS[a]) bad.push(`${f} -> ${d}`);
    }
  }
  assertEquals(bad, [], "lower layers import higher ones (move the shared piece down)");
});

Deno.test("layers: no import cycles between files", async () => {
  const c = cycles(await importGraph());
  assertEquals(c.map((x) => x.join(" <-> ")), [], "import cycles");
});

Deno.test("layers: the cycle finder sees a planted cycle", () => {
  const g = new Map([["a", ["b"]], ["b", ["c"]], ["c", ["a"]], ["d", ["a"]]]);
  const c = cycles(g);
  assertEquals(c, [["a", "b", "c"]]);
  assert(cycles(new Map([["a", ["b"]], ["b", []]])).length === 0);
});
