/**
 * The lifted branch (docs/MATH.md §5) threaded through the whole GPU backward, against the CPU
 * reference `refBatchLossAndGrad` with the same lifted layers: loss, dL/dS0, dL/dŜ0 and dL/dg
 * (batch sums), for memory mode (normalised read) and writes mode. This checks the threading
 * of the written k and v and of their gradients into the layer backward, beyond the branch-level
 * test in lifted_gpu_test.ts. errRatio = rms(a − b)/rms(b) ≤ 1e-4; loss rel ≤ 1e-5. And every
 * lifted and DBP pipeline validates and runs on a device created with WebGPU's default limits.
 *
 * @module
 */
import { assert, assertEquals } from "@std/assert";
import { uploadStorage } from "../lib/gpu/buffers.ts";
import { GpuLifted, GpuLiftedState } from "../lib/model/gpu_lifted.ts";
import { Recorder } from "../lib/gpu/recorder.ts";
import { liftedWorkgroupBytes } from "../lib/kernels/lifted.ts";
import { GpuModel } from "../lib/model/gpu_model.ts";
import { randomWeights, tinyConfig } from "../lib/model/random.ts";
import { zeroState } from "../lib/model/types.ts";
import { initLiftedLayers } from "../lib/parts/support.ts";
import { LiftedConfigSchema } from "../lib/parts/config.ts";
import { refBatchLossAndGrad } from "../lib/ref/backward.ts";
import { GpuBackward } from "../lib/model/gpu_backward.ts";
import { errRatio, gpu, randomBatch, Rng } from "./_helpers.ts";

const cfg = tinyConfig({ nLayer: 2, nEmbd: 128, headSize: 64, vocabSize: 64 });
const weights = randomWeights(cfg, 11);
const { nLayer: L, nHead: H, headSize: N } = cfg;
const NN = H * N * N;

for (const writes of [false, true]) {
  Deno.test({
    name: `lifted GPU backward vs reference (${writes ? "writes" : "memory"} mode, H = 2, B = 2)`,
    ignore: !gpu,
    fn: async () => {
      const g = gpu!, rng = new Rng(writes ? 41 : 42);
      const batch = randomBatch(rng, cfg.vocabSize, [11, 7]);
      const calib = [0, 1, 2].map(() => Array.from({ length: 40 }, () => rng.int(cfg.vocabSize)));
      const conf = LiftedConfigSchema.parse({ featureRatio: 1, writes, seed: 3 });
      const lifted = initLiftedLayers(weights, calib, conf);
      for (const s of lifted) {
        s!.s0 = Float64Array.from({ length: H * N * s!.M }, () => rng.uniform(-0.5, 0.5));
        if (writes) s!.gate = Float64Array.from({ length: H }, () => rng.uniform(0.3, 0.9));
      }
      const s0 = zeroState(cfg);
      for (const s of s0) for (let i = 0; i < s.wkv.length; i++) s.wkv[i] = rng.uniform(-0.3, 0.3);
      const flat = new Float32Array(L * NN);
      s0.forEach((s, l) => flat.set(s.wkv, l * NN));
      const model = await GpuModel.create(g, weights);
      const bwd = await GpuBackward.create(model);
      const set = await GpuLifted.create(g, cfg, lifted);
      const up = (n: string, a: Float32Array | Uint32Array) => uploadStorage(g, `test.${n}`, a);
      const got = await bwd.lossAndGrad({
        ...{ B: batch.B, T: batch.T, tokens: up("tok", batch.tokens) },
        ...{ targets: up("tgt", batch.targets), mask: up("mask", batch.mask) },
        init: { kind: "shared", wkv: up("s0", flat) },
        lifted: { set },
      });
      const ref = refBatchLossAndGrad(weights, batch.seqs, s0, { lifted });
      assertEquals(got.count, ref.count);
      const cat = (xs: (ArrayLike<number> | undefined)[]) => xs.flatMap((x) => Array.from(x!));
      const errs: Record<string, number> = {
        loss: Math.abs(got.loss - ref.loss) / Math.abs(ref.loss),
        dS0: errRatio(got.dS0Sum, cat(ref.dState.map((d) => d.wkv))),
        dLifted: errRatio(got.dLifted!, cat(ref.dLifted!)),
      };
      if (writes) errs.dg = errRatio(got.dLiftedGate!, cat(ref.dLiftedGate!));
      else assert(got.dLiftedGate!.every((x) => x === 0), "memory mode: dL/dg = 0");
      console.log(
        `${writes ? "writes" : "memory"}: ` +
          Object.entries(errs).map(([k, e]) => `${k} ${e.toExponential(1)}`).join(", "),
      );
      assert(errs.loss <= 1e-5, `loss rel ${errs.loss}`);
      for (const [k, e] of Object.entries(errs)) assert(e <= 1e-4, `${k} errRatio ${e}`);
      set.destroy();
      bwd.destroy();
      model.destroy();
    },
  });
}

