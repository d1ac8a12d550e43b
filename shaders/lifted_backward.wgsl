// Backward of the lifted branch (SPEC §6; reference liftedBackward in lib/ref/lifted.ts).
//
// scan_backward  one workgroup per (b, head), N invocations. Ŝ_{t−1} is rebuilt from
//   checkpoints every CHUNK tokens and an exact recompute of each chunk forward (exact
//   inversion of Ŝ(d̄ I − ā e eᵀ) divides by d̄ − ā, which can be near 0). Walking back with
//   G = dL/dŜ_t (N × M, in storage), per token:
//     rows    (invocation = i):  G[i,:] += dy_i q;  p_i = Ŝ_{t−1}[i,:]·e;  dp_i = −G[i,:]·b
//     columns (invocation = m, m += N):
//       dq_m = Σ_i Ŝ_t[i,m] dy_i;  db_m = −Σ_i G[i,m] p_i;  deS_m = Σ_i Ŝ_{t−1}[i,m] dp_i;
//       dD_m = Σ_i G[i,m] Ŝ_{t−1}[i,m];  G[:,m] ← G[:,m] D_m + dp e_m
//   and writes dfeat = (dq, deS, db, dD) per (row, head); after t = 0, G = dL/dŜ0.
// features_backward  one workgroup per (row, head): from dfeat through b, D (head means or
//   per channel), the normalisation of e, R and φ into dkk, dr, dd, da (added to).
// (The batch sum of dŜ0 is shaders/sum_batch.wgsl.)
//
// Scratch per workgroup (slot = wid.x): ckpt (nChunks, N, M), sp (CHUNK, N, M) = Ŝ_{t−1} of
// the chunk's tokens, G (N, M).

const CHUNK: u32 = 16u;
const WG: u32 = 64u;

struct Params {
  rows: u32, // B·T
  H: u32,
  nx: u32, // features_backward: workgroups along x
  flags: u32, // bit 0 identity map, bit 1 head means, bit 2 normalised read
  B: u32,
  T: u32,
  nChunks: u32, // ceil(T / CHUNK)
  s0Off: u32, // element offset of the (B or 1, H, N, M) initial state in s0
  s0Stride: u32, // elements between sequences' initial states (0 when shared)
  ds0Off: u32, // element offset of the (B, H, N, M) block in ds0
}

override N: u32 = 64u;
override M: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;

fn headMeans() -> bool { return (p.flags & 2u) != 0u; }
fn identityMap() -> bool { return (p.flags & 1u) != 0u; }
fn normalisedRead() -> bool { return (p.flags & 4u) != 0u; }

// ---- scan_backward ----
@group(0) @binding(1) var<storage, read> e: array<f32>; // (rows, H, M)
@group(0) @binding(2) var<storage, read> q: array<f32>; // (rows, H, M)
@group(0) @binding(3) var<storage, read> aux: array<f32>; // (rows, H, 4) ‖z‖, ρ, d̄, ā
@group(0) @binding(4) var<storage, read> d: array<f32>; // (rows, H, N)
@group(0) @binding(5) var<storage, read> a: array<f32>; // (rows, H, N)
@group(0) @binding(6) var<storage, read> dy: array<f32>; // (rows, H, N) gradient of the output
@group(0) @binding(7) var<storage, read> s0: array<f32>; // initial Ŝ, see s0Off / s0Stride
@group(0) @binding(8) var<storage, read_write> dfeat: array<f32>; // (rows, H, 4, M)
@group(0) @binding(9) var<storage, read_write> ds0: array<f32>; // (B, H, N, M) at ds0Off
@group(0) @binding(10) var<storage, read_write> scratch: array<f32>; // (B·H, slot)

var<workgroup> wP: array<f32, N>;
var<workgroup> wDp: array<f32, N>;
var<workgroup> wDy: array<f32, N>;

fn slotSize() -> u32 {
  return (p.nChunks + CHUNK + 1u) * N * M;
}

fn editD(pair: u32, m: u32) -> f32 {
  if (headMeans()) { return aux[pair * 4u + 2u]; }
  return d[pair * N + m];
}

fn editB(pair: u32, m: u32) -> f32 {
  if (headMeans()) { return aux[pair * 4u + 3u] * e[pair * M + m]; }
  return e[pair * M + m] * a[pair * N + m];
}

// One token on row i: scratch[dst..] = step(scratch[src..]) (src may equal dst).
fn stepRow(src: u32, dst: u32, pair: u32) {
  var pi = 0.0;
  for (var m = 0u; m < M; m++) { pi += scratch[src + m] * e[pair * M + m]; }
  for (var m = 0u; m < M; m++) {
    scratch[dst + m] = scratch[src + m] * editD(pair, m) - pi * editB(pair, m);
  }
}

