/**
 * The test-time entry point (`@rwkv7/state-tuning/test-time`): guided test-time scaling
 * (docs/MATH.md §8). Per test item a guide (a local RWKV-7, the student itself, or an
 * OpenAI-compatible endpoint) continues the prompt, the student's state takes K steps on that
 * continuation, and the harness scores the answer from the tuned state; the guide's cost is
 * recorded beside the accuracy.
 *
 * ```ts ignore
 * import { prepareTask, Scorer } from "@rwkv7/state-tuning/eval";
 * import { guidedEvaluate, LocalGuide } from "@rwkv7/state-tuning/test-time";
 * const scorer = new Scorer(model, tokenizer);
 * const task = await prepareTask("skill_answer", { dataDir: "", skill: "reverse", limit: 50 });
 * const guide = new LocalGuide(model, tokenizer, { name: "self", maxTokens: 16 });
 * const run = await guidedEvaluate(scorer, task, guide, { steps: 2, lr: 0.1 });
 * console.log(run.result.metrics, run.total);
 * ```
 *
 * @module
 */
export * from "./guide.ts";
export {
  LocalGuide,
  type LocalGuideOptions,
  LocalGuideOptionsSchema,
  topLogprobs,
} from "./local_guide.ts";
export { HttpGuide, type HttpGuideOptions, HttpGuideOptionsSchema } from "./http_guide.ts";
export { PromptedGuide, type PromptedGuideOptions } from "./prompted_guide.ts";
export * from "./tts.ts";
export * from "./scaling.ts";
