/**
 * Outputs that update in place inside Jupyter (a display id plus `update: true`), throttled,
 * always ending on the last frame. Outside the Deno Jupyter kernel they do nothing, so library
 * code can call them unconditionally.
 *
 * @example
 * ```ts
 * import { LivePlot } from "./live.ts";
 * const live = new LivePlot();
 * const losses: number[] = [];
 * for (let step = 0; step < 3; step++) {
 *   losses.push(1 / (step + 1));
 *   live.update(() => ({ title: "loss", series: [{ type: "line", y: losses }] }));
 * }
 * await live.finish(); // shows the last frame (with its PNG) when in Jupyter
 * ```
 *
 * @module
 */
import type { FigureSpec, MimeBundle } from "./types.ts";
import { displayBundle, inJupyter, newDisplayId } from "./jupyter.ts";
import { Figure } from "./figure.ts";

/** Content of a frame: a bundle, plain text, or a function producing one (called lazily). */
export type FrameSource =
  | MimeBundle
  | string
  | (() => MimeBundle | string | Promise<MimeBundle | string>);

/** One output that updates in place. */
export interface LiveOutput {
  /** The display id, or null outside Jupyter. */
  readonly id: string | null;
  /** Offer a new frame; shown now unless the last one was shown < minIntervalMs ago. */
  update(frame: FrameSource): void;
  /** Show `frame` (or the last frame offered and not yet shown) and wait until it is out. */
  finish(frame?: FrameSource): Promise<void>;
}

/** Options of `liveOutput`. */
export interface LiveOptions {
  /** Minimum time between shown frames (default 250 ms: at most 4 updates a second). */
  minIntervalMs?: number;
}

async function resolveFrame(f: FrameSource): Promise<MimeBundle> {
  const v = typeof f === "function" ? await f() : f;
  return typeof v === "string" ? { "text/plain": v } : v;
}

const NOOP: LiveOutput = {
  id: null,
  update() {},
  finish() {
    return Promise.resolve();
  },
};

/**
 * A cell output that updates in place, throttled (inside Jupyter), or a no-op (elsewhere).
 *
 * @param opts `minIntervalMs` between shown frames
 * @returns the live output
 */
export function liveOutput(opts: LiveOptions = {}): LiveOutput {
  if (!inJupyter()) return NOOP;
  const interval = opts.minIntervalMs ?? 250;
  const id = newDisplayId("live");
  let shown = 0; // frames shown so far
  let lastAt = -Infinity;
  let pending: FrameSource | null = null;
  let inFlight: Promise<void> = Promise.resolve();
  let busy = false;

  const show = (frame: FrameSource): Promise<void> => {
    busy = true;
    lastAt = performance.now();
    const first = shown === 0;
    shown++;
    inFlight = inFlight
      .then(async () => {
        const bundle = await resolveFrame(frame);
        await displayBundle(bundle, first ? { displayId: id } : { displayId: id, update: true });
      })
      .catch((e) => console.error(`liveOutput: could not show a frame: ${e?.message ?? e}`))
      .finally(() => {
        busy = false;
      });
    return inFlight;
  };

  return {
    id,
    update(frame) {
      if (busy || performance.now() - lastAt < interval) {
        pending = frame;
        return;
      }
      pending = null;
      void show(frame);
    },
    async finish(frame) {
      const last = frame ?? pending;
      pending = null;
      await inFlight;
      if (last !== null) await show(last);
    },
  };
}

/** A figure that redraws in place while a loop runs (a loss curve during training). */
export class LivePlot {
  #out: LiveOutput;
  #last: Figure | FigureSpec | (() => Figure | FigureSpec) | null = null;

  /**
   * Create a live plot (inactive outside Jupyter).
   *
   * @param opts `minIntervalMs` between redraws (default 250 ms)
   */
  constructor(opts: LiveOptions = {}) {
    this.#out = liveOutput(opts);
  }

  /** True when frames are actually shown (inside Jupyter). */
  get active(): boolean {
    return this.#out.id !== null;
  }

  /**
   * Offer a new frame. Pass a function to build the figure only when a frame is shown.
   * Live frames carry plotly JSON and inline SVG; the PNG is added by `finish`.
   */
  update(fig: Figure | FigureSpec | (() => Figure | FigureSpec)): void {
    if (!this.active) return;
    this.#last = fig;
    this.#out.update(() => toFigure(fig).bundle({ png: false }));
  }

  /** Show the final frame (the given figure, or the last one offered) with its PNG. */
  async finish(fig?: Figure | FigureSpec | (() => Figure | FigureSpec)): Promise<void> {
    if (!this.active) return;
    const last = fig ?? this.#last;
    await this.#out.finish(last ? () => toFigure(last).bundle() : undefined);
  }
}

function toFigure(f: Figure | FigureSpec | (() => Figure | FigureSpec)): Figure {
  const v = typeof f === "function" ? f() : f;
  return v instanceof Figure ? v : new Figure(v);
}
