// Per (b, t, head), one invocation each:
//   o  = GroupNorm(y; eps, affine ln_x) + (Σ_j r_j k_j r_k[h, j]) · v
//   og = o ⊙ g   (the input of the output projection)

struct Params {
  rows: u32, // B · T
  H: u32,
  N: u32,
  lnxW: u32, // offsets in vecs
  lnxB: u32,
  rkOff: u32,
  eps: f32,
  nx: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> vecs: array<f32>; // layer vectors
@group(0) @binding(2) var<storage, read> y: array<f32>; // (B, T, C) WKV output
@group(0) @binding(3) var<storage, read> r: array<f32>; // (B, T, C)
@group(0) @binding(4) var<storage, read> k: array<f32>; // (B, T, C) after the k_a update
@group(0) @binding(5) var<storage, read> v: array<f32>; // (B, T, C) after the value residual
@group(0) @binding(6) var<storage, read> g: array<f32>; // (B, T, C)
@group(0) @binding(7) var<storage, read_write> o: array<f32>; // (B, T, C) out
@group(0) @binding(8) var<storage, read_write> og: array<f32>; // (B, T, C) out

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let job = (wid.x + wid.y * p.nx) * 64u + li;
  if (job >= p.rows * p.H) { return; }
  let h = job % p.H;
  let base = job * p.N;
  let vb = h * p.N;
  var mean = 0.0;
  var bonus = 0.0;
  for (var j = 0u; j < p.N; j++) {
    mean += y[base + j];
    bonus += r[base + j] * k[base + j] * vecs[p.rkOff + vb + j];
  }
  mean /= f32(p.N);
  var var_ = 0.0;
  for (var j = 0u; j < p.N; j++) { let e = y[base + j] - mean; var_ += e * e; }
  let inv = inverseSqrt(var_ / f32(p.N) + p.eps);
  for (var j = 0u; j < p.N; j++) {
    let i = base + j;
    let oi = (y[i] - mean) * inv * vecs[p.lnxW + vb + j] + vecs[p.lnxB + vb + j] + bonus * v[i];
    o[i] = oi;
    og[i] = oi * g[i];
  }
}
