// Backward of LayerNorm / GroupNorm (biased variance), one invocation per (row, group):
//
//   x̂ = (x − mean) · inv,  inv = 1/√(var + eps)
//   dx̂ = dy ⊙ w;   dx (+)= inv · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ ⊙ x̂))
//
// LayerNorm is G = 1, S = C (eps 1e-5); RWKV-7's ln_x is G = H, S = N (eps N·1e-5). With mode
// bit 1 the kernel also stores x̂ (for the affine weight gradients Σ dy ⊙ x̂ and Σ dy).

struct Params {
  rows: u32,
  G: u32, // groups per row
  S: u32, // channels per group (row width = G·S)
  wOff: u32, // affine weight offset in vecs
  eps: f32,
  mode: u32, // bit 0: add into dx; bit 1: write x̂
  nx: u32, // workgroups along x
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>; // (rows, G·S) forward input
@group(0) @binding(2) var<storage, read> dy: array<f32>; // (rows, G·S) gradient of the output
@group(0) @binding(3) var<storage, read> vecs: array<f32>; // affine weight at wOff (G·S)
@group(0) @binding(4) var<storage, read_write> dx: array<f32>; // (rows, G·S)
@group(0) @binding(5) var<storage, read_write> xhat: array<f32>; // (rows, G·S) when mode bit 1

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let job = (wid.x + wid.y * p.nx) * 64u + li;
  if (job >= p.rows * p.G) { return; }
  let base = job * p.S; // (row · G + g) · S
  let wb = p.wOff + (job % p.G) * p.S;
  let n = f32(p.S);
  var mean = 0.0;
  for (var j = 0u; j < p.S; j++) { mean += x[base + j]; }
  mean /= n;
  var v = 0.0;
  for (var j = 0u; j < p.S; j++) { let e = x[base + j] - mean; v += e * e; }
  let inv = inverseSqrt(v / n + p.eps);
  var mDx = 0.0;
  var mDxX = 0.0;
  for (var j = 0u; j < p.S; j++) {
    let g = dy[base + j] * vecs[wb + j];
    mDx += g;
    mDxX += g * (x[base + j] - mean) * inv;
  }
  mDx /= n;
  mDxX /= n;
  for (var j = 0u; j < p.S; j++) {
    let i = base + j;
    let xh = (x[i] - mean) * inv;
    var s = inv * (dy[i] * vecs[wb + j] - mDx - xh * mDxX);
    if ((p.mode & 1u) != 0u) { s += dx[i]; }
    dx[i] = s;
    if ((p.mode & 2u) != 0u) { xhat[i] = xh; }
  }
}