Deno.test({
  name: "lifted and DBP pipelines run on a device with WebGPU's default limits (≤ 8 storage)",
  ignore: !gpu,
  fn: async () => {
    const adapter = await navigator.gpu.requestAdapter();
    const device = await adapter!.requestDevice(); // the spec's default limits
    assertEquals(device.limits.maxStorageBuffersPerShaderStage, 8);
    const g = { ...gpu!, device, limits: device.limits };
    const rng = new Rng(43), B = 2, T = 18, Hh = 2, Nh = 8, M = 4 * Nh, C = Hh * Nh;
    const small = { nLayer: 1, nHead: Hh, headSize: Nh, nEmbd: C } as typeof cfg;
    assert(liftedWorkgroupBytes(4 * 64, 64) <= 16384, "M = 4N at N = 64 fits 16 KiB");
    const support = Float64Array.from({ length: Hh * M * Nh }, () => rng.normal() / Math.sqrt(Nh));
    const R = new Float64Array(Hh * M * M);
    for (let h = 0; h < Hh; h++) for (let m = 0; m < M; m++) R[h * M * M + m * M + m] = 1;
    device.pushErrorScope("validation");
    const set = await GpuLifted.create(g, small, [{
      ...{ M, featureMap: "gaussian", headMeans: true, writes: true, R, support },
      ...{ s0: new Float64Array(Hh * Nh * M), gamma: [0.5, 0.7], gate: [0.5, 0.5] },
    }]);
    const state = new GpuLiftedState(set, B);
    const vec = (n: string) => uploadStorage(g, `t.${n}`, rng.f32(B * T * C, 0.1, 0.9));
    const v = {
      B,
      T,
      kk: vec("kk"),
      r: vec("r"),
      d: vec("d"),
      a: vec("a"),
      k: vec("k"),
      v: vec("v"),
    };
    const grads = { dkk: vec("dkk"), dr: vec("dr"), dd: vec("dd"), da: vec("da"), dk: vec("dk") };
    const out = { dv: vec("dv"), y: vec("y"), dy: vec("dy") };
    const dLifted = uploadStorage(g, "t.dl", new Float32Array(set.size));
    const dLiftedGate = uploadStorage(g, "t.dg", new Float32Array(set.gateSize));
    const rec = new Recorder(g, "t.limits");
    const counts = new Map<string, number>();
    const dispatch = rec.dispatch.bind(rec);
    rec.dispatch = (pipe, params, bindings, groups, label) => {
      counts.set(label ?? pipe.label, bindings.length);
      return dispatch(pipe, params, bindings, groups, label);
    };
    set.recordForward(rec, 0, { ...v, y: out.y, state });
    set.recordBackward(rec, 0, { ...v, ...grads, dv: out.dv, dy: out.dy, dLifted, dLiftedGate });
    const idx = uploadStorage(g, "t.idx", Uint32Array.from({ length: 3 * B * T }, (_, i) => i));
    set.recordCovariance(rec, 0, { idx, n: 3 * B * T, stride: 3, accumulate: false });
    set.recordDbp(rec, { count: 3 * B * T, lr: 0.01, kappa: 0.5, enabled: true });
    rec.submit();
    await device.queue.onSubmittedWorkDone();
    const err = await device.popErrorScope();
    assertEquals(err?.message, undefined, "validation error on a default-limits device");
    console.log(
      "storage buffers per dispatch: " + [...counts].map(([k, n]) => `${k} ${n}`).join(", "),
    );
    for (const [k, n] of counts) assert(n <= 8, `${k} binds ${n} storage buffers`);
    state.destroy();
    set.destroy();
    device.destroy();
  },
});
