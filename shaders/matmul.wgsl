// Compiled as is for f32 weights; lib/kernels/codegen.ts DERIVES the packed-f16 variant (`f16w`).
//
// Register-blocked matrix products, no workgroup barriers (they are very slow on llvmpipe).
// Each invocation computes a TR × 4 tile of y; tiles past the edge clamp their loads and skip
// their stores, so any rows, K, Nc work.
//
//   linear: y[r, c] = act(Σ_k x[r, k] · W[c, k]  (+ y[r, c]) (+ res[r, c]))   W (Nc, K), Linear [out, in]
//   lowrank: y[r, c] = act(Σ_k x[r, k] · M[k, c] (+ y[r, c]) (+ res[r, c]))   M (K, Nc), low-rank [in, out]
//
// mode: bits 0-1 activation (0 none, 1 tanh, 2 sigmoid), bit 2 add the old y, bit 3 add res.

struct Params {
  rows: u32, // rows of x and y
  K: u32, // inner dimension
  Nc: u32, // columns computed by this dispatch
  xOff: u32, // element offset of x[0, 0]
  xStride: u32, // elements between rows of x
  yOff: u32, // element offset of y[0, 0]
  yStride: u32, // elements between rows of y
  resOff: u32, // element offset of res[0, 0]
  resStride: u32, // elements between rows of res
  mode: u32,
  wStride: u32, // linear: elements between rows of W (= K); lowrank: between rows of M
}

override TR: u32 = 4u; // rows per invocation (1, 2 or 4)

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>; // (rows, K) strided
@group(0) @binding(2) var<storage, read> w: array<f32>; // linear (Nc, K) | lowrank (K, Nc)
@group(0) @binding(3) var<storage, read> res: array<f32>; // (rows, Nc) strided, read when mode bit 3
@group(0) @binding(4) var<storage, read_write> y: array<f32>; // (rows, ·) strided

fn activate(s: f32) -> f32 {
  switch (p.mode & 3u) {
    case 1u: { return tanh(s); }
    case 2u: { return 1.0 / (1.0 + exp(-s)); }
    default: { return s; }
  }
}

fn store(acc: array<vec4<f32>, 4>, r0: u32, c0: u32) {
  for (var i = 0u; i < TR; i++) {
    let r = r0 + i;
    if (r >= p.rows) { return; }
    for (var j = 0u; j < 4u; j++) {
      let c = c0 + j;
      if (c >= p.Nc) { break; }
      var s = acc[i][j];
      let yi = p.yOff + r * p.yStride + c;
      if ((p.mode & 4u) != 0u) { s += y[yi]; }
      if ((p.mode & 8u) != 0u) { s += res[p.resOff + r * p.resStride + c]; }
      y[yi] = activate(s);
    }
  }
}

@compute @workgroup_size(64)
fn linear(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c0 = gid.x * 4u;
  let r0 = gid.y * TR;
  if (c0 >= p.Nc) { return; }
  var xb: array<u32, 4>;
  for (var i = 0u; i < TR; i++) { xb[i] = p.xOff + min(r0 + i, p.rows - 1u) * p.xStride; }
  let last = p.Nc - 1u;
  let w0 = min(c0, last) * p.wStride;
  let w1 = min(c0 + 1u, last) * p.wStride;
  let w2 = min(c0 + 2u, last) * p.wStride;
  let w3 = min(c0 + 3u, last) * p.wStride;
  var acc: array<vec4<f32>, 4>;
  for (var k = 0u; k < p.K; k++) {
    let wv = vec4<f32>(w[w0 + k], w[w1 + k], w[w2 + k], w[w3 + k]);
    for (var i = 0u; i < TR; i++) { acc[i] = fma(vec4<f32>(x[xb[i] + k]), wv, acc[i]); }
  }
  store(acc, r0, c0);
}

@compute @workgroup_size(64)
fn lowrank(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c0 = gid.x * 4u;
  let r0 = gid.y * TR;
  if (c0 >= p.Nc) { return; }
  var xb: array<u32, 4>;
  for (var i = 0u; i < TR; i++) { xb[i] = p.xOff + min(r0 + i, p.rows - 1u) * p.xStride; }
  let last = p.Nc - 1u;
  let c1 = min(c0 + 1u, last);
  let c2 = min(c0 + 2u, last);
  let c3 = min(c0 + 3u, last);
  var acc: array<vec4<f32>, 4>;
  for (var k = 0u; k < p.K; k++) {
    let m = k * p.wStride;
    let wv = vec4<f32>(w[m + c0], w[m + c1], w[m + c2], w[m + c3]);
    for (var i = 0u; i < TR; i++) { acc[i] = fma(vec4<f32>(x[xb[i] + k]), wv, acc[i]); }
  }
  store(acc, r0, c0);
}
