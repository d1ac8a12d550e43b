// Per (b, t, head), one invocation each:
//   kk = L2-normalise(k0 ⊙ k_k)   (divide by max(norm, 1e-12))
//   k  = k0 ⊙ (1 + (a − 1) ⊙ k_a)

struct Params {
  rows: u32, // B · T
  H: u32,
  N: u32,
  kkOff: u32, // k_k offset in vecs
  kaOff: u32, // k_a offset in vecs
  nx: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> vecs: array<f32>; // layer vectors
@group(0) @binding(2) var<storage, read> k0: array<f32>; // (B, T, C) Wk · mix_k
@group(0) @binding(3) var<storage, read> a: array<f32>; // (B, T, C)
@group(0) @binding(4) var<storage, read_write> kk: array<f32>; // (B, T, C) out
@group(0) @binding(5) var<storage, read_write> k: array<f32>; // (B, T, C) out

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let job = (wid.x + wid.y * p.nx) * 64u + li;
  if (job >= p.rows * p.H) { return; }
  let h = job % p.H;
  let base = job * p.N; // (row · H + h) · N = row · C + h · N
  let vb = h * p.N;
  var n2 = 0.0;
  for (var j = 0u; j < p.N; j++) {
    let e = k0[base + j] * vecs[p.kkOff + vb + j];
    n2 += e * e;
  }
  let inv = 1.0 / max(sqrt(n2), 1e-12);
  for (var j = 0u; j < p.N; j++) {
    let i = base + j;
    kk[i] = k0[i] * vecs[p.kkOff + vb + j] * inv;
    k[i] = k0[i] * (1.0 + (a[i] - 1.0) * vecs[p.kaOff + vb + j]);
  }
}
