// Vectorised variants of matmul.wgsl for aligned shapes, same Params and bindings (viewed as
// vec4): each invocation computes 4 rows × 4 columns (`*_r4`) or 1 row × 4 columns (`*_r1`, for
// single-token steps) with named accumulators (no dynamically indexed private arrays, which
// llvmpipe spills to memory). No barriers. Rows past M clamp their loads and skip their stores.
//   linear_*:  needs K, xOff, xStride, wStride multiples of 4; any Nc.
//   lowrank_*: needs Nc, wStride multiples of 4; any K.

struct Params {
  M: u32,
  K: u32,
  Nc: u32,
  xOff: u32,
  xStride: u32,
  yOff: u32,
  yStride: u32,
  resOff: u32,
  resStride: u32,
  mode: u32, // bits 0-1 activation (0 none, 1 tanh, 2 sigmoid), bit 2 add the old y, bit 3 add res
  wStride: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>; // (M, K) strided
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

fn storeRow(acc: vec4<f32>, r: u32, c0: u32) {
  if (r >= p.M) { return; }
  for (var j = 0u; j < 4u; j++) {
    let c = c0 + j;
    if (c >= p.Nc) { return; }
    var s = acc[j];
    let yi = p.yOff + r * p.yStride + c;
    if ((p.mode & 4u) != 0u) { s += y[yi]; }
    if ((p.mode & 8u) != 0u) { s += res[p.resOff + r * p.resStride + c]; }
    y[yi] = activate(s);
  }
}

fn xRow(r: u32) -> u32 {
  return (p.xOff + min(r, p.M - 1u) * p.xStride) / 4u;
}

@compute @workgroup_size(64)
fn linear_r4(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c0 = gid.x * 4u;
  let r0 = gid.y * 4u;
  if (c0 >= p.Nc) { return; }
  let x0 = xRow(r0);
  let x1 = xRow(r0 + 1u);
  let x2 = xRow(r0 + 2u);
  let x3 = xRow(r0 + 3u);
  let last = p.Nc - 1u;
  let ws = p.wStride / 4u;
  let w0 = min(c0, last) * ws;
  let w1 = min(c0 + 1u, last) * ws;
  let w2 = min(c0 + 2u, last) * ws;
  let w3 = min(c0 + 3u, last) * ws;
  var a0 = vec4<f32>(0.0);
  var a1 = vec4<f32>(0.0);
  var a2 = vec4<f32>(0.0);
  var a3 = vec4<f32>(0.0);
  for (var k = 0u; k < p.K / 4u; k++) {
    let m = mat4x4<f32>(w[w0 + k], w[w1 + k], w[w2 + k], w[w3 + k]); // columns = W rows
    a0 += x[x0 + k] * m;
    a1 += x[x1 + k] * m;
    a2 += x[x2 + k] * m;
    a3 += x[x3 + k] * m;
  }
  storeRow(a0, r0, c0);
  storeRow(a1, r0 + 1u, c0);
  storeRow(a2, r0 + 2u, c0);
  storeRow(a3, r0 + 3u, c0);
}

@compute @workgroup_size(64)
fn linear_r1(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c0 = gid.x * 4u;
  let r0 = gid.y;
  if (c0 >= p.Nc) { return; }
  let x0 = xRow(r0);
  let last = p.Nc - 1u;
  let ws = p.wStride / 4u;
  let w0 = min(c0, last) * ws;
  let w1 = min(c0 + 1u, last) * ws;
  let w2 = min(c0 + 2u, last) * ws;
  let w3 = min(c0 + 3u, last) * ws;
  var a0 = vec4<f32>(0.0);
  for (var k = 0u; k < p.K / 4u; k++) {
    a0 += x[x0 + k] * mat4x4<f32>(w[w0 + k], w[w1 + k], w[w2 + k], w[w3 + k]);
  }
  storeRow(a0, r0, c0);
}

fn xAt(r: u32, k: u32) -> f32 {
  let i = p.xOff + min(r, p.M - 1u) * p.xStride + k;
  return x[i / 4u][i % 4u];
}

@compute @workgroup_size(64)
fn lowrank_r4(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c0 = gid.x * 4u;
  let r0 = gid.y * 4u;
  if (c0 >= p.Nc) { return; }
  let ws = p.wStride / 4u;
  let cq = c0 / 4u;
  var a0 = vec4<f32>(0.0);
  var a1 = vec4<f32>(0.0);
  var a2 = vec4<f32>(0.0);
  var a3 = vec4<f32>(0.0);
  for (var k = 0u; k < p.K; k++) {
    let m = w[k * ws + cq];
    a0 += xAt(r0, k) * m;
    a1 += xAt(r0 + 1u, k) * m;
    a2 += xAt(r0 + 2u, k) * m;
    a3 += xAt(r0 + 3u, k) * m;
  }
  storeRow(a0, r0, c0);
  storeRow(a1, r0 + 1u, c0);
  storeRow(a2, r0 + 2u, c0);
  storeRow(a3, r0 + 3u, c0);
}

@compute @workgroup_size(64)
fn lowrank_r1(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c0 = gid.x * 4u;
  let r0 = gid.y;
  if (c0 >= p.Nc) { return; }
  let ws = p.wStride / 4u;
  let cq = c0 / 4u;
  var a0 = vec4<f32>(0.0);
  for (var k = 0u; k < p.K; k++) {
    a0 += xAt(r0, k) * w[k * ws + cq];
  }
  storeRow(a0, r0, c0);
}
