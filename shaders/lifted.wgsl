// Kernel-upscaled ("lifted") state branch, forward (docs/MATH.md §5; reference lib/ref/lifted.ts).
//
// Two entry points per layer:
//   features  one workgroup per (row, head), row = b·T + t: the token-parallel part
//               e = normalise(R φ(kk)), q = ρ_r R φ(r / ρ_r) (ρ_r = max(‖r‖, 1e-12) with the
//               normalised read, else 1), u = ρ_k normalise(R φ(k / ρ_k)) (writes mode), the
//               head means d̄ = exp(mean log d), ā = mean a, and for per-channel edits D = d,
//               b = e ⊙ a. φ is the Gaussian RBF over the support vectors, or the identity.
//   scan      one workgroup per (b, head), one invocation per value row i of Ŝ (N × M), walking
//               t = 0 … T−1:  p_i = Ŝ_i · e;  Ŝ_i ← Ŝ_i ⊙ D − p_i b [+ v_i u];  y_i += g Ŝ_i · q
//               with D = d̄·1, b = ā e (head means) or the stored D, b (per channel, M = N).
//
// The features record of one (row, head) is F floats at pair·F:
//   aux (8): ‖R φ(kk)‖ (floored), ρ_r, d̄, ā, ρ_k, ‖R φ(k̂)‖ (floored), 0, 0
//   e (M), q (M), u (M) [, D (M), b (M) per channel]
// The fixed tensors of a layer are one arena: R (H, M, M) at 0, support (H, M, N) at supOff,
// γ (H) at gamOff. Ŝ stays in the storage buffer (updated in place, one row per invocation).
//
// flags: bit 0 identity map, bit 1 head means, bit 2 normalised read, bit 3 writes.

struct Params {
  rows: u32, // B·T
  H: u32,
  nx: u32, // features: workgroups along x (pair = wid.x + wid.y·nx)
  flags: u32,
  B: u32, // scan
  T: u32, // scan
  stateOff: u32, // scan: element offset of this layer's (B, H, N, M) block in state
  F: u32, // floats per features record
  supOff: u32, // arena offset of the support vectors
  gamOff: u32, // arena offset of γ
  gateOff: u32, // scan: offset of this layer's H gates in gate
  _pad: u32,
}

override N: u32 = 64u;
override M: u32 = 256u;
const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;

fn identityMap() -> bool { return (p.flags & 1u) != 0u; }
fn headMeans() -> bool { return (p.flags & 2u) != 0u; }
fn normalisedRead() -> bool { return (p.flags & 4u) != 0u; }
fn writes() -> bool { return (p.flags & 8u) != 0u; }

// ---- features ----
@group(0) @binding(1) var<storage, read> kk: array<f32>; // (rows, H, N)
@group(0) @binding(2) var<storage, read> r: array<f32>; // (rows, H, N)
@group(0) @binding(3) var<storage, read> k: array<f32>; // (rows, H, N) written key (writes mode)
@group(0) @binding(4) var<storage, read> d: array<f32>; // (rows, H, N) decay
@group(0) @binding(5) var<storage, read> a: array<f32>; // (rows, H, N)
@group(0) @binding(6) var<storage, read> arena: array<f32>; // R, support, γ
@group(0) @binding(7) var<storage, read_write> feat: array<f32>; // (rows, H, F)

var<workgroup> phiK: array<f32, M>;
var<workgroup> phiR: array<f32, M>;
var<workgroup> phiU: array<f32, M>;
var<workgroup> zK: array<f32, M>;
var<workgroup> zU: array<f32, M>;
var<workgroup> wNorm: array<f32, 2>;

/** max(‖x‖, 1e-12) of the N values of x (kk, r or k buffer) at base. */
fn normR(base: u32) -> f32 {
  var s = 0.0;
  for (var j = 0u; j < N; j++) { s += r[base + j] * r[base + j]; }
  return max(sqrt(s), 1e-12);
}

fn normK(base: u32) -> f32 {
  var s = 0.0;
  for (var j = 0u; j < N; j++) { s += k[base + j] * k[base + j]; }
  return max(sqrt(s), 1e-12);
}

