// TEMPLATE, not compiled as is: lib/kernels/codegen.ts prepends matmul_tile_common.wgsl, expands
// the `//@` tags per entry and tile, and derives the packed-f16 variant (`f16w4`).
//
// Register-tiled matrix products for aligned shapes; same Params and bindings as matmul.wgsl.
// No barriers and no workgroup memory (both are very slow on llvmpipe).
//
// Template tags (`expandTile` in lib/kernels/codegen.ts): one entry's section is kept, TR and TC
// are set, every line tagged `//@rows` repeats for i = 0 … TR-1 and every line tagged `//@cols`
// for j = 0 … TC-1 (both tags: every pair), replacing `$i` and `$j`, so each invocation keeps
// TR × TC named accumulators in registers (dynamically indexed private arrays spill to memory on
// llvmpipe).
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

// Parameters, the res/y bindings, the epilogue and tileOrigin: `matmul_tile_common.wgsl`.

// Only the section of the entry being built is kept (`//@begin name` … `//@end name`).
//@begin linear
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>; // (rows, K) strided
//@end linear
//@begin lowrank
@group(0) @binding(1) var<storage, read> xs: array<f32>; // (rows, K) strided
//@end lowrank
@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>; // linear (Nc, K) | lowrank (K, Nc)

//@begin linear
@compute @workgroup_size(WG)
fn linear(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let o = tileOrigin(li, wid, TRu, TCu);
  let r0 = o.x;
  let c0 = o.y;
  if (r0 >= p.rows) { return; }
  let xs = p.xStride / 4u;
  let ws = p.wStride / 4u;
  let xb$i = p.xOff / 4u + min(r0 + $iu, p.rows - 1u) * xs; //@rows
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
  if (r0 >= p.rows) { return; }
  let ws = p.wStride / 4u;
  let xb$i = p.xOff + min(r0 + $iu, p.rows - 1u) * p.xStride; //@rows
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
