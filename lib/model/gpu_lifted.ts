/**
 * The kernel-upscaled ("lifted") state of SPEC §6 on the GPU: the buffers of a
 * {@link LiftedLayers} set (Ŝ0 of every lifted layer in one trainable buffer, R, support
 * vectors, γ per layer), the kernels that run the branch forward and backward and DBP, the
 * running lifted state of B sequences, and save / load as `lifted.safetensors`.
 *
 * Layouts (f32): Ŝ0 of layer l is (H, N, M) at element `layers[l].s0Off` of {@link GpuLifted.s0};
 * a {@link GpuLiftedState} holds (B, H, N, M) per lifted layer at element `B · s0Off`.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { createStorage, readF32, writeStorage } from "../gpu/buffers.ts";
import { Recorder } from "../gpu/recorder.ts";
import { DbpKernel } from "../kernels/dbp.ts";
import { type LiftedFeatures, LiftedKernel, type LiftedParams } from "../kernels/lifted.ts";
import { LiftedBackwardKernel } from "../kernels/lifted_backward.ts";
import { readSafetensors, serializeSafetensors } from "../model/safetensors.ts";
import type { RwkvConfig, Tensor } from "../model/types.ts";
import { checkLiftedState, type LiftedLayers, type LiftedState } from "../ref/lifted_types.ts";

/** One lifted layer on the GPU. */
export interface GpuLiftedLayer extends LiftedParams {
  M: number;
  /** element offset of this layer's Ŝ0 (H, N, M) in {@link GpuLifted.s0} */
  s0Off: number;
  fwd: LiftedKernel;
  bwd: LiftedBackwardKernel;
  dbp: DbpKernel;
}

/** Vectors of one layer's lifted forward / backward; all (B·T, H·N). */
export interface LiftedVectors {
  B: number;
  T: number;
  kk: GPUBuffer;
  r: GPUBuffer;
  d: GPUBuffer;
  a: GPUBuffer;
}

/** The step's vectors DBP measures: `n` entries `row·2 + kind` (kind 0 kk, 1 r) in `idx`. */
export interface DbpRows {
  idx: GPUBuffer;
  n: number;
  /** add to the covariance of earlier micro-batches of the same step */
  accumulate: boolean;
}

/** DBP losses after a step, per lifted layer (mean over heads) and over all lifted layers. */
export interface DbpLosses {
  /** ‖offdiag(C)‖² / M², mean over lifted layers and heads */
  decorrelationLoss: number;
  /** Σ_{i≠j} C_ij² / (C_ii C_jj) / M², mean over lifted layers and heads */
  correlationLoss: number;
  /** per layer (undefined without a branch): [decorrelation, correlation] means over heads */
  perLayer: ([number, number] | undefined)[];
}

/** A set of lifted layers on the GPU; create with {@link GpuLifted.create}. */
export class GpuLifted {
  #feat?: LiftedFeatures & { rows: number };
  #bwd?: { B: number; T: number; scratch: GPUBuffer; dfeat: GPUBuffer; ds0: GPUBuffer };
  #dbp?: { cov: GPUBuffer[]; Rtmp: GPUBuffer; loss: GPUBuffer };
  #retired: GPUBuffer[] = [];

  private constructor(
    readonly gpu: Gpu,
    readonly config: RwkvConfig,
    readonly layers: (GpuLiftedLayer | undefined)[],
    /** every lifted layer's Ŝ0, concatenated (the trained tensor) */
    readonly s0: GPUBuffer,
    /** elements of {@link s0} */
    readonly size: number,
    private readonly host: LiftedLayers,
    private readonly dummy: GPUBuffer,
  ) {}

