/**
 * Test-suite hygiene: one assertion library. Every test asserts with `@std/assert` (the local
 * std/assert.ts); none imports `node:assert` beside it.
 */
import { assertEquals } from "@std/assert";

Deno.test("hygiene: no test file imports node:assert (use @std/assert)", async () => {
  const dir = new URL("./", import.meta.url);
  const offenders: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (!entry.isFile || !entry.name.endsWith(".ts")) continue;
    const text = await Deno.readTextFile(new URL(entry.name, dir));
    if (/from\s+["']node:assert(\/strict)?["']/.test(text)) offenders.push(entry.name);
  }
  assertEquals(offenders.sort(), [], "these test files import node:assert");
});
