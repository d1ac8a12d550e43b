// TEMPLATE, not compiled as is: lib/kernels/codegen.ts prepends matmul_tile_common.wgsl and
// expands the `//@` tags per entry and tile.
//
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
// Template tags (`expandTile` in lib/kernels/codegen.ts): one entry's section is kept, TR and TC
// are set, lines tagged `//@rows` (i < TR) and `//@cols` (j < TC) repeat, as in matmul_vec4.wgsl.
// Rows and columns past the edge clamp their loads and skip their stores.
//
//   linear:  y = act(x · Wᵀ (+ y) (+ res))  W (Nc, K) texture (K/4 × Nc); x texture (K/4 × rows)
//   lowrank: y = act(x · M (+ y) (+ res))   M (K, Nc) texture (Nc/4 × K); x texture (K/4 × rows)
//            TC counts groups of 4 columns; K is a multiple of 4.

// Parameters, the res/y bindings, the epilogue and tileOrigin: `matmul_tile_common.wgsl`
// (here `p.xOff` is the first texel column of x and `p.wStride` is unused).

@group(0) @binding(1) var xt: texture_2d<f32>; // (rows, K/4 texels)
@group(0) @binding(2) var wt: texture_2d<f32>; // linear (Nc rows, K/4) | lowrank (K rows, Nc/4)

//@begin linear
@compute @workgroup_size(WG)
fn linear(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let o = tileOrigin(li, wid, TRu, TCu);
  let r0 = o.x;
  let c0 = o.y;
  if (r0 >= p.rows) { return; }
  let xr$i = min(r0 + $iu, p.rows - 1u); //@rows
  let wr$j = min(c0 + $ju, p.Nc - 1u); //@cols
  var a$i_$j = 0.0; //@rows //@cols
  for (var k = 0u; k < p.K / 4u; k++) {
    let xv$i = textureLoad(xt, vec2<u32>(p.xOff + k, xr$i), 0); //@rows
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
  if (r0 >= p.rows) { return; }
  let xr$i = min(r0 + $iu, p.rows - 1u); //@rows
  let cq$j = min(c0 / 4u + $ju, (p.Nc - 1u) / 4u); //@cols
  var a$i_$j = vec4<f32>(0.0); //@rows //@cols
  for (var k = 0u; k < p.K / 4u; k++) {
    let m = 4u * k;
    let xv$i = textureLoad(xt, vec2<u32>(p.xOff + k, xr$i), 0); //@rows
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
