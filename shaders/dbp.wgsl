// Decorrelated backpropagation of the lifted branch's mixing matrices R (docs/MATH.md §6; reference
// lib/parts/dbp.ts). Per lifted layer and head:
//   covariance  cov[h] (+)= Σ_k z_k z_kᵀ over the listed vectors, z = R φ(û) read back from the
//               forward's features: z = e·‖z‖ for a kk row, q / ρ_r for an r row and
//               u·‖z_k‖ / ρ_k for a k row (writes mode)
//   update      R ← R − lr [(1 − κ) offdiag(C) + κ diag(C − I)] R,  C = cov / n   (into Rout)
//   loss        per head ‖offdiag(C)‖² / M² and Σ_{i≠j} C_ij² / (C_ii C_jj) / M²

struct Params {
  H: u32,
  n: u32, // covariance: listed vectors
  accumulate: u32, // covariance: add to cov
  lossOff: u32, // loss: element offset in out (2 per head)
  invN: f32, // update / loss: 1 / total vectors
  lr: f32,
  kappa: f32,
  nx: u32, // workgroups along x
  F: u32, // covariance: floats per features record (shaders/lifted.wgsl)
  stride: u32, // covariance: idx entries are row·stride + kind
  _p0: u32,
  _p1: u32,
}

override M: u32 = 256u;
const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;

// ---- covariance: one invocation per (h, i, j) ----
@group(0) @binding(1) var<storage, read> feat: array<f32>; // (rows, H, F) forward features
@group(0) @binding(2) var<storage, read> idx: array<u32>; // (n) row·stride + (0 kk, 1 r, 2 k)
@group(0) @binding(3) var<storage, read_write> cov: array<f32>; // (H, M, M)

// z = R φ(û) of a listed vector: e·‖z‖ (kk), q / ρ_r (r), u·‖z_k‖ / ρ_k (k, writes mode)
fn zOf(entry: u32, h: u32, m: u32) -> f32 {
  let pair = (entry / p.stride) * p.H + h;
  let kind = entry % p.stride;
  let fo = pair * p.F;
  if (kind == 0u) { return feat[fo + 8u + m] * feat[fo]; }
  if (kind == 1u) { return feat[fo + 8u + M + m] / feat[fo + 1u]; }
  return feat[fo + 8u + 2u * M + m] * feat[fo + 5u] / feat[fo + 4u];
}

@compute @workgroup_size(WG)
fn covariance(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let g = (wid.x + wid.y * p.nx) * WG + li;
  if (g >= p.H * M * M) { return; }
  let h = g / (M * M);
  let i = (g / M) % M;
  let j = g % M;
  var s = 0.0;
  for (var k = 0u; k < p.n; k++) {
    let entry = idx[k];
    s += zOf(entry, h, i) * zOf(entry, h, j);
  }
  if (p.accumulate != 0u) { s += cov[g]; }
  cov[g] = s;
}

// ---- update: one invocation per (h, i, j) ----
@group(0) @binding(1) var<storage, read> uc: array<f32>; // (H, M, M) summed z zᵀ
@group(0) @binding(2) var<storage, read> uR: array<f32>; // (H, M, M)
@group(0) @binding(3) var<storage, read_write> Rout: array<f32>; // (H, M, M)

@compute @workgroup_size(WG)
fn update(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let g = (wid.x + wid.y * p.nx) * WG + li;
  if (g >= p.H * M * M) { return; }
  let h = g / (M * M);
  let i = (g / M) % M;
  let j = g % M;
  let hb = h * M * M;
  var s = 0.0;
  for (var k = 0u; k < M; k++) {
    let c = uc[hb + i * M + k] * p.invN;
    var w = (1.0 - p.kappa) * c;
    if (k == i) { w = p.kappa * (c - 1.0); }
    s += w * uR[hb + k * M + j];
  }
  Rout[g] = uR[g] - p.lr * s;
}

// ---- loss: one workgroup per head ----
@group(0) @binding(1) var<storage, read> lc: array<f32>; // (H, M, M) summed z zᵀ
@group(0) @binding(2) var<storage, read_write> out: array<f32>; // 2 per head at lossOff

var<workgroup> part: array<vec2<f32>, WG>;

@compute @workgroup_size(WG)
fn loss(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let h = wid.x;
  let hb = h * M * M;
  var acc = vec2<f32>(0.0);
  for (var g = li; g < M * M; g += WG) {
    let i = g / M;
    let j = g % M;
    if (i != j) {
      let c = lc[hb + g] * p.invN;
      acc.x += c * c;
      let v = (lc[hb + i * M + i] * p.invN) * (lc[hb + j * M + j] * p.invN);
      if (v > 0.0) { acc.y += c * c / v; }
    }
  }
  part[li] = acc;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (li < s) { part[li] += part[li + s]; }
    workgroupBarrier();
  }
  if (li == 0u) {
    let mm = f32(M) * f32(M);
    out[p.lossOff + 2u * h] = part[0].x / mm;
    out[p.lossOff + 2u * h + 1u] = part[0].y / mm;
  }
}
