// Backward of `shaders/key_norm.wgsl` (docs/MATH.md §2) and of the `a` sigmoid of `gates.wgsl`, which
// arrive together from the WKV backward. Every buffer is (B, T, C); `vecs` is the layer's packed
// vector buffer.
//
//   key_norm (per row, head):    α = −kk, β = kk ⊙ a arrive as dkk, da (from the WKV backward);
//                                k = k0 ⊙ (1 + (a − 1) ⊙ k_a):  da += dk ⊙ k0 ⊙ k_a
//                                kk = q / max(‖q‖, 1e-12), q = k0 ⊙ k_k:
//                                dq = (dkk − kk (kk · dkk)) / ‖q‖   (dkk / 1e-12 below the floor)
//                                dk0 = dk ⊙ (1 + (a − 1) ⊙ k_a) + dq ⊙ k_k      (over dk)
//                                a = σ(·): da_pre = da ⊙ a (1 − a)                (over da)
//
// Weight gradients only (per row and head; the host column-sums the products):
//   dw_key:  before key_norm, with its inputs: out[0 … n) = dq ⊙ k0 (Σ = dL/dk_k),
//            out[n … 2n) = dk ⊙ k0 ⊙ (a − 1) (Σ = dL/dk_a)

struct Params {
  rows: u32, // B · T
  H: u32,
  N: u32,
  kkOff: u32, // offset of k_k in vecs
  kaOff: u32, // offset of k_a in vecs
  n: u32, // elements (per-element entry points)
  nx: u32, // workgroups along x
}

@group(0) @binding(0) var<uniform> p: Params;

fn job(wid: vec3<u32>, li: u32) -> u32 {
  return (wid.x + wid.y * p.nx) * 64u + li;
}

// ---- key_norm (per row, head): kk normalisation, k_a, a ----
// (the decay part is `gates_backward.wgsl`'s elementwise `decay`, to stay within 8 storage buffers)
@group(0) @binding(1) var<storage, read> kdVecs: array<f32>; // k_k at kkOff, k_a at kaOff
@group(0) @binding(2) var<storage, read> kdDkk: array<f32>; // from the WKV backward
@group(0) @binding(3) var<storage, read> kdK0: array<f32>; // k before the k_a update
@group(0) @binding(4) var<storage, read> kdKk: array<f32>; // kk
@group(0) @binding(5) var<storage, read> kdA: array<f32>; // a
@group(0) @binding(6) var<storage, read_write> kdDk: array<f32>; // in dk, out dk0
@group(0) @binding(7) var<storage, read_write> kdDa: array<f32>; // in da (WKV), out da_pre

@compute @workgroup_size(64)
fn key_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let jb = job(wid, li);
  if (jb >= p.rows * p.H) { return; }
  let base = jb * p.N;
  let hb = (jb % p.H) * p.N;
  var n2 = 0.0;
  var dot = 0.0;
  for (var j = 0u; j < p.N; j++) {
    let q = kdK0[base + j] * kdVecs[p.kkOff + hb + j];
    n2 += q * q;
    dot += kdKk[base + j] * kdDkk[base + j];
  }
  let norm = sqrt(n2);
  let floored = norm <= 1e-12;
  let invN = 1.0 / max(norm, 1e-12);
  for (var j = 0u; j < p.N; j++) {
    let i = base + j;
    let kkj = kdVecs[p.kkOff + hb + j];
    let kaj = kdVecs[p.kaOff + hb + j];
    let aj = kdA[i];
    let dk = kdDk[i];
    var dq = kdDkk[i] * invN;
    if (!floored) { dq -= kdKk[i] * dot * invN; }
    kdDk[i] = dk * (1.0 + (aj - 1.0) * kaj) + dq * kkj;
    let da = kdDa[i] + dk * kdK0[i] * kaj;
    kdDa[i] = da * aj * (1.0 - aj);
  }
}

// ---- dw_key ----
@group(0) @binding(1) var<storage, read> wkVecs: array<f32>; // k_k at kkOff
@group(0) @binding(2) var<storage, read> wkDkk: array<f32>; // from the WKV backward
@group(0) @binding(3) var<storage, read> wkK0: array<f32>; // k before the k_a update
@group(0) @binding(4) var<storage, read> wkKk: array<f32>; // kk
@group(0) @binding(5) var<storage, read> wkDk: array<f32>; // dk (before key_norm)
@group(0) @binding(6) var<storage, read> wkA: array<f32>; // a
@group(0) @binding(7) var<storage, read_write> wkOut: array<f32>; // (2, rows, C) products

@compute @workgroup_size(64)
fn dw_key(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let jb = job(wid, li);
  if (jb >= p.rows * p.H) { return; }
  let base = jb * p.N;
  let hb = p.kkOff + (jb % p.H) * p.N;
  var n2 = 0.0;
  var dot = 0.0;
  for (var j = 0u; j < p.N; j++) {
    let q = wkK0[base + j] * wkVecs[hb + j];
    n2 += q * q;
    dot += wkKk[base + j] * wkDkk[base + j];
  }
  let norm = sqrt(n2);
  let floored = norm <= 1e-12;
  let invN = 1.0 / max(norm, 1e-12);
  for (var j = 0u; j < p.N; j++) {
    let i = base + j;
    var dq = wkDkk[i] * invN;
    if (!floored) { dq -= wkKk[i] * dot * invN; }
    wkOut[i] = dq * wkK0[i];
    wkOut[p.n + i] = wkDk[i] * wkK0[i] * (wkA[i] - 1.0);
  }
}
