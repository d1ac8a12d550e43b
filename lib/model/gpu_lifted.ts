/**
 * The kernel-upscaled ("lifted") state of docs/MATH.md §5 on the GPU: the buffers of a
 * {@link LiftedLayers} set (Ŝ0 of every lifted layer in one trainable buffer, the per-head gates
 * in another, per layer one arena of R, support vectors and γ), the kernels that run the branch
 * forward and backward and DBP, the running lifted state of B sequences, and (re-exported from
 * lib/model/lifted_file.ts) save / load as `lifted.safetensors`.
 *
 * Layouts (f32): Ŝ0 of layer l is (H, N, M) at element `layers[l].s0Off` of {@link GpuLifted.s0};
 * its gates are H values at `layers[l].gateOff` of {@link GpuLifted.gate} (1 in memory mode,
 * where the backward gives them zero gradient); a {@link GpuLiftedState} holds (B, H, N, M) per
 * lifted layer at element `B · s0Off`.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { createStorage, readF32, writeStorage } from "../gpu/buffers.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { DbpKernel } from "../kernels/dbp.ts";
import {
  liftedArenaLayout,
  type LiftedFeatures,
  liftedFeatureStride,
  LiftedKernel,
} from "../kernels/lifted.ts";
import { LiftedBackwardKernel } from "../kernels/lifted_backward.ts";
import type { RwkvConfig } from "../model/types.ts";
import {
  checkLiftedState,
  type LiftedLayers,
  liftedRead,
  type LiftedState,
} from "../ref/lifted_types.ts";
import type {
  DbpLosses,
  DbpRows,
  GpuLiftedLayer,
  LiftedGradOutputs,
  LiftedVectors,
} from "./gpu_lifted_types.ts";
import type { GpuLiftedState } from "./gpu_lifted_state.ts";

export { loadLifted, saveLifted } from "./lifted_file.ts";
export { GpuLiftedState } from "./gpu_lifted_state.ts";
export type {
  DbpLosses,
  DbpRows,
  GpuLiftedLayer,
  LiftedGradOutputs,
  LiftedVectors,
} from "./gpu_lifted_types.ts";

/** A set of lifted layers on the GPU; create with {@link GpuLifted.create}. */
export class GpuLifted {
  #feat?: { feat: GPUBuffer; rows: number };
  #bwd?: { B: number; T: number; scratch: GPUBuffer; dfeat: GPUBuffer };
  #dbp?: { cov: GPUBuffer[]; Rtmp: GPUBuffer; loss: GPUBuffer };
  #retired: GPUBuffer[] = [];

  private constructor(
    readonly gpu: Gpu,
    readonly config: RwkvConfig,
    readonly layers: (GpuLiftedLayer | undefined)[],
    /** every lifted layer's Ŝ0, concatenated (a trained tensor) */
    readonly s0: GPUBuffer,
    /** elements of {@link s0} */
    readonly size: number,
    /** every lifted layer's H gates, concatenated (trained in writes mode; 1 in memory mode) */
    readonly gate: GPUBuffer,
    /** elements of {@link gate} */
    readonly gateSize: number,
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
    let size = 0, gateSize = 0;
    const offs: number[] = [], gOffs: number[] = [];
    lifted.forEach((s, l) => {
      if (!s) return;
      checkLiftedState(s, H, N, `lifted[${l}]`);
      offs[l] = size;
      gOffs[l] = gateSize;
      size += H * N * s.M;
      gateSize += H;
    });
    if (size === 0) throw new RangeError("lifted: no layer has a lifted branch");
    const s0 = createStorage(gpu, "lifted.s0", size * 4);
    const gate = createStorage(gpu, "lifted.gate", gateSize * 4);
    const dummy = createStorage(gpu, "lifted.unused", 16);
    const layers: (GpuLiftedLayer | undefined)[] = [];
    for (let l = 0; l < L; l++) {
      const s = lifted[l];
      layers.push(
        s && await uploadLayer(gpu, config, l, s, { s0Off: offs[l], gateOff: gOffs[l] }, gate),
      );
    }
    const set = new GpuLifted(gpu, config, layers, s0, size, gate, gateSize, lifted, dummy);
    set.write(lifted, false);
    return set;
  }

