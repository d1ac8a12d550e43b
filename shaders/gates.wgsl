// Elementwise time-mix gates, one invocation per (b, t, c), after the low-rank products:
//   z = w0 + z_raw;   d = exp(−e^(−1/2) · σ(z))
//   a = σ(a0 + a_raw)
//   layer 0:  v = v0 and v_first = v0
//   layer ≥1: vGate = σ(v0_bias + vGate_raw);  v = v0 + (v_first − v0) ⊙ vGate
// The *_raw inputs are overwritten in place with the finished values.

struct Params {
  n: u32, // B · T · C
  C: u32,
  w0Off: u32, // offsets in vecs
  a0Off: u32,
  v0Off: u32,
  layer0: u32, // 1 in layer 0 (writes v_first), 0 otherwise
  nx: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> vecs: array<f32>; // layer vectors
@group(0) @binding(2) var<storage, read_write> z: array<f32>; // (B, T, C) in: tanh(mix_w·w1)·w2
@group(0) @binding(3) var<storage, read_write> d: array<f32>; // (B, T, C) out
@group(0) @binding(4) var<storage, read_write> a: array<f32>; // (B, T, C) in: (mix_a·a1)·a2
@group(0) @binding(5) var<storage, read_write> vGate: array<f32>; // (B, T, C) in: (mix_v·v1)·v2
@group(0) @binding(6) var<storage, read> v0: array<f32>; // (B, T, C) Wv · mix_v
@group(0) @binding(7) var<storage, read_write> v: array<f32>; // (B, T, C) out
@group(0) @binding(8) var<storage, read_write> vFirst: array<f32>; // (B, T, C) layer 0's v

fn sigmoid(s: f32) -> f32 {
  return 1.0 / (1.0 + exp(-s));
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = (wid.x + wid.y * p.nx) * 64u + li;
  if (i >= p.n) { return; }
  let c = i % p.C;
  let zi = vecs[p.w0Off + c] + z[i];
  z[i] = zi;
  d[i] = exp(-0.6065306597126334 * sigmoid(zi));
  a[i] = sigmoid(vecs[p.a0Off + c] + a[i]);
  let val0 = v0[i];
  if (p.layer0 != 0u) {
    v[i] = val0;
    vFirst[i] = val0;
  } else {
    let gate = sigmoid(vecs[p.v0Off + c] + vGate[i]);
    vGate[i] = gate;
    v[i] = val0 + (vFirst[i] - val0) * gate;
  }
}