  /**
   * Upload `lifted` (one entry per model layer, undefined for none) and compile its kernels.
   *
   * @throws {RangeError} when the layer count or a tensor's length is wrong for the model
   * @example
   * ```ts ignore
   * const set = await GpuLifted.create(gpu, weights.config, initLiftedLayers(weights, calib, cfg));
   * model.setLifted(set); // every forward now adds the branch
   * ```
   */
  static async create(gpu: Gpu, config: RwkvConfig, lifted: LiftedLayers): Promise<GpuLifted> {
    const { nLayer: L, nHead: H, headSize: N } = config;
    if (lifted.length !== L) {
      throw new RangeError(`lifted has ${lifted.length} layers, the model has ${L}`);
    }
    let size = 0;
    const offs: number[] = [];
    lifted.forEach((s, l) => {
      if (!s) return;
      checkLiftedState(s, H, N, `lifted[${l}]`);
      offs[l] = size;
      size += H * N * s.M;
    });
    if (size === 0) throw new RangeError("lifted: no layer has a lifted branch");
    const s0 = createStorage(gpu, "lifted.s0", size * 4);
    const dummy = createStorage(gpu, "lifted.unused", 16);
    const layers: (GpuLiftedLayer | undefined)[] = [];
    for (let l = 0; l < L; l++) {
      const s = lifted[l];
      if (!s) {
        layers.push(undefined);
        continue;
      }
      const M = s.M;
      writeStorage(gpu, s0, Float32Array.from(s.s0), offs[l] * 4);
      const up = (name: string, x: ArrayLike<number> | undefined) =>
        x ? upload(gpu, `lifted.${l}.${name}`, x) : dummy;
      const gaussian = s.featureMap === "gaussian";
      layers.push({
        M,
        s0Off: offs[l],
        featureMap: s.featureMap,
        headMeans: s.headMeans,
        normalisedRead: s.normalisedRead ?? false,
        R: up("R", s.R),
        support: gaussian ? up("support", s.support) : dummy,
        gamma: gaussian ? up("gamma", s.gamma) : dummy,
        fwd: await LiftedKernel.create(gpu, N, M),
        bwd: await LiftedBackwardKernel.create(gpu, N, M),
        dbp: await DbpKernel.create(gpu, M),
      });
    }
    return new GpuLifted(gpu, config, layers, s0, size, lifted, dummy);
  }

  /** Largest M over the lifted layers. */
  get maxM(): number {
    return Math.max(...this.layers.map((x) => x?.M ?? 0));
  }