@compute @workgroup_size(WG)
fn features(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let pair = wid.x + wid.y * p.nx;
  if (pair >= p.rows * p.H) { return; }
  let h = pair % p.H;
  let base = pair * N; // (rows, H, N) is (rows, C) with C = H·N
  let wr = writes();
  var rn = 1.0;
  if (normalisedRead()) { rn = normR(base); }
  var kn = 1.0;
  if (wr) { kn = normK(base); }
  for (var m = li; m < M; m += WG) {
    if (identityMap()) {
      phiK[m] = kk[base + m];
      phiR[m] = r[base + m] / rn;
      if (wr) { phiU[m] = k[base + m] / kn; }
    } else {
      let c = p.supOff + (h * M + m) * N;
      var dk = 0.0;
      var dr = 0.0;
      var du = 0.0;
      for (var j = 0u; j < N; j++) {
        let cj = arena[c + j];
        let x = kk[base + j] - cj;
        let y = r[base + j] / rn - cj;
        dk += x * x;
        dr += y * y;
        if (wr) {
          let w = k[base + j] / kn - cj;
          du += w * w;
        }
      }
      let g = arena[p.gamOff + h];
      phiK[m] = exp(-g * dk);
      phiR[m] = exp(-g * dr);
      if (wr) { phiU[m] = exp(-g * du); }
    }
  }
  workgroupBarrier();
  let fo = pair * p.F;
  for (var m = li; m < M; m += WG) {
    let rb = (h * M + m) * M;
    var zk = 0.0;
    var zr = 0.0;
    var zu = 0.0;
    for (var j = 0u; j < M; j++) {
      let w = arena[rb + j];
      zk += w * phiK[j];
      zr += w * phiR[j];
      if (wr) { zu += w * phiU[j]; }
    }
    zK[m] = zk;
    zU[m] = zu;
    feat[fo + 8u + M + m] = zr * rn;
  }
  workgroupBarrier();
  if (li == 0u) {
    var n2 = 0.0;
    var u2 = 0.0;
    for (var j = 0u; j < M; j++) {
      n2 += zK[j] * zK[j];
      u2 += zU[j] * zU[j];
    }
    wNorm[0] = max(sqrt(n2), 1e-12);
    wNorm[1] = max(sqrt(u2), 1e-12);
  }
  workgroupBarrier();
  let zn = wNorm[0];
  let un = wNorm[1];
  let means = headMeans();
  for (var m = li; m < M; m += WG) {
    let em = zK[m] / zn;
    feat[fo + 8u + m] = em;
    var um = 0.0;
    if (wr) { um = kn * zU[m] / un; }
    feat[fo + 8u + 2u * M + m] = um;
    if (!means) {
      feat[fo + 8u + 3u * M + m] = d[base + m];
      feat[fo + 8u + 4u * M + m] = em * a[base + m];
    }
  }
  if (li == 0u) {
    var dBar = 0.0;
    var aBar = 0.0;
    if (means) {
      var ls = 0.0;
      var aSum = 0.0;
      for (var j = 0u; j < N; j++) {
        ls += log(d[base + j]);
        aSum += a[base + j];
      }
      dBar = exp(ls / f32(N));
      aBar = aSum / f32(N);
    }
    feat[fo + 0u] = zn;
    feat[fo + 1u] = rn;
    feat[fo + 2u] = dBar;
    feat[fo + 3u] = aBar;
    feat[fo + 4u] = kn;
    feat[fo + 5u] = un;
    feat[fo + 6u] = 0.0;
    feat[fo + 7u] = 0.0;
  }
}

// ---- scan ----
@group(0) @binding(1) var<storage, read> sfeat: array<f32>; // (rows, H, F)
@group(0) @binding(2) var<storage, read> sv: array<f32>; // (rows, H, N) written value
@group(0) @binding(3) var<storage, read> gate: array<f32>; // H gates at gateOff
@group(0) @binding(4) var<storage, read_write> state: array<f32>; // (·, B, H, N, M) at stateOff
@group(0) @binding(5) var<storage, read_write> y: array<f32>; // (rows, H, N), added to

fn editD(fo: u32, m: u32) -> f32 {
  if (headMeans()) { return sfeat[fo + 2u]; }
  return sfeat[fo + 8u + 3u * M + m];
}

fn editB(fo: u32, m: u32) -> f32 {
  if (headMeans()) { return sfeat[fo + 3u] * sfeat[fo + 8u + m]; }
  return sfeat[fo + 8u + 4u * M + m];
}

@compute @workgroup_size(N)
fn scan(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) i: u32) {
  let bh = wid.x;
  let b = bh / p.H;
  let h = bh % p.H;
  let sb = p.stateOff + (bh * N + i) * M;
  let g = gate[p.gateOff + h];
  let wr = writes();
  for (var t = 0u; t < p.T; t++) {
    let pair = (b * p.T + t) * p.H + h;
    let fo = pair * p.F;
    var pi = 0.0;
    for (var m = 0u; m < M; m++) { pi += state[sb + m] * sfeat[fo + 8u + m]; }
    var vi = 0.0;
    if (wr) { vi = sv[pair * N + i]; }
    var yi = 0.0;
    for (var m = 0u; m < M; m++) {
      var s = state[sb + m] * editD(fo, m) - pi * editB(fo, m);
      if (wr) { s += vi * sfeat[fo + 8u + 2u * M + m]; }
      state[sb + m] = s;
      yi += s * sfeat[fo + 8u + M + m];
    }
    y[pair * N + i] += g * yi;
  }
}
