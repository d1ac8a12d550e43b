// Backward of `shaders/groupnorm_bonus.wgsl`'s output gate and bonus term (docs/MATH.md §2), without the
// GroupNorm itself (`norm_backward.wgsl`). Every buffer is (B, T, C); `vecs` is the layer's
// packed vector buffer.
//
//   gate (per element):          og = o ⊙ g:  do = dog ⊙ g,  dg = dog ⊙ o
//   bonus (per row, head):       o = GN(y) + s·v, s = Σ_j r_j k_j r_k[h, j]:
//                                dv = s·do,  ds = Σ_j do_j v_j,  dr = ds·k⊙r_k,  dk = ds·r⊙r_k
//                                (dgn = do goes to the GroupNorm backward)
//
// Weight gradients only (per row and head; the host column-sums the products):
//   dw_rk:   out = ds · r ⊙ k                 (Σ over rows = dL/dr_k)

struct Params {
  rows: u32, // B · T
  H: u32,
  N: u32,
  rkOff: u32, // bonus: offset of r_k in vecs
  unused: u32, // 0
  n: u32, // elements (per-element entry points)
  nx: u32, // workgroups along x
}

@group(0) @binding(0) var<uniform> p: Params;

fn job(wid: vec3<u32>, li: u32) -> u32 {
  return (wid.x + wid.y * p.nx) * 64u + li;
}

// ---- gate (per element): dgn = do = dog ⊙ g, dg = dog ⊙ o ----
// gate_bonus is split into gate and bonus so that neither binds more than WebGPU's default 8
// storage buffers; bonus reads do from dgn.
@group(0) @binding(1) var<storage, read> gaDog: array<f32>; // dL/d(o ⊙ g)
@group(0) @binding(2) var<storage, read> gaO: array<f32>; // GroupNorm(y) + bonus
@group(0) @binding(3) var<storage, read> gaG: array<f32>; // g
@group(0) @binding(4) var<storage, read_write> gaDgn: array<f32>; // out: dL/d GroupNorm output
@group(0) @binding(5) var<storage, read_write> gaDg: array<f32>; // out

@compute @workgroup_size(64)
fn gate(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = job(wid, li);
  if (i >= p.n) { return; }
  gaDgn[i] = gaDog[i] * gaG[i];
  gaDg[i] = gaDog[i] * gaO[i];
}

// ---- bonus (per row, head), after gate ----
@group(0) @binding(1) var<storage, read> boVecs: array<f32>; // layer vectors (r_k at rkOff)
@group(0) @binding(2) var<storage, read> boDo: array<f32>; // do (gate's dgn)
@group(0) @binding(3) var<storage, read> boR: array<f32>; // r
@group(0) @binding(4) var<storage, read> boK: array<f32>; // k after the k_a update
@group(0) @binding(5) var<storage, read> boV: array<f32>; // v after the value residual
@group(0) @binding(6) var<storage, read_write> boDr: array<f32>; // out (bonus part)
@group(0) @binding(7) var<storage, read_write> boDk: array<f32>; // out (bonus part)
@group(0) @binding(8) var<storage, read_write> boDv: array<f32>; // out (bonus part)

@compute @workgroup_size(64)
fn bonus(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let jb = job(wid, li);
  if (jb >= p.rows * p.H) { return; }
  let base = jb * p.N;
  let vb = p.rkOff + (jb % p.H) * p.N;
  var s = 0.0;
  var ds = 0.0;
  for (var j = 0u; j < p.N; j++) {
    let i = base + j;
    s += boR[i] * boK[i] * boVecs[vb + j];
    ds += boDo[i] * boV[i];
  }
  for (var j = 0u; j < p.N; j++) {
    let i = base + j;
    boDv[i] = s * boDo[i];
    boDr[i] = ds * boK[i] * boVecs[vb + j];
    boDk[i] = ds * boR[i] * boVecs[vb + j];
  }
}

// ---- dw_rk ----
@group(0) @binding(1) var<storage, read> rkDog: array<f32>; // dL/d(o ⊙ g)
@group(0) @binding(2) var<storage, read> rkG: array<f32>; // g
@group(0) @binding(3) var<storage, read> rkV: array<f32>; // v
@group(0) @binding(4) var<storage, read> rkR: array<f32>; // r
@group(0) @binding(5) var<storage, read> rkK: array<f32>; // k
@group(0) @binding(6) var<storage, read_write> rkOut: array<f32>; // (rows, C) ds · r ⊙ k

@compute @workgroup_size(64)
fn dw_rk(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let jb = job(wid, li);
  if (jb >= p.rows * p.H) { return; }
  let base = jb * p.N;
  var ds = 0.0;
  for (var j = 0u; j < p.N; j++) {
    let i = base + j;
    ds += rkDog[i] * rkG[i] * rkV[i];
  }
  for (var j = 0u; j < p.N; j++) {
    let i = base + j;
    rkOut[i] = ds * rkR[i] * rkK[i];
  }
}
