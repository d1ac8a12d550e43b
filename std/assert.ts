/**
 * A small stand-in for `@std/assert` (JSR is unreachable here): the assertions the tests use,
 * built on `node:assert`. Mapped as `@std/assert` in deno.json.
 *
 * @module
 */
import nodeAssert from "node:assert/strict";

/** Assert that `cond` is truthy. */
export function assert(cond: unknown, msg?: string): asserts cond {
  if (!cond) throw new nodeAssert.AssertionError({ message: msg ?? "assertion failed" });
}

/** Deep strict equality. */
export function assertEquals<T>(actual: unknown, expected: T, msg?: string): void {
  nodeAssert.deepStrictEqual(actual, expected, msg);
}

/** `Object.is(actual, expected)`: the same primitive or the same object. */
export function assertStrictEquals<T>(actual: unknown, expected: T, msg?: string): void {
  nodeAssert.strictEqual(actual, expected, msg);
}

/** `!Object.is(actual, expected)`. */
export function assertNotStrictEquals(actual: unknown, expected: unknown, msg?: string): void {
  nodeAssert.notStrictEqual(actual, expected, msg);
}

/** Deep strict inequality. */
export function assertNotEquals(actual: unknown, expected: unknown, msg?: string): void {
  nodeAssert.notDeepStrictEqual(actual, expected, msg);
}

/** `|actual − expected| ≤ tolerance` (default 1e-7). */
export function assertAlmostEquals(
  actual: number,
  expected: number,
  tolerance = 1e-7,
  msg?: string,
): void {
  if (!(Math.abs(actual - expected) <= tolerance)) {
    throw new nodeAssert.AssertionError({
      message: msg ??
        `expected ${actual} to be within ${tolerance} of ${expected} (Δ ${
          Math.abs(actual - expected)
        })`,
    });
  }
}

/** The string matches the regular expression. */
export function assertMatch(actual: string, re: RegExp, msg?: string): void {
  nodeAssert.match(actual, re, msg);
}

/** The string does not match the regular expression. */
export function assertNotMatch(actual: string, re: RegExp, msg?: string): void {
  nodeAssert.doesNotMatch(actual, re, msg);
}

/** Fail at once with `msg`. */
export function fail(msg?: string): never {
  throw new nodeAssert.AssertionError({ message: msg ?? "failed" });
}

/** The string contains `expected`. */
export function assertStringIncludes(actual: string, expected: string, msg?: string): void {
  if (!actual.includes(expected)) {
    throw new nodeAssert.AssertionError({
      message: msg ?? `expected ${JSON.stringify(actual)} to include ${JSON.stringify(expected)}`,
    });
  }
}

/** The value is neither null nor undefined. */
export function assertExists<T>(actual: T, msg?: string): asserts actual is NonNullable<T> {
  if (actual === null || actual === undefined) {
    throw new nodeAssert.AssertionError({ message: msg ?? `expected a value, got ${actual}` });
  }
}

// deno-lint-ignore no-explicit-any
type ErrorClass = abstract new (...args: any[]) => Error;

function check(e: unknown, cls?: ErrorClass, includes?: string): Error {
  if (!(e instanceof Error)) throw new nodeAssert.AssertionError({ message: `threw ${e}` });
  if (cls && !(e instanceof cls)) {
    throw new nodeAssert.AssertionError({
      message: `expected ${cls.name}, got ${(e as Error).name}: ${(e as Error).message}`,
    });
  }
  if (includes !== undefined && !e.message.includes(includes)) {
    throw new nodeAssert.AssertionError({
      message: `expected the message to include ${JSON.stringify(includes)}, got: ${e.message}`,
    });
  }
  return e;
}

/** `fn` throws (optionally an instance of `cls` whose message includes `includes`). */
export function assertThrows(fn: () => unknown, cls?: ErrorClass, includes?: string): Error {
  try {
    fn();
  } catch (e) {
    return check(e, cls, includes);
  }
  throw new nodeAssert.AssertionError({ message: "expected the function to throw" });
}

/** `fn` rejects (optionally an instance of `cls` whose message includes `includes`). */
export async function assertRejects(
  fn: () => PromiseLike<unknown>,
  cls?: ErrorClass,
  includes?: string,
): Promise<Error> {
  try {
    await fn();
  } catch (e) {
    return check(e, cls, includes);
  }
  throw new nodeAssert.AssertionError({ message: "expected the promise to reject" });
}

/**
 * `fn` throws an Error whose message matches `re`, the check `node:assert`'s
 * `throws(fn, /re/)` makes. Not in JSR's `@std/assert`: a project addition.
 */
export function assertThrowsMatch(fn: () => unknown, re: RegExp, msg?: string): Error {
  const e = assertThrows(fn);
  assertMatch(e.message, re, msg);
  return e;
}

/** `fn` rejects with an Error whose message matches `re`. A project addition, as above. */
export async function assertRejectsMatch(
  fn: () => PromiseLike<unknown>,
  re: RegExp,
  msg?: string,
): Promise<Error> {
  const e = await assertRejects(fn);
  assertMatch(e.message, re, msg);
  return e;
}

/** `actual > expected`. */
export function assertGreater(actual: number, expected: number, msg?: string): void {
  assert(actual > expected, msg ?? `expected ${actual} > ${expected}`);
}

/** `actual < expected`. */
export function assertLess(actual: number, expected: number, msg?: string): void {
  assert(actual < expected, msg ?? `expected ${actual} < ${expected}`);
}

/** `actual ≤ expected`. */
export function assertLessOrEqual(actual: number, expected: number, msg?: string): void {
  assert(actual <= expected, msg ?? `expected ${actual} ≤ ${expected}`);
}
