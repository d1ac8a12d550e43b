// DERIVED by lib/kernels/codegen.ts: compiled after matmul_tile_common.wgsl, as is (f32) or in
// the variants `f16w` (packed-f16 weights) and `f16math` (shader-f16 arithmetic).
//
// Workgroup-memory tiled matrix products for hardware adapters (GPU practice): each workgroup of
// 16 × 16 = 256 invocations computes a 64 × 64 tile of y, each invocation a 4 × 4 block of it
// (rows ty + 16·i, columns tx + 16·j, so neighbouring lanes read neighbouring workgroup words).
// Per step of BK = 16 along K, the workgroup stages a 64 × 16 slice of x and of the weight in
// workgroup memory as vec4 quads along K (2 × 256 vec4: 8 KiB in f32, 4 KiB in f16), then every
// invocation runs 4 × 4 × 4 dot products from it. Loads are guarded, so any rows, K, Nc, offsets and
// strides work (edges read zeros and skip their stores). Same Params and bindings as
// matmul_vec4.wgsl (`matmul_tile_common.wgsl` is prepended: Params, res, y, store1).
//
//   linear:  y = act(x · Wᵀ (+ y) (+ res))  W (Nc, K), Linear [out, in]
//   lowrank: y = act(x · M (+ y) (+ res))   M (K, Nc), low-rank [in, out]
//
// `XT` is the staging and product type: f32, or f16 where the adapter offers `shader-f16` (the
// host then prepends `enable f16;`, sets `alias XT = f16;` and declares w as array<f16>):
// products and each 4-term dot run in f16, the sums over K in f32. The packed-half weight path
// (no feature) rewrites the `w[…]` reads into unpack2x16float loads instead, in f32.
//
// Barriers are cheap on GPUs but very slow on llvmpipe: software adapters keep the texture path.

alias XT = f32;

@group(0) @binding(1) var<storage, read> x: array<f32>; // (rows, K) strided
@group(0) @binding(2) var<storage, read> w: array<f32>; // linear (Nc, K) | lowrank (K, Nc)

const BM = 64u; // rows of the output tile
const BN = 64u; // columns of the output tile
const BKQ = 4u; // quads of K per step (BK = 16)

var<workgroup> xq: array<vec4<XT>, 256>; // [kq][row]: x[r0 + row, k0 + 4 kq + 0..3]
var<workgroup> wq: array<vec4<XT>, 256>; // [kq][col]: the weight's (col, k0 + 4 kq + 0..3)

fn ldx(r: u32, k: u32) -> XT {
  if (r >= p.rows || k >= p.K) { return XT(0.0); }
  return XT(x[p.xOff + r * p.xStride + k]);
}

fn ldwLinear(c: u32, k: u32) -> XT {
  if (c >= p.Nc || k >= p.K) { return XT(0.0); }
  return XT(w[c * p.wStride + k]);
}

fn ldwLowrank(k: u32, c: u32) -> XT {
  if (c >= p.Nc || k >= p.K) { return XT(0.0); }
  return XT(w[k * p.wStride + c]);
}

// Stage x[r0 + row, k0 + 4 kq + 0..3]: invocation li takes row li / 4, quad li % 4.
fn stageX(li: u32, r0: u32, k0: u32) {
  let row = li / BKQ;
  let kq = li % BKQ;
  let r = r0 + row;
  let k = k0 + 4u * kq;
  xq[kq * BM + row] = vec4<XT>(ldx(r, k), ldx(r, k + 1u), ldx(r, k + 2u), ldx(r, k + 3u));
}

fn mulTile(tx: u32, ty: u32, acc: ptr<function, array<array<f32, 4>, 4>>) {
  for (var kq = 0u; kq < BKQ; kq++) {
    var a: array<vec4<XT>, 4>;
    var b: array<vec4<XT>, 4>;
    for (var i = 0u; i < 4u; i++) { a[i] = xq[kq * BM + ty + 16u * i]; }
    for (var j = 0u; j < 4u; j++) { b[j] = wq[kq * BN + tx + 16u * j]; }
    for (var i = 0u; i < 4u; i++) {
      for (var j = 0u; j < 4u; j++) { (*acc)[i][j] += f32(dot(a[i], b[j])); }
    }
  }
}

fn finish(tx: u32, ty: u32, r0: u32, c0: u32, acc: ptr<function, array<array<f32, 4>, 4>>) {
  for (var i = 0u; i < 4u; i++) {
    for (var j = 0u; j < 4u; j++) { store1((*acc)[i][j], r0 + ty + 16u * i, c0 + tx + 16u * j); }
  }
}

@compute @workgroup_size(16, 16)
fn linear(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let li = lid.x + 16u * lid.y;
  let c0 = wid.x * BN;
  let r0 = wid.y * BM;
  var acc: array<array<f32, 4>, 4>;
  for (var k0 = 0u; k0 < p.K; k0 += 4u * BKQ) {
    stageX(li, r0, k0);
    let col = li / BKQ;
    let kq = li % BKQ;
    let c = c0 + col;
    let k = k0 + 4u * kq;
    wq[kq * BN + col] = vec4<XT>(
      ldwLinear(c, k),
      ldwLinear(c, k + 1u),
      ldwLinear(c, k + 2u),
      ldwLinear(c, k + 3u),
    );
    workgroupBarrier();
    mulTile(lid.x, lid.y, &acc);
    workgroupBarrier();
  }
  finish(lid.x, lid.y, r0, c0, &acc);
}

@compute @workgroup_size(16, 16)
fn lowrank(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let li = lid.x + 16u * lid.y;
  let c0 = wid.x * BN;
  let r0 = wid.y * BM;
  var acc: array<array<f32, 4>, 4>;
  for (var k0 = 0u; k0 < p.K; k0 += 4u * BKQ) {
    stageX(li, r0, k0);
    // M's rows are contiguous along the output columns: lanes take consecutive columns
    let col = li % BN;
    let kq = li / BN;
    let c = c0 + col;
    let k = k0 + 4u * kq;
    wq[kq * BN + col] = vec4<XT>(
      ldwLowrank(k, c),
      ldwLowrank(k + 1u, c),
      ldwLowrank(k + 2u, c),
      ldwLowrank(k + 3u, c),
    );
    workgroupBarrier();
    mulTile(lid.x, lid.y, &acc);
    workgroupBarrier();
  }
  finish(lid.x, lid.y, r0, c0, &acc);
}
