// Backward of the token-shift mixes `mix_m = u + (uPrev − u) ⊙ x_m` (m < nMix), one invocation
// per (b, t, c):
//
//   du[t]     = Σ_m dmix_m[t] (1 − x_m) + Σ_m dmix_m[t + 1] x_m      (t + 1 < T)
//   dshift[b] = Σ_m dmix_m[b, 0] x_m                                 (gradient of the carried
//                                                                     shift state)
//
// `dw_mix` (weight gradients only), one invocation per (m, c), rows walked in order:
//
//   dx_m[c] += Σ_{b,t} dmix_m[b, t, c] · (uPrev[b, t, c] − u[b, t, c])
//              uPrev = u[b, t − 1] for t > 0, else the incoming shift state (0 when absent)

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

// ---- dw_mix ----
struct WParams {
  B: u32,
  T: u32,
  C: u32,
  nMix: u32,
  shiftOff: u32, // element offset of this layer's (B, C) block in shift
  hasShift: u32, // 0: the incoming shift state is zero
  outOff: u32, // offset of x_0's gradient in out (x_m's at outOff + m·C)
  nx: u32,
}

@group(0) @binding(0) var<uniform> wp: WParams;
@group(0) @binding(1) var<storage, read> wDmix: array<f32>; // (nMix, B, T, C)
@group(0) @binding(2) var<storage, read> wU: array<f32>; // (B, T, C) the norm output u
@group(0) @binding(3) var<storage, read> wShift: array<f32>; // (·, B, C) incoming shift at shiftOff
@group(0) @binding(4) var<storage, read_write> wOut: array<f32>; // packed vector gradients

@compute @workgroup_size(64)
fn dw_mix(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let job = (wid.x + wid.y * wp.nx) * 64u + li;
  if (job >= wp.nMix * wp.C) { return; }
  let m = job / wp.C;
  let c = job % wp.C;
  let n = wp.B * wp.T * wp.C;
  var s = 0.0;
  for (var b = 0u; b < wp.B; b++) {
    var prev = 0.0;
    if (wp.hasShift != 0u) { prev = wShift[wp.shiftOff + b * wp.C + c]; }
    for (var t = 0u; t < wp.T; t++) {
      let i = (b * wp.T + t) * wp.C + c;
      let u = wU[i];
      s += wDmix[m * n + i] * (prev - u);
      prev = u;
    }
  }
  let o = wp.outOff + job;
  wOut[o] = wOut[o] + s;
}
