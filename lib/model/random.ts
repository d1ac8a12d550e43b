/**
 * Seeded random RWKV-7 models of any shape, with magnitudes like a trained model's so the
 * forward pass stays numerically sane, and the official size presets.
 *
 * @module
 */
import type { LayerWeights, RwkvConfig, RwkvWeights } from "./types.ts";

function preset(
  nLayer: number,
  nEmbd: number,
  [dimW, dimA, dimV, dimG]: [number, number, number, number],
): RwkvConfig {
  return {
    nLayer,
    nEmbd,
    headSize: 64,
    nHead: nEmbd / 64,
    vocabSize: 65536,
    dimW,
    dimA,
    dimV,
    dimG,
    dimFfn: 4 * nEmbd,
  };
}

/**
 * Shapes of the released RWKV-7 World models (N = 64, V = 65536, F = 4C).
 *
 * L and C of every size, and the low-rank widths (Dw/Da/Dv/Dg) of 0.1B and 1.5B, are given by
 * docs/MATH.md §12. The low-rank widths of 0.4B (64/64/32/128), 2.9B (96/96/64/320) and 7.2B
 * (128/128/96/480) are the official values as known to the project, not checked against a file.
 */
export const OFFICIAL_SHAPES: Readonly<
  Record<"0.1B" | "0.4B" | "1.5B" | "2.9B" | "7.2B", RwkvConfig>
> = {
  "0.1B": preset(12, 768, [64, 64, 32, 128]),
  "0.4B": preset(24, 1024, [64, 64, 32, 128]),
  "1.5B": preset(24, 2048, [96, 96, 64, 256]),
  "2.9B": preset(32, 2560, [96, 96, 64, 320]),
  "7.2B": preset(32, 4096, [128, 128, 96, 480]),
};

/**
 * Check that every size is a positive integer and `C = H·N`.
 *
 * @throws {RangeError} naming the bad field and value
 */
export function validateConfig(config: RwkvConfig): void {
  for (const [k, v] of Object.entries(config)) {
    const min = k === "dimV" ? 0 : 1;
    if (!Number.isInteger(v) || v < min) {
      throw new RangeError(`config.${k} = ${v}: expected an integer ≥ ${min}`);
    }
  }
  if (config.nHead * config.headSize !== config.nEmbd) {
    throw new RangeError(
      `config: nHead ${config.nHead} × headSize ${config.headSize} ≠ nEmbd ${config.nEmbd}`,
    );
  }
  if (config.nLayer > 1 && config.dimV < 1) {
    throw new RangeError(`config.dimV = 0: layers ≥ 1 need a value-residual width ≥ 1`);
  }
}

/**
 * A small config for tests: by default L2, C32, N16 (H2), V64, low-rank 8/8/8/16, F = 4C.
 * `nHead` follows from `nEmbd / headSize` unless given.
 *
 * @example
 * ```ts
 * import { tinyConfig } from "./random.ts";
 * const c = tinyConfig({ nEmbd: 64 });
 * if (c.nHead !== 4) throw new Error();
 * ```
 */
export function tinyConfig(overrides: Partial<RwkvConfig> = {}): RwkvConfig {
  const nEmbd = overrides.nEmbd ?? 32;
  const headSize = overrides.headSize ?? 16;
  const config: RwkvConfig = {
    nLayer: 2,
    vocabSize: 64,
    dimW: 8,
    dimA: 8,
    dimV: 8,
    dimG: 16,
    dimFfn: 4 * nEmbd,
    nHead: nEmbd / headSize,
    ...overrides,
    nEmbd,
    headSize,
  };
  validateConfig(config);
  return config;
}

/** A fast seeded generator (mulberry32) filling Float32Arrays with uniform values. */
class Filler {
  #s: number;
  constructor(seed: number) {
    // Mix the seed so nearby seeds give unrelated streams.
    let h = Math.imul((seed | 0) ^ 0x9e3779b9, 0x85ebca6b);
    h ^= h >>> 13;
    this.#s = Math.imul(h, 0xc2b2ae35) >>> 0;
  }

