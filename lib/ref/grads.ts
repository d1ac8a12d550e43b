/**
 * Gradient containers of the CPU reference, in their own module so the per-op files and the
 * whole-model backward do not import each other.
 *
 * @module
 */
import type { LayerWeights } from "../model/types.ts";

/** Gradients of one layer's weights, keyed and shaped like {@link LayerWeights} (float64). */
export type LayerGrads = { [K in keyof LayerWeights]: Float64Array };