  /** The features workspace for at least `rows` = B·T rows (grows; shared by all layers). */
  features(rows: number): LiftedFeatures {
    if (!this.#feat || this.#feat.rows < rows) {
      if (this.#feat) this.#retired.push(this.#feat.e, this.#feat.q, this.#feat.aux);
      const H = this.config.nHead, M = this.maxM;
      const buf = (n: string, w: number) =>
        createStorage(this.gpu, `lifted.${n}`, rows * H * w * 4);
      this.#feat = { rows, e: buf("e", M), q: buf("q", M), aux: buf("aux", 4) };
    }
    return this.#feat;
  }

  /** Record layer l's branch: y += Ŝ q per token, the lifted state advanced in place. */
  recordForward(
    rec: Recorder,
    l: number,
    v: LiftedVectors & { y: GPUBuffer; state: GpuLiftedState },
  ): void {
    const ly = this.#layer(l);
    if (v.state.B !== v.B) {
      throw new RangeError(
        `lifted layer ${l}: the lifted state holds ${v.state.B} sequences, B = ${v.B}`,
      );
    }
    ly.fwd.record(rec, {
      ...v,
      H: this.config.nHead,
      params: ly,
      features: this.features(v.B * v.T),
      state: v.state.buffer,
      stateOff: v.state.offset(l),
    });
  }

  /**
   * Record layer l's branch backward from a shared Ŝ0 (right after the layer's forward was
   * recorded, so the features are this layer's): adds into dkk, dr, dd, da and writes the
   * batch-summed dL/dŜ0 into `dLifted` at the layer's `s0Off`.
   *
   * @param v.dy gradient of the branch output (the GroupNorm input's gradient) (B·T, H·N)
   */
  recordBackward(
    rec: Recorder,
    l: number,
    v: LiftedVectors & {
      dy: GPUBuffer;
      dkk: GPUBuffer;
      dr: GPUBuffer;
      dd: GPUBuffer;
      da: GPUBuffer;
      dLifted: GPUBuffer;
    },
  ): void {
    const ly = this.#layer(l), H = this.config.nHead, N = this.config.headSize;
    const w = this.#backwardWorkspace(v.B, v.T);
    ly.bwd.record(rec, {
      ...v,
      H,
      params: ly,
      features: this.features(v.B * v.T),
      s0: this.s0,
      s0Off: ly.s0Off,
      sharedS0: true,
      ds0: w.ds0,
      scratch: w.scratch,
      dfeat: w.dfeat,
    });
    ly.bwd.sumBatch(rec, { B: v.B, n: H * N * ly.M, src: w.ds0, dst: v.dLifted, dstOff: ly.s0Off });
  }

  /** Record `dst (+)= src` over the whole Ŝ0 layout (accumulating gradients of micro-batches). */
  recordAdd(rec: Recorder, src: GPUBuffer, dst: GPUBuffer, accumulate: boolean): void {
    const ly = this.layers.find((x) => x)!;
    ly.bwd.sumBatch(rec, { B: 1, n: this.size, src, dst, accumulate });
  }

  #backwardWorkspace(B: number, T: number) {
    const b = this.#bwd;
    if (b && b.B === B && b.T === T) return b;
    if (b) this.#retired.push(b.scratch, b.dfeat, b.ds0);
    const H = this.config.nHead, N = this.config.headSize, M = this.maxM;
    const big = this.layers.find((x) => x?.M === M)!.bwd;
    this.#bwd = {
      B,
      T,
      scratch: big.createScratch(B, T, H, "lifted.bwd.scratch"),
      dfeat: big.createDfeat(B * T, H, "lifted.bwd.dfeat"),
      ds0: createStorage(this.gpu, "lifted.bwd.ds0", B * H * N * M * 4),
    };
    return this.#bwd;
  }

  #layer(l: number): GpuLiftedLayer {
    const ly = this.layers[l];
    if (!ly) throw new RangeError(`lifted: layer ${l} has no lifted branch`);
    return ly;
  }

  #dbpBuffers() {
    if (!this.#dbp) {
      const H = this.config.nHead, M = this.maxM;
      const cov = this.layers.map((ly, l) =>
        ly ? createStorage(this.gpu, `lifted.${l}.cov`, H * ly.M * ly.M * 4) : this.dummy
      );
      this.#dbp = {
        cov,
        Rtmp: createStorage(this.gpu, "lifted.Rtmp", H * M * M * 4),
        loss: createStorage(this.gpu, "lifted.dbpLoss", this.layers.length * H * 2 * 4),
      };
    }
    return this.#dbp;
  }

  /** Record layer l's share of the step's DBP covariance (right after its forward). */
  recordCovariance(rec: Recorder, l: number, rows: DbpRows): void {
    const ly = this.#layer(l), H = this.config.nHead;
    const features = this.#feat;
    if (!features) throw new RangeError("lifted: recordCovariance before any forward");
    const cov = this.#dbpBuffers().cov[l];
    ly.dbp.covariance(rec, { H, features, idx: rows.idx, n: rows.n, cov }, rows.accumulate);
  }

  /**
   * Record DBP after an optimiser step for every lifted layer: the losses of C = cov / count
   * (C before the update), then, when `enabled`, `R ← R − lr [(1 − κ) offdiag(C) +
   * κ diag(C − I)] R`.
   *
   * @param count vectors summed into the covariances this step
   */
  recordDbp(rec: Recorder, o: { count: number; lr: number; kappa: number; enabled: boolean }) {
    const b = this.#dbpBuffers(), H = this.config.nHead;
    this.layers.forEach((ly, l) => {
      if (!ly) return;
      const cov = b.cov[l];
      ly.dbp.loss(rec, { H, cov, count: o.count, out: b.loss, lossOff: l * H * 2 });
      if (!o.enabled) return;
      ly.dbp.update(rec, { H, cov, R: ly.R, Rout: b.Rtmp, count: o.count }, o.lr, o.kappa);
      rec.copy(b.Rtmp, 0, ly.R, 0, H * ly.M * ly.M * 4);
    });
  }

  /** Read the losses {@link recordDbp} wrote (one sync). */
  async readDbpLosses(): Promise<DbpLosses> {
    const H = this.config.nHead, L = this.layers.length;
    const x = await readF32(this.gpu, this.#dbpBuffers().loss, L * H * 2);
    const perLayer: DbpLosses["perLayer"] = [];
    let dec = 0, cor = 0, k = 0;
    this.layers.forEach((ly, l) => {
      if (!ly) return void perLayer.push(undefined);
      let a = 0, b = 0;
      for (let h = 0; h < H; h++) {
        a += x[(l * H + h) * 2] / H;
        b += x[(l * H + h) * 2 + 1] / H;
      }
      perLayer.push([a, b]);
      dec += a;
      cor += b;
      k++;
    });
    return { decorrelationLoss: dec / k, correlationLoss: cor / k, perLayer };
  }

  /** Overwrite Ŝ0 (and R when given) of every lifted layer from `lifted` (same shapes). */
  write(lifted: LiftedLayers, withR = true): void {
    const { nHead: H, headSize: N } = this.config;
    this.layers.forEach((ly, l) => {
      const s = lifted[l];
      if (!ly) return;
      if (!s || s.M !== ly.M) throw new RangeError(`lifted[${l}]: expected M = ${ly.M}`);
      checkLiftedState(s, H, N, `lifted[${l}]`);
      writeStorage(this.gpu, this.s0, Float32Array.from(s.s0), ly.s0Off * 4);
      if (withR) writeStorage(this.gpu, ly.R, Float32Array.from(s.R));
    });
  }

  /** Read the current Ŝ0 and R back (support vectors and γ are the uploaded ones). */
  async read(): Promise<LiftedLayers> {
    const { nHead: H, headSize: N } = this.config;
    const s0 = await readF32(this.gpu, this.s0, this.size);
    const out: LiftedLayers = [];
    for (const [l, ly] of this.layers.entries()) {
      const h = this.host[l];
      if (!ly || !h) {
        out.push(undefined);
        continue;
      }
      const R = await readF32(this.gpu, ly.R, H * ly.M * ly.M);
      out.push({ ...h, s0: s0.slice(ly.s0Off, ly.s0Off + H * N * ly.M), R });
    }
    return out;
  }

  /** Free every buffer (lifted states created from the set are freed separately). */
  destroy(): void {
    const bufs = [this.s0, this.dummy, ...this.#retired];
    for (const ly of this.layers) if (ly) bufs.push(ly.R, ly.support, ly.gamma);
    if (this.#feat) bufs.push(this.#feat.e, this.#feat.q, this.#feat.aux);
    if (this.#bwd) bufs.push(this.#bwd.scratch, this.#bwd.dfeat, this.#bwd.ds0);
    if (this.#dbp) bufs.push(...this.#dbp.cov, this.#dbp.Rtmp, this.#dbp.loss);
    for (const b of new Set(bufs)) b.destroy();
    this.#retired = [];
  }
}

/** The running lifted state of B sequences: (B, H, N, M) per lifted layer. */
export class GpuLiftedState {
  readonly buffer: GPUBuffer;

  /** A state for B sequences, every sequence starting from the set's Ŝ0. */
  constructor(readonly set: GpuLifted, readonly B: number, label = "lifted.state") {
    if (!Number.isInteger(B) || B < 1) throw new RangeError(`lifted state: B = ${B}; expected ≥ 1`);
    this.buffer = createStorage(set.gpu, label, B * set.size * 4);
    const rec = new Recorder(set.gpu, `${label}.init`);
    this.recordReset(rec);
    rec.submit();
  }

  /** Element offset of layer l's (B, H, N, M) block. */
  offset(l: number): number {
    const ly = this.set.layers[l];
    if (!ly) throw new RangeError(`lifted state: layer ${l} has no lifted branch`);
    return this.B * ly.s0Off;
  }

  /** Record copying Ŝ0 into every sequence's state (the start of a sequence). */
  recordReset(rec: Recorder): void {
    const { nHead: H, headSize: N } = this.set.config;
    this.set.layers.forEach((ly) => {
      if (!ly) return;
      const n = H * N * ly.M;
      for (let b = 0; b < this.B; b++) {
        rec.copy(this.set.s0, ly.s0Off * 4, this.buffer, (this.B * ly.s0Off + b * n) * 4, n * 4);
      }
    });
  }

  /** Read sequence b's lifted state per layer (undefined where no branch), each (H, N, M). */
  async read(b = 0): Promise<(Float32Array | undefined)[]> {
    const { nHead: H, headSize: N } = this.set.config;
    const all = await readF32(this.set.gpu, this.buffer, this.B * this.set.size);
    return this.set.layers.map((ly) => {
      if (!ly) return undefined;
      const n = H * N * ly.M, o = this.B * ly.s0Off + b * n;
      return all.slice(o, o + n);
    });
  }

  /** Free the buffer. */
  destroy(): void {
    this.buffer.destroy();
  }
}

function upload(gpu: Gpu, label: string, x: ArrayLike<number>): GPUBuffer {
  const b = createStorage(gpu, label, Math.max(16, x.length * 4));
  writeStorage(gpu, b, Float32Array.from(x));
  return b;
}

/** Switches of each lifted layer, stored as the file's `lifted` metadata (JSON). */
interface LiftedMeta {
  nLayer: number;
  layers: Record<
    string,
    { M: number; featureMap: string; headMeans: boolean; normalisedRead: boolean }
  >;
}

/**
 * Save lifted layers as safetensors: `blocks.{l}.att.lifted_state` (H, N, M), `…lifted_R`
 * (H, M, M), `…lifted_support` (H, M, N) and `…lifted_gamma` (H) (Gaussian map only), with the
 * switches in the `lifted` metadata entry.
 *
 * @param H heads, to give the tensors their shapes
 */
export async function saveLifted(path: string, lifted: LiftedLayers, H: number): Promise<void> {
  const t: Record<string, Tensor> = {};
  const meta: LiftedMeta = { nLayer: lifted.length, layers: {} };
  lifted.forEach((s, l) => {
    if (!s) return;
    const M = s.M, N = s.s0.length / (H * M), p = `blocks.${l}.att.lifted_`;
    t[`${p}state`] = { shape: [H, N, M], data: Float32Array.from(s.s0) };
    t[`${p}R`] = { shape: [H, M, M], data: Float32Array.from(s.R) };
    if (s.featureMap === "gaussian") {
      t[`${p}support`] = { shape: [H, M, N], data: Float32Array.from(s.support!) };
      t[`${p}gamma`] = { shape: [H], data: Float32Array.from(s.gamma!) };
    }
    meta.layers[l] = {
      M,
      featureMap: s.featureMap,
      headMeans: s.headMeans,
      normalisedRead: s.normalisedRead ?? false,
    };
  });
  await Deno.writeFile(path, serializeSafetensors(t, "f32", { lifted: JSON.stringify(meta) }));
}

/**
 * Load lifted layers written by {@link saveLifted}.
 *
 * @throws {RangeError} when a tensor the metadata names is missing
 */
export async function loadLifted(path: string): Promise<LiftedLayers> {
  const bytes = await Deno.readFile(path);
  const file = await readSafetensors(path);
  const meta = JSON.parse(readMetadata(bytes).lifted ?? "null") as LiftedMeta | null;
  if (!meta) throw new RangeError(`${path}: no "lifted" metadata; not a lifted-state file`);
  const out: LiftedLayers = new Array(meta.nLayer).fill(undefined);
  for (const [ls, m] of Object.entries(meta.layers)) {
    const l = Number(ls), p = `blocks.${l}.att.lifted_`;
    const get = (n: string) => {
      const x = file.tensors.get(p + n);
      if (!x) throw new RangeError(`${path}: tensor ${p}${n} is missing`);
      return x.data;
    };
    const s: LiftedState = {
      M: m.M,
      featureMap: m.featureMap === "identity" ? "identity" : "gaussian",
      headMeans: m.headMeans,
      normalisedRead: m.normalisedRead,
      s0: get("state"),
      R: get("R"),
    };
    if (s.featureMap === "gaussian") {
      s.support = get("support");
      s.gamma = get("gamma");
    }
    out[l] = s;
  }
  return out;
}

/** The `__metadata__` string map of a safetensors file. */
function readMetadata(bytes: Uint8Array): Record<string, string> {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const head = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  return head.__metadata__ ?? {};
}
