// Elementwise backward pieces of `shaders/gates.wgsl` and of the low-rank activations (docs/MATH.md §2).
// Every buffer is (B, T, C) unless noted.
//
//   decay (per element):         d = exp(−e^−½ σ(z)): dz = −e^−½ dd ⊙ d σ(z)(1 − σ(z)) (over dd)
//   value (per element):         layer ≥ 1, v = v0 + (v_first − v0) ⊙ vGate:
//                                dv0 = dv (1 − vGate) (over dv), dv_first += dv ⊙ vGate,
//                                dvpre = dv ⊙ (v_first − v0) ⊙ vGate (1 − vGate)
//                                layer 0 (v = v_first = v0): dv += dv_first
//   act (per element):           in place dh ← dh ⊙ f'(·) from the activated value h:
//                                tanh 1 − h², sigmoid h (1 − h)
//
// (The `a` sigmoid's backward runs in `key_norm_backward.wgsl`, where da arrives.)

struct Params {
  rows: u32, // B · T
  H: u32,
  N: u32,
  layer0: u32, // value: 1 on layer 0 (v = v_first)
  actMode: u32, // act: 1 tanh, 2 sigmoid
  n: u32, // elements (per-element entry points)
  nx: u32, // workgroups along x
}

const DECAY_SCALE: f32 = 0.6065306597126334; // e^(−1/2)

@group(0) @binding(0) var<uniform> p: Params;

fn job(wid: vec3<u32>, li: u32) -> u32 {
  return (wid.x + wid.y * p.nx) * 64u + li;
}

// ---- decay (per element): dd → dz ----
@group(0) @binding(1) var<storage, read> deZ: array<f32>; // z
@group(0) @binding(2) var<storage, read> deD: array<f32>; // decay d
@group(0) @binding(3) var<storage, read_write> deDd: array<f32>; // in dd, out dz

@compute @workgroup_size(64)
fn decay(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = job(wid, li);
  if (i >= p.n) { return; }
  let sz = 1.0 / (1.0 + exp(-deZ[i]));
  deDd[i] = -DECAY_SCALE * deDd[i] * deD[i] * sz * (1.0 - sz);
}

// ---- value ----
@group(0) @binding(1) var<storage, read> vaGate: array<f32>; // vGate (layers ≥ 1)
@group(0) @binding(2) var<storage, read> vaFirst: array<f32>; // v_first (layer 0's v)
@group(0) @binding(3) var<storage, read> vaV0: array<f32>; // v0 = Wv · mix_v
@group(0) @binding(4) var<storage, read_write> vaDv: array<f32>; // in dv, out dv0
@group(0) @binding(5) var<storage, read_write> vaDFirst: array<f32>; // Σ of later layers' dv_first
@group(0) @binding(6) var<storage, read_write> vaDpre: array<f32>; // out: dL/d(v0 + vHidden·v2)

@compute @workgroup_size(64)
fn value(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = job(wid, li);
  if (i >= p.n) { return; }
  let dv = vaDv[i];
  if (p.layer0 != 0u) {
    vaDv[i] = dv + vaDFirst[i];
    return;
  }
  let gate = vaGate[i];
  vaDv[i] = dv * (1.0 - gate);
  vaDFirst[i] += dv * gate;
  vaDpre[i] = dv * (vaFirst[i] - vaV0[i]) * gate * (1.0 - gate);
}

// ---- act ----
@group(0) @binding(1) var<storage, read> acH: array<f32>; // (n) activated values
@group(0) @binding(2) var<storage, read_write> acG: array<f32>; // (n) in dh, out dpre

@compute @workgroup_size(64)
fn act(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = job(wid, li);
  if (i >= p.n) { return; }
  let h = acH[i];
  if (p.actMode == 1u) {
    acG[i] *= 1.0 - h * h;
  } else {
    acG[i] *= h * (1.0 - h);
  }
}
