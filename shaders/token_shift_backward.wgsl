// Backward of the token-shift mixes `mix_m = u + (uPrev − u) ⊙ x_m` (m < nMix), one invocation
// per (b, t, c):
//
//   du[t]     = Σ_m dmix_m[t] (1 − x_m) + Σ_m dmix_m[t + 1] x_m      (t + 1 < T)
//   dshift[b] = Σ_m dmix_m[b, 0] x_m                                 (gradient of the carried
//                                                                     shift state)

struct Params {
  B: u32,
  T: u32,
  C: u32,
  nMix: u32,
  xOff: u32, // offset of x_0 in vecs (x_m at xOff + m·C)
  shiftOff: u32, // element offset of this layer's (B, C) block in dshift
  nx: u32, // workgroups along x
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dmix: array<f32>; // (nMix, B, T, C)
@group(0) @binding(2) var<storage, read> vecs: array<f32>; // x_m at xOff + m·C
@group(0) @binding(3) var<storage, read_write> du: array<f32>; // (B, T, C) out
@group(0) @binding(4) var<storage, read_write> dshift: array<f32>; // (L, B, C) at shiftOff

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = (wid.x + wid.y * p.nx) * 64u + li;
  let n = p.B * p.T * p.C;
  if (i >= n) { return; }
  let c = i % p.C;
  let t = (i / p.C) % p.T;
  var s = 0.0;
  var sh = 0.0;
  for (var m = 0u; m < p.nMix; m++) {
    let xm = vecs[p.xOff + m * p.C + c];
    let g = dmix[m * n + i];
    s += g * (1.0 - xm);
    if (t + 1u < p.T) {
      s += dmix[m * n + i + p.C] * xm;
    }
    sh += g * xm;
  }
  du[i] = s;
  if (t == 0u) { dshift[p.shiftOff + (i / (p.T * p.C)) * p.C + c] = sh; }
}