@compute @workgroup_size(N)
fn scan_backward(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(local_invocation_index) i: u32) {
  let bh = wid.x;
  let b = bh / p.H;
  let h = bh % p.H;
  let NM = N * M;
  let slot = bh * slotSize();
  let spBase = slot + p.nChunks * NM;
  let gBase = spBase + CHUNK * NM;
  let row = i * M;
  // 1. checkpoints: ckpt[0] = Ŝ0, ckpt[c] = state before chunk c
  let s0b = p.s0Off + b * p.s0Stride + h * NM + row;
  for (var m = 0u; m < M; m++) {
    scratch[slot + row + m] = s0[s0b + m];
    scratch[gBase + row + m] = 0.0;
  }
  for (var c = 1u; c < p.nChunks; c++) {
    let src = slot + (c - 1u) * NM + row;
    let dst = slot + c * NM + row;
    for (var t = (c - 1u) * CHUNK; t < c * CHUNK; t++) {
      let pair = (b * p.T + t) * p.H + h;
      if (t == (c - 1u) * CHUNK) { stepRow(src, dst, pair); } else { stepRow(dst, dst, pair); }
    }
  }
  // 2. chunks backwards
  for (var cc = 0u; cc < p.nChunks; cc++) {
    let c = p.nChunks - 1u - cc;
    let t0 = c * CHUNK;
    let len = min(CHUNK, p.T - t0);
    storageBarrier(); // the previous chunk's column phase is done with sp
    for (var m = 0u; m < M; m++) { scratch[spBase + row + m] = scratch[slot + c * NM + row + m]; }
    for (var tt = 1u; tt < len; tt++) {
      let pair = (b * p.T + t0 + tt - 1u) * p.H + h;
      stepRow(spBase + (tt - 1u) * NM + row, spBase + tt * NM + row, pair);
    }
    storageBarrier();
    for (var tr = 0u; tr < len; tr++) {
      let tt = len - 1u - tr;
      let pair = (b * p.T + t0 + tt) * p.H + h;
      let sp = spBase + tt * NM;
      // rows
      let dyi = dy[pair * N + i];
      var pi = 0.0;
      var dpi = 0.0;
      for (var m = 0u; m < M; m++) {
        let g = scratch[gBase + row + m] + dyi * q[pair * M + m];
        scratch[gBase + row + m] = g;
        pi += scratch[sp + row + m] * e[pair * M + m];
        dpi -= g * editB(pair, m);
      }
      wP[i] = pi;
      wDp[i] = dpi;
      wDy[i] = dyi;
      storageBarrier();
      workgroupBarrier();
      // columns
      for (var m = i; m < M; m += N) {
        let D = editD(pair, m);
        let bm = editB(pair, m);
        let em = e[pair * M + m];
        var dq = 0.0;
        var db = 0.0;
        var deS = 0.0;
        var dD = 0.0;
        for (var k = 0u; k < N; k++) {
          let prev = scratch[sp + k * M + m];
          let g = scratch[gBase + k * M + m];
          dq += (prev * D - wP[k] * bm) * wDy[k];
          db -= g * wP[k];
          deS += prev * wDp[k];
          dD += g * prev;
          scratch[gBase + k * M + m] = g * D + wDp[k] * em;
        }
        let o = pair * 4u * M + m;
        dfeat[o] = dq;
        dfeat[o + M] = deS;
        dfeat[o + 2u * M] = db;
        dfeat[o + 3u * M] = dD;
      }
      storageBarrier();
      workgroupBarrier();
    }
  }
  let ob = p.ds0Off + bh * NM + row;
  for (var m = 0u; m < M; m++) { ds0[ob + m] = scratch[gBase + row + m]; }
}

// ---- features_backward ----
@group(0) @binding(1) var<storage, read> fkk: array<f32>; // (rows, H, N)
@group(0) @binding(2) var<storage, read> fr: array<f32>; // (rows, H, N)
@group(0) @binding(3) var<storage, read> fd: array<f32>; // (rows, H, N)
@group(0) @binding(4) var<storage, read> fa: array<f32>; // (rows, H, N)
@group(0) @binding(5) var<storage, read> R: array<f32>; // (H, M, M)
@group(0) @binding(6) var<storage, read> support: array<f32>; // (H, M, N)
@group(0) @binding(7) var<storage, read> gamma: array<f32>; // (H)
@group(0) @binding(8) var<storage, read> fe: array<f32>; // (rows, H, M)
@group(0) @binding(9) var<storage, read> fq: array<f32>; // (rows, H, M)
@group(0) @binding(10) var<storage, read> faux: array<f32>; // (rows, H, 4)
@group(0) @binding(11) var<storage, read> fdfeat: array<f32>; // (rows, H, 4, M)
@group(0) @binding(12) var<storage, read_write> dkk: array<f32>; // (rows, H, N) added to
@group(0) @binding(13) var<storage, read_write> dr: array<f32>; // (rows, H, N) added to
@group(0) @binding(14) var<storage, read_write> dd: array<f32>; // (rows, H, N) added to
@group(0) @binding(15) var<storage, read_write> da: array<f32>; // (rows, H, N) added to

