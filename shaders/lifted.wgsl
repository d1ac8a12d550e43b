// Kernel-upscaled ("lifted") state branch, forward (SPEC §6; reference lib/ref/lifted.ts).
//
// Two entry points per layer:
//   features  one workgroup per (row, head), row = b·T + t: the token-parallel part
//               φ(kk), φ(r) (Gaussian RBF over the support vectors, or the identity),
//               z = R φ(kk), e = z / max(‖z‖, 1e-12), q = ρ R φ(r / ρ) (ρ = max(‖r‖, 1e-12)
//               with normalisedRead, else 1), and the head means d̄ = exp(mean log d), ā = mean a.
//   scan      one workgroup per (b, head), one invocation per value row i of Ŝ (N × M), walking
//               t = 0 … T−1:  p_i = Ŝ_i · e;  Ŝ_i ← Ŝ_i ⊙ D − p_i b;  y_i += Ŝ_i · q
//               with D = d̄·1, b = ā e (head means) or D = d, b = e ⊙ a (per channel, M = N).
//
// Ŝ stays in the storage buffer (updated in place, one row per invocation: no barriers); a row
// of M = 4N = 256 floats is too large for registers and N·M floats too large for workgroup
// memory.
//
// flags: bit 0 identity feature map, bit 1 head means, bit 2 normalised read.

struct Params {
  rows: u32, // B·T
  H: u32,
  nx: u32, // features: workgroups along x (pair = wid.x + wid.y·nx)
  flags: u32,
  B: u32, // scan
  T: u32, // scan
  stateOff: u32, // scan: element offset of this layer's (B, H, N, M) block in state
  _pad: u32,
}

override N: u32 = 64u;
override M: u32 = 256u;
const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;

// ---- features ----
@group(0) @binding(1) var<storage, read> kk: array<f32>; // (rows, H, N)
@group(0) @binding(2) var<storage, read> r: array<f32>; // (rows, H, N)
@group(0) @binding(3) var<storage, read> d: array<f32>; // (rows, H, N) decay
@group(0) @binding(4) var<storage, read> a: array<f32>; // (rows, H, N)
@group(0) @binding(5) var<storage, read> R: array<f32>; // (H, M, M) mixing, z = R φ
@group(0) @binding(6) var<storage, read> support: array<f32>; // (H, M, N) Gaussian map only
@group(0) @binding(7) var<storage, read> gamma: array<f32>; // (H) Gaussian map only
@group(0) @binding(8) var<storage, read_write> e: array<f32>; // (rows, H, M) unit edit direction
@group(0) @binding(9) var<storage, read_write> q: array<f32>; // (rows, H, M) read vector
@group(0) @binding(10) var<storage, read_write> aux: array<f32>; // (rows, H, 4) ‖z‖, ρ, d̄, ā

var<workgroup> phiK: array<f32, M>;
var<workgroup> phiR: array<f32, M>;
var<workgroup> zK: array<f32, M>;

fn identityMap() -> bool { return (p.flags & 1u) != 0u; }
fn headMeans() -> bool { return (p.flags & 2u) != 0u; }
fn normalisedRead() -> bool { return (p.flags & 4u) != 0u; }

@compute @workgroup_size(WG)
fn features(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let pair = wid.x + wid.y * p.nx;
  if (pair >= p.rows * p.H) { return; }
  let h = pair % p.H;
  let base = pair * N; // (rows, H, N) is (rows, C) with C = H·N
  var rn = 1.0;
  if (normalisedRead()) {
    var s = 0.0;
    for (var j = 0u; j < N; j++) { s += r[base + j] * r[base + j]; }
    rn = max(sqrt(s), 1e-12);
  }
  for (var m = li; m < M; m += WG) {
    if (identityMap()) {
      phiK[m] = kk[base + m];
      phiR[m] = r[base + m] / rn;
    } else {
      let c = (h * M + m) * N;
      var dk = 0.0;
      var dr = 0.0;
      for (var j = 0u; j < N; j++) {
        let cj = support[c + j];
        let x = kk[base + j] - cj;
        let y = r[base + j] / rn - cj;
        dk += x * x;
        dr += y * y;
      }
      phiK[m] = exp(-gamma[h] * dk);
      phiR[m] = exp(-gamma[h] * dr);
    }
  }
  workgroupBarrier();
  let fo = pair * M;
  for (var m = li; m < M; m += WG) {
    let rb = (h * M + m) * M;
    var zk = 0.0;
    var zr = 0.0;
    for (var j = 0u; j < M; j++) {
      let w = R[rb + j];
      zk += w * phiK[j];
      zr += w * phiR[j];
    }
    zK[m] = zk;
    q[fo + m] = zr * rn;
  }
  workgroupBarrier();
  var n2 = 0.0;
  for (var j = 0u; j < M; j++) { n2 += zK[j] * zK[j]; }
  let zn = max(sqrt(n2), 1e-12);
  for (var m = li; m < M; m += WG) { e[fo + m] = zK[m] / zn; }
  if (li == 0u) {
    var dBar = 0.0;
    var aBar = 0.0;
    if (headMeans()) {
      var ls = 0.0;
      var aSum = 0.0;
      for (var j = 0u; j < N; j++) {
        ls += log(d[base + j]);
        aSum += a[base + j];
      }
      dBar = exp(ls / f32(N));
      aBar = aSum / f32(N);
    }
    aux[pair * 4u + 0u] = zn;
    aux[pair * 4u + 1u] = rn;
    aux[pair * 4u + 2u] = dBar;
    aux[pair * 4u + 3u] = aBar;
  }
}

// ---- scan ----
@group(0) @binding(1) var<storage, read> se: array<f32>; // (rows, H, M)
@group(0) @binding(2) var<storage, read> sq: array<f32>; // (rows, H, M)
@group(0) @binding(3) var<storage, read> saux: array<f32>; // (rows, H, 4)
@group(0) @binding(4) var<storage, read> sd: array<f32>; // (rows, H, N)
@group(0) @binding(5) var<storage, read> sa: array<f32>; // (rows, H, N)
@group(0) @binding(6) var<storage, read_write> state: array<f32>; // (·, B, H, N, M) at stateOff
@group(0) @binding(7) var<storage, read_write> y: array<f32>; // (rows, H, N), added to

@compute @workgroup_size(N)
fn scan(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) i: u32) {
  let bh = wid.x;
  let b = bh / p.H;
  let h = bh % p.H;
  let sb = p.stateOff + (bh * N + i) * M;
  let means = headMeans();
  for (var t = 0u; t < p.T; t++) {
    let pair = (b * p.T + t) * p.H + h;
    let fo = pair * M;
    let base = pair * N;
    var pi = 0.0;
    for (var m = 0u; m < M; m++) { pi += state[sb + m] * se[fo + m]; }
    var yi = 0.0;
    if (means) {
      let dBar = saux[pair * 4u + 2u];
      let c = pi * saux[pair * 4u + 3u];
      for (var m = 0u; m < M; m++) {
        let s = state[sb + m] * dBar - c * se[fo + m];
        state[sb + m] = s;
        yi += s * sq[fo + m];
      }
    } else {
      for (var m = 0u; m < M; m++) {
        let s = state[sb + m] * sd[base + m] - pi * se[fo + m] * sa[base + m];
        state[sb + m] = s;
        yi += s * sq[fo + m];
      }
    }
    y[base + i] += yi;
  }
}
