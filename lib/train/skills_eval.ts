/**
 * Accuracy of a model on one synthetic skill: greedy decoding of the answer after
 * `input=` (with or without the instruction line), exact match up to the newline.
 * The CPU reference version (used for the pretraining report); the GPU one lives in the demo.
 *
 * @module
 */
import type { RwkvState, RwkvWeights } from "../model/types.ts";
import { refForward } from "../ref/model.ts";
import { Rng } from "../util/rng.ts";
import { makeItem, type Skill } from "./synthetic.ts";
import type { GpuModel } from "../model/gpu_model.ts";
import { greedyComplete } from "../generate/greedy.ts";

/** Greedy argmax of a logits row. */
export function argmax(logits: ArrayLike<number>, from = 0, to = logits.length): number {
  let best = from;
  for (let j = from + 1; j < to; j++) if (logits[j] > logits[best]) best = j;
  return best - from;
}

/**
 * Fraction of `n` seeded items of `skill` answered exactly (byte-level models).
 *
 * @param withInstruction prefix the instruction line
 * @param state initial state per layer (zero when omitted)
 */
export function skillAccuracy(
  weights: RwkvWeights,
  skill: Skill,
  n: number,
  seed: number,
  withInstruction: boolean,
  state?: RwkvState,
): number {
  const rng = new Rng(seed);
  const enc = new TextEncoder();
  let ok = 0;
  for (let i = 0; i < n; i++) {
    const item = makeItem(skill, rng);
    const prompt = `${withInstruction ? `${skill}\n` : ""}${item.input}=`;
    let res = refForward(weights, [...enc.encode(prompt)], state, { lastOnly: true });
    let out = "";
    for (let k = 0; k < item.answer.length + 2; k++) {
      const tok = argmax(res.logits);
      if (tok === 10) break;
      out += String.fromCharCode(tok);
      res = refForward(weights, [tok], res.state, { lastOnly: true });
    }
    if (out === item.answer) ok++;
  }
  return ok / n;
}

/** Result of {@link skillAccuracyGpu}. */
export interface SkillEval {
  accuracy: number;
  n: number;
  /** a few examples: prompt, expected and produced answers */
  samples: { prompt: string; expected: string; got: string }[];
}

/**
 * GPU version of {@link skillAccuracy}: batched greedy decoding of `n` seeded items.
 *
 * @param state initial state (e.g. a tuned one); zero when omitted
 */
export async function skillAccuracyGpu(
  model: GpuModel,
  skill: Skill,
  n: number,
  seed: number,
  withInstruction: boolean,
  state?: RwkvState,
): Promise<SkillEval> {
  const rng = new Rng(seed);
  const enc = new TextEncoder(), dec = new TextDecoder();
  const items = Array.from({ length: n }, () => makeItem(skill, rng));
  const prompts = items.map((it) => `${withInstruction ? `${skill}\n` : ""}${it.input}=`);
  const maxNew = Math.max(...items.map((it) => it.answer.length)) + 2;
  const outs = await greedyComplete(
    model,
    prompts.map((p) => [...enc.encode(p)]),
    state,
    maxNew,
    10,
  );
  const got = outs.map((o) => dec.decode(Uint8Array.from(o)));
  const correct = got.filter((g, i) => g === items[i].answer).length;
  return {
    accuracy: correct / n,
    n,
    samples: items.slice(0, 5).map((it, i) => ({
      prompt: prompts[i],
      expected: it.answer,
      got: got[i],
    })),
  };
}