var<workgroup> wDz: array<f32, M>; // de, then dz
var<workgroup> wDq: array<f32, M>; // dq (scaled by ρ with the normalised read)
var<workgroup> wPhiK: array<f32, M>; // φ(kk) · dφ(kk)
var<workgroup> wPhiR: array<f32, M>; // φ(r̂) · dφ(r̂)
var<workgroup> wDhat: array<f32, N>; // dL/dr̂ (normalised read)

@compute @workgroup_size(WG)
fn features_backward(@builtin(workgroup_id) wid: vec3<u32>,
                     @builtin(local_invocation_index) li: u32) {
  let pair = wid.x + wid.y * p.nx;
  if (pair >= p.rows * p.H) { return; }
  let h = pair % p.H;
  let base = pair * N;
  let fo = pair * M;
  let df = pair * 4u * M;
  let zn = faux[pair * 4u + 0u];
  let rn = faux[pair * 4u + 1u];
  let dBar = faux[pair * 4u + 2u];
  let aBar = faux[pair * 4u + 3u];
  let means = headMeans();
  // de = Ŝᵀdp + ∂b/∂e · db; dq (× ρ)
  for (var m = li; m < M; m += WG) {
    let db = fdfeat[df + 2u * M + m];
    var de = fdfeat[df + M + m];
    if (means) { de += aBar * db; } else { de += fa[base + m] * db; }
    wDz[m] = de;
    wDq[m] = fdfeat[df + m] * rn;
  }
  workgroupBarrier();
  var dot = 0.0;
  var dA = 0.0;
  var dDsum = 0.0;
  var dRho = 0.0;
  for (var m = 0u; m < M; m++) {
    dot += fe[fo + m] * wDz[m];
    let db = fdfeat[df + 2u * M + m];
    dA += fe[fo + m] * db;
    dDsum += fdfeat[df + 3u * M + m];
    dRho += (fq[fo + m] / rn) * (wDq[m] / rn);
  }
  workgroupBarrier();
  for (var m = li; m < M; m += WG) {
    let de = wDz[m];
    if (zn > 1e-12) { wDz[m] = (de - fe[fo + m] * dot) / zn; } else { wDz[m] = de / zn; }
  }
  workgroupBarrier();
  // dφ = Rᵀ dz, Rᵀ dq; times φ for the Gaussian map
  for (var j = li; j < M; j += WG) {
    var gk = 0.0;
    var gr = 0.0;
    for (var m = 0u; m < M; m++) {
      let w = R[(h * M + m) * M + j];
      gk += w * wDz[m];
      gr += w * wDq[m];
    }
    if (!identityMap()) {
      let c = (h * M + j) * N;
      var d2k = 0.0;
      var d2r = 0.0;
      for (var k = 0u; k < N; k++) {
        let cj = support[c + k];
        let x = fkk[base + k] - cj;
        let y = fr[base + k] / rn - cj;
        d2k += x * x;
        d2r += y * y;
      }
      gk *= exp(-gamma[h] * d2k);
      gr *= exp(-gamma[h] * d2r);
    }
    wPhiK[j] = gk;
    wPhiR[j] = gr;
  }
  workgroupBarrier();
  // per channel j: dkk, dr̂ through φ; dd, da through D and b
  for (var j = li; j < N; j += WG) {
    var gk = 0.0;
    var gr = 0.0;
    let rh = fr[base + j] / rn;
    if (identityMap()) {
      gk = wPhiK[j];
      gr = wPhiR[j];
    } else {
      let g2 = -2.0 * gamma[h];
      for (var m = 0u; m < M; m++) {
        let cj = support[(h * M + m) * N + j];
        gk += g2 * wPhiK[m] * (fkk[base + j] - cj);
        gr += g2 * wPhiR[m] * (rh - cj);
      }
    }
    dkk[base + j] += gk;
    wDhat[j] = gr;
    if (means) {
      dd[base + j] += dDsum * dBar / (f32(N) * fd[base + j]);
      da[base + j] += dA / f32(N);
    } else {
      dd[base + j] += fdfeat[df + 3u * M + j];
      da[base + j] += fe[fo + j] * fdfeat[df + 2u * M + j];
    }
  }
  workgroupBarrier();
  if (normalisedRead()) {
    var dh = 0.0;
    for (var k = 0u; k < N; k++) { dh += (fr[base + k] / rn) * wDhat[k]; }
    for (var j = li; j < N; j += WG) {
      let rh = fr[base + j] / rn;
      if (rn > 1e-12) {
        dr[base + j] += (wDhat[j] - rh * dh) / rn + rh * dRho;
      } else {
        dr[base + j] += wDhat[j] / rn;
      }
    }
  } else {
    for (var j = li; j < N; j += WG) { dr[base + j] += wDhat[j]; }
  }
}
