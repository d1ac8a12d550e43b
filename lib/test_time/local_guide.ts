/**
 * A local RWKV-7 checkpoint as the guide: it continues the prompt on the GPU (greedy, or
 * sampled with a temperature) and keeps, for each generated token, the top-k of the
 * distribution it was drawn from, so a student with the same vocabulary can be aligned to it
 * by KL (docs/MATH.md §5).
 *
 * @module
 */
import { z } from "zod";
import { getGpu, type Gpu } from "../gpu/device.ts";
import { generateText, type GenerationResult, type LanguageModel } from "../generate/generate.ts";
import { GpuModel } from "../model/gpu_model.ts";
import { loadModel } from "../model/load.ts";
import { resolveTokenizer, type Tokenizer } from "../tokenizer/mod.ts";
import {
  addCost,
  type ContinueOptions,
  type Guide,
  type GuideCost,
  GuideError,
  type GuideOutput,
  type TopLogprobs,
  type Vocabulary,
  zeroCost,
} from "./guide.ts";

/** Options of {@link LocalGuide}. */
export const LocalGuideOptionsSchema = z.object({
  /** 0 = greedy. */
  temperature: z.number().min(0).max(2).default(0),
  topP: z.number().gt(0).max(1).default(1),
  /** How many of the most likely tokens to keep per position (the KL target). */
  topK: z.number().int().min(1).max(64).default(8),
  /** Default `maxTokens` of a call. */
  maxTokens: z.number().int().min(1).default(64),
  seed: z.number().int().min(0).default(0),
  /** Name used in reports (default "local"). */
  name: z.string().default("local"),
});
/** Local guide options (input form). */
export type LocalGuideOptions = z.input<typeof LocalGuideOptionsSchema>;

/**
 * The `k` most likely ids of `logits[0..V)` and their log-softmax values (descending).
 *
 * @example
 * ```ts
 * import { topLogprobs } from "./local_guide.ts";
 * const t = topLogprobs(new Float32Array([0, 2, 1]), 2, 3);
 * console.assert(t.ids[0] === 1 && t.ids[1] === 2);
 * ```
 */
export function topLogprobs(logits: Float32Array, k: number, V = logits.length): TopLogprobs {
  let max = -Infinity;
  for (let i = 0; i < V; i++) if (logits[i] > max) max = logits[i];
  let sum = 0;
  for (let i = 0; i < V; i++) sum += Math.exp(logits[i] - max);
  const lse = max + Math.log(sum);
  const ids: number[] = []; // descending by logit
  for (let i = 0; i < V; i++) {
    const x = logits[i];
    if (ids.length === k && x <= logits[ids[k - 1]]) continue;
    let j = ids.length < k ? ids.length : k - 1;
    for (; j > 0 && logits[ids[j - 1]] < x; j--) ids[j] = ids[j - 1];
    ids[j] = i;
  }
  return { ids, logprobs: ids.map((i) => logits[i] - lse) };
}

/**
 * A guide running a local RWKV-7 model. Its outputs carry `tokens` and `top` in the guide's
 * own vocabulary ({@link LocalGuide.vocabulary}); the caller uses them only when that is the
 * student's.
 *
 * @example
 * ```ts ignore
 * const guide = await LocalGuide.load("guide.safetensors", { temperature: 0 });
 * const out = await guide.continue("Question: 2+2?\nAnswer:", { maxTokens: 32 });
 * console.log(out.text, out.cost);
 * await guide.close();
 * ```
 */
export class LocalGuide implements Guide {
  readonly name: string;
  readonly vocabulary: Vocabulary;
  #cost: GuideCost = zeroCost();
  #calls = 0;
  readonly #o: z.output<typeof LocalGuideOptionsSchema>;

  /**
   * @param model the guide model on the GPU (may be the student's own model object)
   * @param tokenizer its tokenizer
   * @param options sampling, top-k, default length
   * @param owned whether {@link close} destroys the model
   */
  constructor(
    readonly model: GpuModel,
    readonly tokenizer: Tokenizer,
    options: LocalGuideOptions = {},
    private readonly owned = false,
  ) {
    this.#o = LocalGuideOptionsSchema.parse(options);
    this.name = this.#o.name;
    this.vocabulary = { name: tokenizer.name, size: tokenizer.vocabSize };
  }

  /**
   * Load a checkpoint (and its tokenizer) as a guide.
   *
   * @param path the checkpoint (.pth or .safetensors)
   * @param options guide options; `tokenizer` as for the CLIs ("bytes" or a vocab path)
   */
  static async load(
    path: string,
    options: LocalGuideOptions & { tokenizer?: string; gpu?: Gpu } = {},
  ): Promise<LocalGuide> {
    const { tokenizer: tokFlag, gpu: given, ...rest } = options;
    const { weights } = await loadModel(path);
    const tok = await resolveTokenizer(path, weights.config.vocabSize, tokFlag);
    const model = await GpuModel.create(given ?? await getGpu(), weights);
    return new LocalGuide(model, tok, { name: `local:${path}`, ...rest }, true);
  }

  /** Running total over every call. */
  get cost(): GuideCost {
    return { ...this.#cost };
  }

  /** Continue `prompt`; `top[i]` is the distribution `tokens[i]` was drawn from. */
  async continue(prompt: string, options: ContinueOptions = {}): Promise<GuideOutput> {
    const t0 = performance.now();
    const ids = this.tokenizer.encode(prompt);
    if (ids.length === 0) throw new GuideError(this.name, "got a prompt that encodes to no tokens");
    const V = Math.min(this.model.config.vocabSize, this.tokenizer.vocabSize);
    const session = this.model.session();
    const top: TopLogprobs[] = [];
    const lm: LanguageModel = {
      vocabSize: session.vocabSize,
      feed: async (tokens) => {
        const logits = await session.feed(tokens);
        top.push(topLogprobs(logits, this.#o.topK, V));
        return logits;
      },
    };
    let r: GenerationResult;
    try {
      r = await generateText(lm, this.tokenizer, ids, {
        temperature: this.#o.temperature,
        topP: this.#o.topP,
        presencePenalty: 0,
        frequencyPenalty: 0,
        maxTokens: options.maxTokens ?? this.#o.maxTokens,
        stop: options.stop ?? [],
        seed: this.#o.seed + this.#calls++,
        signal: options.signal,
      });
    } finally {
      session.destroy();
    }
    const cost = { tokens: r.tokens.length, requests: 1, ms: performance.now() - t0 };
    this.#cost = addCost(this.#cost, cost);
    return { text: r.text, tokens: r.tokens, top: top.slice(0, r.tokens.length), cost };
  }

  /** Destroy the model when the guide loaded it itself. */
  close(): Promise<void> {
    if (this.owned) this.model.destroy();
    return Promise.resolve();
  }
}
