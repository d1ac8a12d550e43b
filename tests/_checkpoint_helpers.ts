/**
 * Helpers shared by the checkpoint tests (`checkpoint_test.ts`, `checkpoint_bad_input_test.ts`):
 * seeded tensors of awkward shapes and hand-made .pth zips.
 *
 * @module
 */
import { Rng } from "./_helpers.ts";
import type { Tensor } from "../lib/model/types.ts";
import { writeZip } from "../lib/model/zip.ts";
import { pickleStateDict } from "../lib/model/pickle_write.ts";
import type { PickleTensorEntry } from "../lib/model/pickle_write.ts";

/** Seeded tensors of every awkward rank: 2-D, a 1×1×n vector, a BININT-sized one, a scalar, 4-D. */
export function someTensors(seed: number): Map<string, Tensor> {
  const rng = new Rng(seed);
  const shapes: Record<string, number[]> = {
    "a.weight": [3, 5],
    "b.vec": [1, 1, 7],
    "c.big": [300, 300], // numel needs BININT
    "d.scalar": [],
    "e.rank4": [2, 1, 3, 2],
  };
  const out = new Map<string, Tensor>();
  for (const [k, shape] of Object.entries(shapes)) {
    out.set(k, { shape, data: rng.f32(shape.reduce((a, b) => a * b, 1), -3, 3) });
  }
  return out;
}

/** A pth zip with a hand-made pickle and storages. */
export function pthWith(
  entries: PickleTensorEntry[],
  storages: Record<string, Uint8Array>,
): Uint8Array {
  return writeZip([
    { name: "archive/data.pkl", data: pickleStateDict(entries) },
    ...Object.entries(storages).map(([k, data]) => ({ name: `archive/data/${k}`, data })),
    { name: "archive/version", data: new TextEncoder().encode("3\n") },
  ]);
}

/** The bytes of `xs` as float32. */
export const f32Bytes = (xs: number[]) => new Uint8Array(new Float32Array(xs).buffer);
