// Shared by the register-tiled matmul templates `matmul_vec4.wgsl` (storage buffers) and
// `matmul_tex.wgsl` (textures): the parameter block, the output bindings, the epilogue (activation,
// accumulate, residual) and the tile numbering. `lib/kernels/codegen.ts` prepends this file to
// either template before expanding it, and before matmul_tiled.wgsl and gemv_subgroup.wgsl
// (step 1, "compose", of lib/kernels/codegen.ts).
//
// mode: bits 0-1 activation (0 none, 1 tanh, 2 sigmoid), bit 2 add the old y, bit 3 add res.

struct Params {
  rows: u32, // rows of x and y
  K: u32, // inner dimension
  Nc: u32, // columns computed by this dispatch
  xOff: u32, // element offset of x[0, 0] (texture kernels: first texel column of x)
  xStride: u32, // elements between rows of x
  yOff: u32, // element offset of y[0, 0]
  yStride: u32, // elements between rows of y
  resOff: u32, // element offset of res[0, 0]
  resStride: u32, // elements between rows of res
  mode: u32, // bits 0-1 activation (0 none, 1 tanh, 2 sigmoid), bit 2 add the old y, bit 3 add res
  wStride: u32, // linear: elements between rows of W; lowrank: between rows of M (textures: 0)
  nx: u32, // workgroups along x (the flat workgroup index is wid.x + wid.y · nx)
}

override WG: u32 = 64u; // invocations per workgroup

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read> res: array<f32>; // (rows, Nc) strided, read when mode bit 3
@group(0) @binding(4) var<storage, read_write> y: array<f32>; // (rows, ·) strided

fn activate(s: f32) -> f32 {
  switch (p.mode & 3u) {
    case 1u: { return tanh(s); }
    case 2u: { return 1.0 / (1.0 + exp(-s)); }
    default: { return s; }
  }
}

fn store1(s0: f32, r: u32, c: u32) {
  if (r >= p.rows || c >= p.Nc) { return; }
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

// Tile origin (r0, c0) of this invocation, or r0 = rows when it has none.
fn tileOrigin(li: u32, wid: vec3<u32>, tileRows: u32, tileCols: u32) -> vec2<u32> {
  let flat = (wid.x + wid.y * p.nx) * WG + li;
  let nct = (p.Nc + tileCols - 1u) / tileCols;
  let rt = flat / nct;
  if (rt * tileRows >= p.rows) { return vec2<u32>(p.rows, 0u); }
  return vec2<u32>(rt * tileRows, (flat % nct) * tileCols);
}
