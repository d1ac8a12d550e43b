/**
 * The public surface stays small and deliberate: the root module holds what a notebook user
 * types, every other public name lives in one of deno.json's `exports` entry points, the
 * internals leave through none of them, and the notebooks import only entry points.
 */
import { assert, assertEquals } from "@std/assert";

const root = new URL("../", import.meta.url);

/** deno.json's `exports`: subpath → file (relative to the root). */
const EXPORTS: Record<string, string> = JSON.parse(
  await Deno.readTextFile(new URL("deno.json", root)),
).exports;

/** Most runtime names the root module may export. */
const ROOT_LIMIT = 80;

/** Helpers that stay inside the library: no entry point re-exports them. */
const INTERNALS = [
  "crc32",
  "PyTuple",
  "PyGlobal",
  "describe",
  "TORCH_STORAGE_TYPES",
  "ZIP_ALIGNMENT",
  "MAX_ENTRY_BYTES",
  "fits",
  "GB8",
  "DEFAULT_BINDING_BYTES",
  "formatBytes",
  "slug",
  "recordStateCopy",
  "sampleIndices",
  "parsePythonLiteral",
  "roundUp",
  "checkPrompt",
  "drainGeneration",
  "TokenStream",
  "recordToken",
  "parseSamplingOptions",
  "CHECKPOINT_JSON",
  "PREVIOUS_JSON",
  "BatchOrder",
  "StepRunner",
  "klRows",
  "teacherRows",
  "CpuAdam",
  "StateGrad",
];

const entries = async () =>
  await Promise.all(
    Object.entries(EXPORTS).map(async ([sub, file]) => ({
      sub,
      file,
      names: Object.keys(await import(new URL(file, root).href)),
    })),
  );

Deno.test("public api: the root module exports fewer than 80 runtime names", async () => {
  const names = Object.keys(await import(new URL("mod.ts", root).href));
  assert(
    names.length < ROOT_LIMIT,
    `mod.ts exports ${names.length} runtime names (limit ${ROOT_LIMIT}): move the advanced ones ` +
      `to a subpath entry point (deno.json "exports")`,
  );
  for (const n of ["getGpu", "loadModel", "GpuModel", "tuneState", "generateText", "saveState"]) {
    assert(names.includes(n), `mod.ts lacks ${n}`);
  }
});

Deno.test("public api: every deno.json export resolves and exports something", async () => {
  assertEquals(EXPORTS["."], "./mod.ts");
  for (const sub of ["./eval", "./formats", "./serve", "./test-time", "./kernels"]) {
    assert(sub in EXPORTS, `deno.json exports lacks ${sub}`);
  }
  for (const e of await entries()) {
    assert(e.names.length > 0, `${e.sub} (${e.file}) exports no runtime name`);
    const text = await Deno.readTextFile(new URL(e.file, root));
    const doc = text.slice(0, text.indexOf("@module"));
    assert(text.includes("@module") && doc.includes("```ts"), `${e.file}: @module doc example`);
  }
});

Deno.test("public api: no entry point exports the internals", async () => {
  const leaks = (await entries()).flatMap((e) =>
    e.names.filter((n) => INTERNALS.includes(n)).map((n) => `${e.sub}: ${n}`)
  );
  assertEquals(leaks, [], "internal helpers on the public surface (import the lib file instead)");
});

Deno.test("public api: GpuBackward comes with Recorder and the buffers it needs", async () => {
  const withBackward = (await entries()).filter((e) => e.names.includes("GpuBackward"));
  assert(withBackward.length > 0, "no entry point exports GpuBackward");
  for (const e of withBackward) {
    for (const n of ["Recorder", "createGradWeights", "readF32", "createStorage"]) {
      assert(e.names.includes(n), `${e.sub} exports GpuBackward without ${n}`);
    }
  }
});

Deno.test("public api: notebooks import only entry points", async () => {
  const allowed = new Set(Object.values(EXPORTS).map((f) => new URL(f, root).href));
  const bad: string[] = [];
  for await (const e of Deno.readDir(new URL("notebooks/", root))) {
    if (!e.name.endsWith(".ipynb")) continue;
    const nbUrl = new URL(`notebooks/${e.name}`, root);
    const nb = JSON.parse(await Deno.readTextFile(nbUrl));
    for (const cell of nb.cells) {
      if (cell.cell_type !== "code") continue;
      const src = [cell.source].flat().join("");
      const specs = [...src.matchAll(/(?:from\s*|import\()\s*["'](\.[^"']+)["']/g)].map((m) =>
        m[1]
      );
      for (const s of specs) {
        if (!allowed.has(new URL(s, nbUrl).href)) bad.push(`${e.name}: ${s}`);
      }
    }
  }
  assertEquals(bad, [], "notebooks import a file that is no entry point");
});
