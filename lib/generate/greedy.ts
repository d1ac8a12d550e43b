/**
 * Batched greedy completion on the GPU: prompts of equal length run as one batch, then every
 * new token of the batch is one forward (one readback per token for the whole batch).
 *
 * @module
 */
import type { GpuModel } from "../model/gpu_model.ts";
import { cloneState, type RwkvState } from "../model/types.ts";

/** Index of the largest value in `row` (first on ties). */
function argmaxRow(a: Float32Array, off: number, n: number): number {
  let best = 0;
  for (let j = 1; j < n; j++) if (a[off + j] > a[off + best]) best = j;
  return best;
}

/**
 * Greedy continuations of `prompts` from `init` (zero state when omitted).
 *
 * @param maxNew most tokens generated per prompt
 * @param stop token that ends a continuation (not included), e.g. 10 for "\n" in byte models
 * @returns the generated token ids per prompt, in input order
 * @example
 * ```ts ignore
 * const outs = await greedyComplete(model, [[104, 105, 61]], undefined, 8, 10);
 * ```
 */
export async function greedyComplete(
  model: GpuModel,
  prompts: number[][],
  init: RwkvState | undefined,
  maxNew: number,
  stop?: number,
): Promise<number[][]> {
  const V = model.config.vocabSize;
  const out: number[][] = prompts.map(() => []);
  const groups = new Map<number, number[]>();
  prompts.forEach((p, i) => {
    if (p.length === 0) throw new RangeError(`prompt ${i} is empty`);
    groups.set(p.length, [...(groups.get(p.length) ?? []), i]);
  });
  for (const idx of groups.values()) {
    const B = idx.length;
    const state = init
      ? model.uploadState(Array.from({ length: B }, () => cloneState(init)))
      : model.createState(B);
    try {
      let logits = await model.forward(idx.map((i) => prompts[i]), state, { logits: "last" });
      const done = new Array(B).fill(false);
      for (let step = 0; step < maxNew; step++) {
        const next = idx.map((_, b) => argmaxRow(logits, b * V, V));
        next.forEach((t, b) => {
          if (done[b]) return;
          if (t === stop) done[b] = true;
          else out[idx[b]].push(t);
        });
        if (done.every(Boolean) || step === maxNew - 1) break;
        logits = await model.forward(next.map((t) => [t]), state, { logits: "last" });
      }
    } finally {
      state.destroy();
    }
  }
  return out;
}
