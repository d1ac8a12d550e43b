/**
 * A guide that knows what the student does not: it shows the wrapped guide `preamble + prompt`
 * (for the synthetic skills, the skill's instruction line, which the student is tested
 * without), and it can memoise continuations so that a sweep over K asks the guide once per
 * item while every run still reports that item's real guide cost.
 *
 * @module
 */
import type { ContinueOptions, Guide, GuideCost, GuideOutput, Vocabulary } from "./guide.ts";
import { addCost, zeroCost } from "./guide.ts";

/** Options of {@link PromptedGuide}. */
export interface PromptedGuideOptions {
  /** Text put before every prompt (e.g. `"reverse\n"`). Default "". */
  preamble?: string;
  /** Reuse the continuation of an identical call (prompt, maxTokens, stop). Default false. */
  memoize?: boolean;
  /** Name in reports (default `<inner name>+preamble`). */
  name?: string;
}

/** A guide wrapped with a preamble and optional memoisation. */
export class PromptedGuide implements Guide {
  readonly name: string;
  readonly vocabulary?: Vocabulary;
  readonly #inner: Guide;
  readonly #preamble: string;
  readonly #memo?: Map<string, GuideOutput>;
  #cost: GuideCost = zeroCost();
  /** Calls answered from the memo (no guide work). */
  memoHits = 0;

  /**
   * @param inner the guide that writes the continuations (closed by {@link close})
   * @param options preamble, memoisation, name
   */
  constructor(inner: Guide, options: PromptedGuideOptions = {}) {
    this.#inner = inner;
    this.#preamble = options.preamble ?? "";
    this.#memo = options.memoize ? new Map() : undefined;
    this.name = options.name ??
      (this.#preamble ? `${inner.name}+preamble ${JSON.stringify(this.#preamble)}` : inner.name);
    this.vocabulary = inner.vocabulary;
  }

  /** Cost of the calls made through this wrapper (a memoised call counts its original cost). */
  get cost(): GuideCost {
    return { ...this.#cost };
  }

  /** Continue `preamble + prompt` (or return the memoised continuation). */
  async continue(prompt: string, options: ContinueOptions = {}): Promise<GuideOutput> {
    const key = JSON.stringify([prompt, options.maxTokens ?? null, options.stop ?? null]);
    let out = this.#memo?.get(key);
    if (out) this.memoHits++;
    else {
      out = await this.#inner.continue(this.#preamble + prompt, options);
      this.#memo?.set(key, out);
    }
    this.#cost = addCost(this.#cost, out.cost);
    return out;
  }

  /** Close the wrapped guide. */
  async close(): Promise<void> {
    this.#memo?.clear();
    await this.#inner.close();
  }
}
