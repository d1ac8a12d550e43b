/**
 * Host wrapper of `shaders/matmul_dw.wgsl`: weight gradients `out (+)= Aᵀ · Bm` (also over a
 * chunked {@link GpuMatrix}), per-channel column sums, and the embedding's gather / scatter-add.
 * Only used when weight gradients are on.
 *
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { getPipeline } from "../gpu/pipeline.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { checkDim, needElems, WORKGROUP } from "./common.ts";
import { splitGroups } from "../gpu/groups.ts";
import type { GpuMatrix } from "./matmul.ts";

/** A strided (rows, cols) view of a buffer. */
export interface View {
  buffer: GPUBuffer;
  off?: number;
  /** elements between rows (default: the view's column count) */
  stride?: number;
}

/** Weight-gradient pipelines; create once with {@link MatmulDwKernel.create}. */
export class MatmulDwKernel {
  private constructor(
    private readonly pipe: GPUComputePipeline,
    private readonly colPipe: GPUComputePipeline,
    private readonly gatherPipe: GPUComputePipeline,
    private readonly scatterPipe: GPUComputePipeline,
  ) {}

  /** Fetch (compile) the pipelines. */
  static async create(gpu: Gpu): Promise<MatmulDwKernel> {
    const pipe = (entryPoint: string) => getPipeline(gpu, { shader: "matmul_dw", entryPoint });
    return new MatmulDwKernel(
      await pipe("main"),
      await pipe("colsum"),
      await pipe("emb_gather"),
      await pipe("emb_scatter"),
    );
  }

  /**
   * Record the gradient of a chunked weight, `dW (+)= Aᵀ · Bm` chunk by chunk: A (R, W.rows),
   * Bm (R, W.cols), dW shaped like W. Linear W [out, in]: A = dy, Bm = x. Low-rank M [in, out]:
   * A = x, Bm = dy.
   */
  matrix(rec: Recorder, R: number, dW: GpuMatrix, A: View, Bm: View, accumulate = true): void {
    for (const ch of dW.chunks) {
      const a = { buffer: A.buffer, off: (A.off ?? 0) + ch.rowStart, stride: A.stride ?? dW.rows };
      const b = { buffer: Bm.buffer, off: Bm.off ?? 0, stride: Bm.stride ?? dW.cols };
      this.outer(rec, R, ch.rows, dW.cols, a, b, { buffer: ch.buffer }, accumulate);
    }
  }

  /** Record `out[r] = emb[tokens[r]]` for `rows` rows: out (rows, C). */
  embGather(rec: Recorder, rows: number, tokens: GPUBuffer, emb: GpuMatrix, out: GPUBuffer): void {
    const name = "matmul_dw.emb_gather", C = emb.cols;
    checkDim(name, "rows", rows);
    needElems(name, "tokens (rows)", tokens, rows);
    needElems(name, "out (rows, C)", out, rows * C);
    const { groups, nx } = splitGroups(rows * C, { perGroup: WORKGROUP });
    for (const ch of emb.chunks) {
      const params = [rows, C, ch.rowStart, ch.rows, nx];
      rec.dispatch(this.gatherPipe, params, [tokens, ch.buffer, out], groups, name);
    }
  }

  /**
   * Record `dEmb[tokens[r]] += dx[r]` over `rows` rows (rows in order per channel: deterministic).
   *
   * @param dEmb [V, C], chunked like the embedding
   */
  embScatter(rec: Recorder, rows: number, tokens: GPUBuffer, dx: GPUBuffer, dEmb: GpuMatrix): void {
    const name = "matmul_dw.emb_scatter", C = dEmb.cols;
    checkDim(name, "rows", rows);
    needElems(name, "tokens (rows)", tokens, rows);
    needElems(name, "dx (rows, C)", dx, rows * C);
    const { groups, nx } = splitGroups(C, { perGroup: WORKGROUP });
    for (const ch of dEmb.chunks) {
      const params = [rows, C, ch.rowStart, ch.rows, nx];
      rec.dispatch(this.scatterPipe, params, [tokens, dx, ch.buffer], groups, name);
    }
  }

  /**
   * Record `out[p, q] (+)= Σ_r A[r, p] · Bm[r, q]`: A (R, P), Bm (R, Q), out (P, Q).
   * Linear W [out, in]: A = dy, Bm = x. Low-rank M [in, out]: A = x, Bm = dy.
   */
  outer(
    rec: Recorder,
    R: number,
    P: number,
    Q: number,
    A: View,
    Bm: View,
    out: View,
    accumulate = true,
  ): void {
    const name = "matmul_dw";
    checkDim(name, "R", R);
    checkDim(name, "P", P);
    checkDim(name, "Q", Q);
    const [aOff, aStride] = [A.off ?? 0, A.stride ?? P];
    const [bOff, bStride] = [Bm.off ?? 0, Bm.stride ?? Q];
    const [oOff, oStride] = [out.off ?? 0, out.stride ?? Q];
    needElems(name, "A (R, P)", A.buffer, aOff + (R - 1) * aStride + P);
    needElems(name, "Bm (R, Q)", Bm.buffer, bOff + (R - 1) * bStride + Q);
    needElems(name, "out (P, Q)", out.buffer, oOff + (P - 1) * oStride + Q);
    const params = [R, P, Q, aOff, aStride, bOff, bStride, oOff, oStride, accumulate ? 1 : 0, 0];
    const groups = [Math.ceil(Q / 32), Math.ceil(P / 32)] as const;
    rec.dispatch(this.pipe, params, [A.buffer, Bm.buffer, out.buffer], groups, name);
  }

  /**
   * Record `out[q] (+)= Σ_r A[r, q] (· Bm[r, q])` for q < Q: the gradient of a per-channel
   * vector. Without `Bm` the plain column sum.
   */
  colsum(
    rec: Recorder,
    R: number,
    Q: number,
    A: View,
    Bm: View | undefined,
    out: View,
    accumulate = true,
  ): void {
    const name = "matmul_dw.colsum";
    checkDim(name, "R", R);
    checkDim(name, "Q", Q);
    const [aOff, aStride] = [A.off ?? 0, A.stride ?? Q];
    const b = Bm ?? A;
    const [bOff, bStride] = [b.off ?? 0, b.stride ?? Q];
    needElems(name, "A (R, Q)", A.buffer, aOff + (R - 1) * aStride + Q);
    needElems(name, "Bm (R, Q)", b.buffer, bOff + (R - 1) * bStride + Q);
    needElems(name, "out (Q)", out.buffer, (out.off ?? 0) + Q);
    const { groups, nx } = splitGroups(Q, { perGroup: WORKGROUP });
    const mode = (accumulate ? 1 : 0) | (Bm ? 2 : 0);
    const params = [R, 0, Q, aOff, aStride, bOff, bStride, out.off ?? 0, 0, mode, nx];
    rec.dispatch(this.colPipe, params, [A.buffer, b.buffer, out.buffer], groups, name);
  }
}