  /** `n` values uniform in [lo, hi). */
  uniform(n: number, lo: number, hi: number): Float32Array {
    const out = new Float32Array(n);
    const scale = (hi - lo) / 4294967296;
    let s = this.#s;
    for (let i = 0; i < n; i++) {
      s = (s + 0x6d2b79f5) | 0;
      let t = Math.imul(s ^ (s >>> 15), s | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      out[i] = lo + ((t ^ (t >>> 14)) >>> 0) * scale;
    }
    this.#s = s;
    return out;
  }

  /** `n` values with mean `mean` and standard deviation `std` (uniform, half-width std·√3). */
  around(n: number, mean: number, std: number): Float32Array {
    const h = std * Math.sqrt(3);
    return this.uniform(n, mean - h, mean + h);
  }
}

/** One layer's weights; `l` is the layer index (layer 0 has no value residual). */
function randomLayer(c: RwkvConfig, l: number, g: Filler): LayerWeights {
  const { nEmbd: C, dimW, dimA, dimV, dimG, dimFfn: F } = c;
  const sq = (gain: number) => g.around(C * C, 0, gain / Math.sqrt(C)); // [C, C], fan-in C
  const mix = () => g.uniform(C, 0, 1);
  const layer: LayerWeights = {
    ln1_w: g.uniform(C, 0.8, 1.2),
    ln1_b: g.uniform(C, -0.05, 0.05),
    ln2_w: g.uniform(C, 0.8, 1.2),
    ln2_b: g.uniform(C, -0.05, 0.05),
    x_r: mix(),
    x_w: mix(),
    x_k: mix(),
    x_v: mix(),
    x_a: mix(),
    x_g: mix(),
    w0: g.uniform(C, -6, -0.5),
    w1: g.around(C * dimW, 0, 1 / Math.sqrt(C)),
    w2: g.around(dimW * C, 0, 0.1 / Math.sqrt(dimW)),
    a0: g.uniform(C, -0.1, 0.1),
    a1: g.around(C * dimA, 0, 1 / Math.sqrt(C)),
    a2: g.around(dimA * C, 0, 0.1 / Math.sqrt(dimA)),
    g1: g.around(C * dimG, 0, 1 / Math.sqrt(C)),
    g2: g.around(dimG * C, 0, 1 / Math.sqrt(dimG)),
    k_k: g.uniform(C, 0.7, 1),
    k_a: g.uniform(C, 0.9, 1.1),
    r_k: g.uniform(C, -0.1, 0.1),
    Wr: sq(1),
    Wk: sq(1),
    Wv: sq(1),
    Wo: sq(0.5),
    lnx_w: g.uniform(C, 0.8, 1.2),
    lnx_b: g.uniform(C, -0.05, 0.05),
    ffn_x_k: mix(),
    ffn_key: g.around(F * C, 0, 1 / Math.sqrt(C)),
    ffn_value: g.around(C * F, 0, 0.5 / Math.sqrt(F)),
  };
  if (l > 0) {
    layer.v0 = g.uniform(C, 0.5, 1.5);
    layer.v1 = g.around(C * dimV, 0, 1 / Math.sqrt(C));
    layer.v2 = g.around(dimV * C, 0, 0.1 / Math.sqrt(dimV));
  }
  return layer;
}

/**
 * Seeded random weights for `config`, deterministic for a seed. LayerNorm weights near 1,
 * biases small, token-shift mixes in [0, 1], `w0` in [-6, -0.5] (decays vary), `k_k` in
 * [0.7, 1], `k_a` near 1, `a0` near 0, `r_k` small, matrices with std ≈ 1/√in, `emb` small,
 * `head` with std 1/√C. Layers ≥ 1 get `v0/v1/v2`, layer 0 none. The 0.1B shape takes a
 * second or two.
 *
 * @throws {RangeError} for an invalid config
 * @example
 * ```ts
 * import { randomWeights, tinyConfig } from "./random.ts";
 * const w = randomWeights(tinyConfig(), 1);
 * if (w.blocks.length !== 2 || w.blocks[0].v0) throw new Error();
 * ```
 */
export function randomWeights(config: RwkvConfig, seed: number): RwkvWeights {
  validateConfig(config);
  const g = new Filler(seed);
  const { nEmbd: C, vocabSize: V } = config;
  const emb = g.uniform(V * C, -0.1, 0.1);
  const ln0_w = g.uniform(C, 0.8, 1.2);
  const ln0_b = g.uniform(C, -0.05, 0.05);
  const blocks = Array.from({ length: config.nLayer }, (_, l) => randomLayer(config, l, g));
  return {
    config: { ...config },
    emb,
    ln0_w,
    ln0_b,
    blocks,
    ln_out_w: g.uniform(C, 0.8, 1.2),
    ln_out_b: g.uniform(C, -0.05, 0.05),
    head: g.around(V * C, 0, 1 / Math.sqrt(C)),
  };
}