  /** Largest M over the lifted layers. */
  get maxM(): number {
    return Math.max(...this.layers.map((x) => x?.M ?? 0));
  }

  /** The features workspace for at least `rows` = B·T rows (grows; shared by all layers). */
  features(rows: number): LiftedFeatures {
    if (!this.#feat || this.#feat.rows < rows) {
      if (this.#feat) this.#retired.push(this.#feat.feat);
      const H = this.config.nHead;
      const F = Math.max(...this.layers.map((x) => x ? liftedFeatureStride(x.M, x.headMeans) : 0));
      this.#feat = { rows, feat: createStorage(this.gpu, "lifted.features", rows * H * F * 4) };
    }
    return this.#feat;
  }

  /** Record layer l's branch: y += g Ŝ q per token, the lifted state advanced in place. */
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
   * recorded, so the features are this layer's): adds into dkk, dr, dd, da, dk, dv and writes
   * the batch-summed dL/dŜ0 into `dLifted` at the layer's `s0Off` and dL/dg into `dLiftedGate`
   * at its `gateOff` (zeros in memory mode).
   */
  recordBackward(rec: Recorder, l: number, v: LiftedVectors & LiftedGradOutputs): void {
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
      scratch: w.scratch,
      dfeat: w.dfeat,
    });
    const src = w.scratch, srcOff = ly.bwd.ds0Offset(v.B, v.T, H);
    ly.bwd.sumBatch(rec, {
      B: v.B,
      n: H * N * ly.M,
      src,
      srcOff,
      dst: v.dLifted,
      dstOff: ly.s0Off,
    });
    if (v.dLiftedGate) {
      const gOff = ly.bwd.dgOffset(v.B, v.T, H);
      ly.bwd.sumBatch(rec, {
        B: v.B,
        n: H,
        src,
        srcOff: gOff,
        dst: v.dLiftedGate,
        dstOff: ly.gateOff,
      });
    }
  }

  /** Record `dst (+)= src` over the whole Ŝ0 layout (accumulating gradients of micro-batches). */
  recordAdd(rec: Recorder, src: GPUBuffer, dst: GPUBuffer, accumulate: boolean): void {
    const ly = this.layers.find((x) => x)!;
    ly.bwd.sumBatch(rec, { B: 1, n: this.size, src, dst, accumulate });
  }

  /** Record `dst (+)= src` over the whole gate layout (accumulating dg of micro-batches). */
  recordAddGate(rec: Recorder, src: GPUBuffer, dst: GPUBuffer, accumulate: boolean): void {
    const ly = this.layers.find((x) => x)!;
    ly.bwd.sumBatch(rec, { B: 1, n: this.gateSize, src, dst, accumulate });
  }

  #backwardWorkspace(B: number, T: number) {
    const b = this.#bwd;
    if (b && b.B === B && b.T === T) return b;
    if (b) this.#retired.push(b.scratch, b.dfeat);
    const H = this.config.nHead, M = this.maxM;
    const big = this.layers.find((x) => x?.M === M)!.bwd;
    this.#bwd = {
      B,
      T,
      scratch: big.createScratch(B, T, H, "lifted.bwd.scratch"),
      dfeat: big.createDfeat(B * T, H, "lifted.bwd.dfeat"),
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
    const cov = this.#dbpBuffers().cov[l], F = liftedFeatureStride(ly.M, ly.headMeans);
    const { idx, n, stride } = rows;
    ly.dbp.covariance(rec, { H, features, F, idx, n, stride, cov }, rows.accumulate);
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
      // R is the first block of the arena
      ly.dbp.update(rec, { H, cov, R: ly.arena, Rout: b.Rtmp, count: o.count }, o.lr, o.kappa);
      rec.copy(b.Rtmp, 0, ly.arena, 0, H * ly.M * ly.M * 4);
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

  /**
   * Overwrite Ŝ0, the gates (writes mode: `gate`, zeros when absent; memory mode: 1) and, when
   * `withR`, R of every lifted layer from `lifted` (same shapes and modes).
   *
   * @throws {RangeError} when a layer's M or mode differs from the set's
   */
  write(lifted: LiftedLayers, withR = true): void {
    const { nHead: H, headSize: N } = this.config;
    this.layers.forEach((ly, l) => {
      const s = lifted[l];
      if (!ly) return;
      if (!s || s.M !== ly.M) throw new RangeError(`lifted[${l}]: expected M = ${ly.M}`);
      if ((s.writes ?? false) !== ly.writes) {
        throw new RangeError(
          `lifted[${l}]: writes = ${s.writes}, the set's layer has ${ly.writes}`,
        );
      }
      checkLiftedState(s, H, N, `lifted[${l}]`);
      writeStorage(this.gpu, this.s0, Float32Array.from(s.s0), ly.s0Off * 4);
      const g = ly.writes
        ? Float32Array.from(s.gate ?? new Float32Array(H))
        : new Float32Array(H).fill(1);
      writeStorage(this.gpu, this.gate, g, ly.gateOff * 4);
      if (withR) writeStorage(this.gpu, ly.arena, Float32Array.from(s.R));
    });
  }

  /** Read the current Ŝ0, gates (writes mode) and R back (support vectors and γ as uploaded). */
  async read(): Promise<LiftedLayers> {
    const { nHead: H, headSize: N } = this.config;
    const s0 = await readF32(this.gpu, this.s0, this.size);
    const gate = await readF32(this.gpu, this.gate, this.gateSize);
    const out: LiftedLayers = [];
    for (const [l, ly] of this.layers.entries()) {
      const h = this.host[l];
      if (!ly || !h) {
        out.push(undefined);
        continue;
      }
      const R = await readF32(this.gpu, ly.arena, H * ly.M * ly.M);
      const g = ly.writes ? { gate: gate.slice(ly.gateOff, ly.gateOff + H) } : {};
      out.push({ ...h, s0: s0.slice(ly.s0Off, ly.s0Off + H * N * ly.M), R, ...g });
    }
    return out;
  }

  /** Free every buffer (lifted states created from the set are freed separately). */
  destroy(): void {
    const bufs = [this.s0, this.gate, this.dummy, ...this.#retired];
    for (const ly of this.layers) if (ly) bufs.push(ly.arena);
    if (this.#feat) bufs.push(this.#feat.feat);
    if (this.#bwd) bufs.push(this.#bwd.scratch, this.#bwd.dfeat);
    if (this.#dbp) bufs.push(...this.#dbp.cov, this.#dbp.Rtmp, this.#dbp.loss);
    for (const b of new Set(bufs)) b.destroy();
    this.#retired = [];
  }
}

/** Upload layer l's arena (R, support vectors, γ) and compile its kernels. */
async function uploadLayer(
  gpu: Gpu,
  config: RwkvConfig,
  l: number,
  s: LiftedState,
  offs: { s0Off: number; gateOff: number },
  gate: GPUBuffer,
): Promise<GpuLiftedLayer> {
  const { nHead: H, headSize: N } = config;
  const M = s.M, gaussian = s.featureMap === "gaussian";
  const lay = liftedArenaLayout(H, N, M, gaussian);
  const arena = new Float32Array(Math.max(4, lay.size));
  arena.set(Float32Array.from(s.R));
  if (gaussian) {
    arena.set(Float32Array.from(s.support!), lay.supOff);
    arena.set(Float32Array.from(s.gamma!), lay.gamOff);
  }
  return {
    ...{ M, ...offs, writes: s.writes ?? false },
    ...{ featureMap: s.featureMap, headMeans: s.headMeans, read: liftedRead(s) },
    ...{
      arena: upload(gpu, `lifted.${l}.arena`, arena),
      supOff: lay.supOff,
      gamOff: lay.gamOff,
    },
    gate,
    fwd: await LiftedKernel.create(gpu, N, M),
    bwd: await LiftedBackwardKernel.create(gpu, N, M),
    dbp: await DbpKernel.create(gpu, M),
  };
}

function upload(gpu: Gpu, label: string, x: ArrayLike<number>): GPUBuffer {
  const b = createStorage(gpu, label, Math.max(16, x.length * 4));
  writeStorage(gpu, b, Float32Array.from(x));
  return b;
}
