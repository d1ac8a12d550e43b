// Register-tiled matrix products for aligned shapes; same Params and bindings as matmul.wgsl.
// No barriers and no workgroup memory (both are very slow on llvmpipe).
//
// This file is a template: `lib/kernels/matmul.ts` (`expandTile`) keeps one entry's section,
// sets TR and TC, and repeats every line tagged
// `//@rows` for i = 0 … TR-1 and every line tagged `//@cols` for j = 0 … TC-1 (both tags: every
// pair), replacing `$i` and `$j`, so each invocation keeps TR × TC named accumulators in
// registers (dynamically indexed private arrays spill to memory on llvmpipe).
//
// Each invocation computes a TR-row × TC-column tile (`linear`: TC columns; `lowrank`: TC
// groups of 4 columns). Invocations are numbered over (row tile, column tile), column tiles
// fastest, so no lane idles when Nc is small. Rows and columns past the edge clamp their loads
// (no checks inside the K loop) and skip their stores.
//
// Why large tiles: on llvmpipe every storage-buffer load is a per-lane scalar loop with a bounds
// check (≈ 50× the cost of an FMA), so the loads per FMA, (TR + TC) / (TR · TC), set the speed.
//
//   linear:  y = act(x · Wᵀ (+ y) (+ res))  W (Nc, K); needs K, xOff, xStride, wStride % 4 == 0
//   lowrank: y = act(x · M (+ y) (+ res))   M (K, Nc); needs Nc, wStride % 4 == 0; any K

struct Params {
  M: u32, // rows of x and y
  K: u32, // inner dimension
  Nc: u32, // columns computed by this dispatch
  xOff: u32, // element offset of x[0, 0]
  xStride: u32, // elements between rows of x
  yOff: u32, // element offset of y[0, 0]
  yStride: u32, // elements between rows of y
  resOff: u32, // element offset of res[0, 0]
  resStride: u32, // elements between rows of res
  mode: u32, // bits 0-1 activation (0 none, 1 tanh, 2 sigmoid), bit 2 add the old y, bit 3 add res
  wStride: u32, // linear: elements between rows of W; lowrank: between rows of M
  nx: u32, // workgroups along x (the flat workgroup index is wid.x + wid.y · nx)
}

override WG: u32 = 64u; // invocations per workgroup

@group(0) @binding(0) var<uniform> p: Params;
// Only the section of the entry being built is kept (`//@begin name` … `//@end name`).
//@begin linear
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>; // (M, K) strided
//@end linear
//@begin lowrank
@group(0) @binding(1) var<storage, read> xs: array<f32>; // (M, K) strided
//@end lowrank
@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>; // linear (Nc, K) | lowrank (K, Nc)
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
  let xs = p.xStride / 4u;
  let ws = p.wStride / 4u;
  let xb$i = p.xOff / 4u + min(r0 + $iu, p.M - 1u) * xs; //@rows
  let wb$j = min(c0 + $ju, p.Nc - 1u) * ws; //@cols
  var a$i_$j = 0.0; //@rows //@cols
  for (var k = 0u; k < p.K / 4u; k++) {
    let xv$i = x[xb$i + k]; //@rows
    let wv$j = w[wb$j + k]; //@cols
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
  let ws = p.wStride / 4u;
  let xb$i = p.xOff + min(r0 + $iu, p.M - 1u) * p.xStride; //@rows
  let cq$j = min(c0 / 4u + $ju, (p.Nc - 1u) / 4u); //@cols
  var a$i_$j = vec4<f32>(0.0); //@rows //@cols
  for (var k = 0u; k < p.K; k++) {
    let m = k * ws;
    let xv$i = xs[xb$i + k]; //@rows
    let mv$j = w[m + cq$j]; //@cols
    a$i_$j = fma(vec4<f32>(xv$i), mv$j, a$i_$j); //@rows //@cols
  }
  store4(a$i_$j, r0 + $iu, c0 + 4u * $ju); //@rows //@cols
}
//@end lowrank
