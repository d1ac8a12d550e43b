// Fused elementwise pieces of the time-mix backward (SPEC §1). Every buffer is (B, T, C) unless
// noted; `vecs` is the layer's packed vector buffer.
//
//   gate (per element):          og = o ⊙ g:  do = dog ⊙ g,  dg = dog ⊙ o
//   bonus (per row, head):       o = GN(y) + s·v, s = Σ_j r_j k_j r_k[h, j]:
//                                dv = s·do,  ds = Σ_j do_j v_j,  dr = ds·k⊙r_k,  dk = ds·r⊙r_k
//                                (dgn = do goes to the GroupNorm backward)
//   key_decay (per row, head):   α = −kk, β = kk ⊙ a arrive as dkk, da (from the WKV backward);
//                                k = k0 ⊙ (1 + (a − 1) ⊙ k_a):  da += dk ⊙ k0 ⊙ k_a
//                                kk = q / max(‖q‖, 1e-12), q = k0 ⊙ k_k:
//                                dq = (dkk − kk (kk · dkk)) / ‖q‖   (dkk / 1e-12 below the floor)
//                                dk0 = dk ⊙ (1 + (a − 1) ⊙ k_a) + dq ⊙ k_k      (over dk)
//                                a = σ(·): da_pre = da ⊙ a (1 − a)                (over da)
//   decay (per element):         d = exp(−e^−½ σ(z)): dz = −e^−½ dd ⊙ d σ(z)(1 − σ(z)) (over dd)
//   value (per element):         layer ≥ 1, v = v0 + (v_first − v0) ⊙ vGate:
//                                dv0 = dv (1 − vGate) (over dv), dv_first += dv ⊙ vGate,
//                                dvpre = dv ⊙ (v_first − v0) ⊙ vGate (1 − vGate)
//                                layer 0 (v = v_first = v0): dv += dv_first
//   act (per element):           in place dh ← dh ⊙ f'(·) from the activated value h:
//                                tanh 1 − h², sigmoid h (1 − h)
//
// Weight gradients only (per row and head; the host column-sums the products):
//   dw_rk:   out = ds · r ⊙ k                 (Σ over rows = dL/dr_k)
//   dw_key:  before key_decay, with its inputs: out[0 … n) = dq ⊙ k0 (Σ = dL/dk_k),
//            out[n … 2n) = dk ⊙ k0 ⊙ (a − 1) (Σ = dL/dk_a)

struct Params {
  rows: u32, // B · T
  H: u32,
  N: u32,
  off0: u32, // gate_bonus: r_k; key_decay: k_k; value: layer0 flag; act: mode (1 tanh, 2 sigmoid)
  off1: u32, // key_decay: k_a
  n: u32, // value / act: elements
  nx: u32, // workgroups along x
}

const DECAY_SCALE: f32 = 0.6065306597126334; // e^(−1/2)

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
@group(0) @binding(1) var<storage, read> boVecs: array<f32>; // layer vectors (r_k at off0)
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
  let vb = p.off0 + (jb % p.H) * p.N;
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

// ---- key_decay (per row, head): kk normalisation, k_a, a ----
// (the decay part is the separate elementwise `decay`, to stay within 8 storage buffers)
@group(0) @binding(1) var<storage, read> kdVecs: array<f32>; // k_k at off0, k_a at off1
@group(0) @binding(2) var<storage, read> kdDkk: array<f32>; // from the WKV backward
@group(0) @binding(3) var<storage, read> kdK0: array<f32>; // k before the k_a update
@group(0) @binding(4) var<storage, read> kdKk: array<f32>; // kk
@group(0) @binding(5) var<storage, read> kdA: array<f32>; // a
@group(0) @binding(6) var<storage, read_write> kdDk: array<f32>; // in dk, out dk0
@group(0) @binding(7) var<storage, read_write> kdDa: array<f32>; // in da (WKV), out da_pre

@compute @workgroup_size(64)
fn key_decay(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let jb = job(wid, li);
  if (jb >= p.rows * p.H) { return; }
  let base = jb * p.N;
  let hb = (jb % p.H) * p.N;
  var n2 = 0.0;
  var dot = 0.0;
  for (var j = 0u; j < p.N; j++) {
    let q = kdK0[base + j] * kdVecs[p.off0 + hb + j];
    n2 += q * q;
    dot += kdKk[base + j] * kdDkk[base + j];
  }
  let norm = sqrt(n2);
  let floored = norm <= 1e-12;
  let invN = 1.0 / max(norm, 1e-12);
  for (var j = 0u; j < p.N; j++) {
    let i = base + j;
    let kkj = kdVecs[p.off0 + hb + j];
    let kaj = kdVecs[p.off1 + hb + j];
    let aj = kdA[i];
    let dk = kdDk[i];
    var dq = kdDkk[i] * invN;
    if (!floored) { dq -= kdKk[i] * dot * invN; }
    kdDk[i] = dk * (1.0 + (aj - 1.0) * kaj) + dq * kkj;
    let da = kdDa[i] + dk * kdK0[i] * kaj;
    kdDa[i] = da * aj * (1.0 - aj);
  }
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
  if (p.off0 != 0u) {
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
  if (p.off0 == 1u) {
    acG[i] *= 1.0 - h * h;
  } else {
    acG[i] *= h * (1.0 - h);
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

// ---- dw_key ----
@group(0) @binding(1) var<storage, read> wkVecs: array<f32>; // k_k at off0
@group(0) @binding(2) var<storage, read> wkDkk: array<f32>; // from the WKV backward
@group(0) @binding(3) var<storage, read> wkK0: array<f32>; // k before the k_a update
@group(0) @binding(4) var<storage, read> wkKk: array<f32>; // kk
@group(0) @binding(5) var<storage, read> wkDk: array<f32>; // dk (before key_decay)
@group(0) @binding(6) var<storage, read> wkA: array<f32>; // a
@group(0) @binding(7) var<storage, read_write> wkOut: array<f32>; // (2, rows, C) products

@compute @workgroup_size(64)
fn dw_key(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let jb = job(wid, li);
  if (jb >= p.rows * p.H) { return; }
  let base = jb * p.N;
  let hb = p.off0 + (jb % p.H) * p.N;
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
