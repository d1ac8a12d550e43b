// Register-tiled matrix products reading both operands from textures: the weights as rgba32float
// or rgba16float textures (one texel = 4 consecutive columns of a row), the activations copied
// into an rgba32float texture just before the dispatch. Same Params and y/res bindings as
// matmul_vec4.wgsl.
//
// Why textures: on Mesa's llvmpipe a storage-buffer load is a per-lane scalar loop with a bounds
// check (≈ 30 ns a value), while a texel fetch is a vector gather (≈ 4 ns for four values), so
// with loads dominating, the same register tile runs several times faster from textures. GPUs
// keep the storage-buffer kernels.
//
// Template: `lib/kernels/matmul.ts` (`expandTile`) keeps one entry's section, sets TR and TC and
// repeats the lines tagged `//@rows` (i < TR) and `//@cols` (j < TC), as for matmul_vec4.wgsl.
// Rows and columns past the edge clamp their loads and skip their stores.
//
//   linear:  y = act(x · Wᵀ (+ y) (+ res))  W (Nc, K) texture (K/4 × Nc); x texture (K/4 × M)
//   lowrank: y = act(x · M (+ y) (+ res))   M (K, Nc) texture (Nc/4 × K); x texture (K/4 × M)
//            TC counts groups of 4 columns; K is a multiple of 4.

struct Params {
  M: u32, // rows of x and y
  K: u32, // inner dimension
  Nc: u32, // columns computed by this dispatch
  xCol0: u32, // first texel column of x this dispatch reads (K offset / 4)
  xStride: u32, // unused
  yOff: u32, // element offset of y[0, 0]
  yStride: u32, // elements between rows of y
  resOff: u32, // element offset of res[0, 0]
  resStride: u32, // elements between rows of res
  mode: u32, // bits 0-1 activation (0 none, 1 tanh, 2 sigmoid), bit 2 add the old y, bit 3 add res
  wRow0: u32, // first texture row of W (linear: output column; lowrank: k) this dispatch reads
  nx: u32, // workgroups along x (the flat workgroup index is wid.x + wid.y · nx)
}

override WG: u32 = 16u; // invocations per workgroup

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var xt: texture_2d<f32>; // (M rows, K/4 texels)
@group(0) @binding(2) var wt: texture_2d<f32>; // linear (Nc rows, K/4) | lowrank (K rows, Nc/4)
@group(0) @binding(3) var<storage, read> res: array<f32>; // (M, Nc) strided, read when mode bit 3
@group(0) @binding(4) var<storage, read_write> y: array<f32>; // (M, ·) strided

fn activate(s: f32) -> f32 {
  switch (p.mode & 3u) {
    case 1u: { return tanh(s); }
    case 2u: { return 1.0 / (1.0 + exp(-s)); }
    default: { return s; }
  }
}

fn store1(s0: f32, r: u32, c: u32) {
  if (r >= p.M || c >= p.Nc) { return; }
  var s = s0;
  let yi = p.yOff + r * p.yStride + c;
  if ((p.mode & 4u) != 0u) { s += y[yi]; }
  if ((p.mode & 8u) != 0u) { s += res[p.resOff + r * p.resStride + c]; }
  y[yi] = activate(s);
}

fn store4(a: vec4<f32>, r: u32, c0: u32) {
  store1(a.x, r, c0);
  store1(a.y, r, c0 + 1u);
  store1(a.z, r, c0 + 2u);
  store1(a.w, r, c0 + 3u);
}

// Tile origin (r0, c0) of this invocation, or r0 = M when it has none.
fn tileOrigin(li: u32, wid: vec3<u32>, rows: u32, cols: u32) -> vec2<u32> {
  let flat = (wid.x + wid.y * p.nx) * WG + li;
  let nct = (p.Nc + cols - 1u) / cols;
  let rt = flat / nct;
  if (rt * rows >= p.M) { return vec2<u32>(p.M, 0u); }
  return vec2<u32>(rt * rows, (flat % nct) * cols);
}

//@begin linear
@compute @workgroup_size(WG)
fn linear(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let o = tileOrigin(li, wid, TRu, TCu);
  let r0 = o.x;
  let c0 = o.y;
  if (r0 >= p.M) { return; }
  let xr$i = min(r0 + $iu, p.M - 1u); //@rows
  let wr$j = p.wRow0 + min(c0 + $ju, p.Nc - 1u); //@cols
  var a$i_$j = 0.0; //@rows //@cols
  for (var k = 0u; k < p.K / 4u; k++) {
    let xv$i = textureLoad(xt, vec2<u32>(p.xCol0 + k, xr$i), 0); //@rows
    let wv$j = textureLoad(wt, vec2<u32>(k, wr$j), 0); //@cols
    a$i_$j += dot(xv$i, wv$j); //@rows //@cols
  }
  store1(a$i_$j, r0 + $iu, c0 + $ju); //@rows //@cols
}
//@end linear

//@begin lowrank
@compute @workgroup_size(WG)
fn lowrank(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let o = tileOrigin(li, wid, TRu, 4u * TCu);
  let r0 = o.x;
  let c0 = o.y;
  if (r0 >= p.M) { return; }
  let xr$i = min(r0 + $iu, p.M - 1u); //@rows
  let cq$j = min(c0 / 4u + $ju, (p.Nc - 1u) / 4u); //@cols
  var a$i_$j = vec4<f32>(0.0); //@rows //@cols
  for (var k = 0u; k < p.K / 4u; k++) {
    let m = p.wRow0 + 4u * k;
    let xv$i = textureLoad(xt, vec2<u32>(p.xCol0 + k, xr$i), 0); //@rows
    let m0_$j = textureLoad(wt, vec2<u32>(cq$j, m), 0); //@cols
    let m1_$j = textureLoad(wt, vec2<u32>(cq$j, m + 1u), 0); //@cols
    let m2_$j = textureLoad(wt, vec2<u32>(cq$j, m + 2u), 0); //@cols
    let m3_$j = textureLoad(wt, vec2<u32>(cq$j, m + 3u), 0); //@cols
    a$i_$j = fma(vec4<f32>(xv$i.x), m0_$j, a$i_$j); //@rows //@cols
    a$i_$j = fma(vec4<f32>(xv$i.y), m1_$j, a$i_$j); //@rows //@cols
    a$i_$j = fma(vec4<f32>(xv$i.z), m2_$j, a$i_$j); //@rows //@cols
    a$i_$j = fma(vec4<f32>(xv$i.w), m3_$j, a$i_$j); //@rows //@cols
  }
  store4(a$i_$j, r0 + $iu, c0 + 4u * $ju); //@rows //@cols
}
//@end lowrank
