// Backward of the lifted branch (docs/MATH.md §5; reference liftedBackward in lib/ref/lifted.ts).
//
// scan_backward  one workgroup per (b, head), N invocations. Ŝ_{t−1} is rebuilt from
//   checkpoints every CHUNK tokens and an exact recompute of each chunk forward (exact
//   inversion of Ŝ(d̄ I − ā e eᵀ) divides by d̄ − ā, which can be near 0). Walking back with
//   G = dL/dŜ_t (N × M, in storage), per token:
//     rows    (invocation = i):  G[i,:] += g dy_i q;  p_i = Ŝ_{t−1}[i,:]·e;  dp_i = −G[i,:]·b;
//                                dv_i = G[i,:]·u (writes)
//     columns (invocation = m, m += N):
//       dq_m = g Σ_i Ŝ_t[i,m] dy_i;  dg += q_m Σ_i Ŝ_t[i,m] dy_i;  db_m = −Σ_i G[i,m] p_i;
//       deS_m = Σ_i Ŝ_{t−1}[i,m] dp_i;  dD_m = Σ_i G[i,m] Ŝ_{t−1}[i,m];  du_m = Σ_i G[i,m] v_i;
//       G[:,m] ← G[:,m] D_m + dp e_m
//   and writes (dq, deS, db, dD, du) and dv per (row, head) into dfeat; after t = 0 it writes
//   G = dL/dŜ0 and dL/dg (0 in memory mode) into the scratch's result regions.
// features_backward  one workgroup per (row, head): from dfeat through b, D (head means or
//   per channel), the scaled features e, q, u (normalisation, R, φ, input length) into the
//   per-channel gradients of kk, r, k, d, a, written into dfeat's vector block.
// scatter  one invocation per (row, head, j): adds the vector block into dkk, dr, dk, dd, da,
//   dv (the model's gradient buffers).
// (The batch sums of dŜ0 and dg are shaders/sum_batch.wgsl.)
// This file is over 400 lines on purpose: its three entry points share the bindings, the flag
// helpers and the feature-record accessors below, and WGSL has no imports, so splitting it would
// copy those or route one shader through lib/kernels/codegen.ts's compose step for no gain.
//
// dfeat record of one (row, head) at pair·DF, DF = 5M + 6N:
//   dq, deS, db, dD, du (M each), then dkk, dr, dk, dd, da, dv (N each).
// Scratch: per (b, h) slot (nChunks + CHUNK + 1)·N·M = ckpt (nChunks, N, M), sp (CHUNK, N, M)
//   = Ŝ_{t−1} of the chunk's tokens, G (N, M); then dŜ0 (B, H, N, M) at dsOff and dg (B, H)
//   at dgOff. The features record and the arena are the forward's (shaders/lifted.wgsl).

const CHUNK: u32 = 16u;
const WG: u32 = 64u;

struct Params {
  rows: u32, // B·T
  H: u32,
  nx: u32, // features_backward / scatter: workgroups along x
  flags: u32, // bit 0 identity map, bit 1 head means, bit 2 normalised read, bit 3 writes
  B: u32,
  T: u32,
  nChunks: u32, // ceil(T / CHUNK)
  s0Off: u32, // element offset of the (B or 1, H, N, M) initial state in s0
  s0Stride: u32, // elements between sequences' initial states (0 when shared)
  F: u32, // floats per features record
  supOff: u32,
  gamOff: u32,
  gateOff: u32,
  dsOff: u32, // scratch offset of the dŜ0 result
  dgOff: u32, // scratch offset of the dg result
  _pad: u32,
}

override N: u32 = 64u;
override M: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;

fn identityMap() -> bool { return (p.flags & 1u) != 0u; }
fn headMeans() -> bool { return (p.flags & 2u) != 0u; }
fn normalisedRead() -> bool { return (p.flags & 4u) != 0u; }
fn writes() -> bool { return (p.flags & 8u) != 0u; }
fn DF() -> u32 { return 5u * M + 6u * N; }

// ---- scan_backward ----
@group(0) @binding(1) var<storage, read> feat: array<f32>; // (rows, H, F)
@group(0) @binding(2) var<storage, read> v: array<f32>; // (rows, H, N) written value
@group(0) @binding(3) var<storage, read> dy: array<f32>; // (rows, H, N) gradient of the output
@group(0) @binding(4) var<storage, read> s0: array<f32>; // initial Ŝ, see s0Off / s0Stride
@group(0) @binding(5) var<storage, read> gate: array<f32>; // H gates at gateOff
@group(0) @binding(6) var<storage, read_write> dfeat: array<f32>; // (rows, H, DF)
@group(0) @binding(7) var<storage, read_write> scratch: array<f32>;

var<workgroup> wP: array<f32, N>;
var<workgroup> wDp: array<f32, N>;
var<workgroup> wDy: array<f32, N>;
var<workgroup> wV: array<f32, N>;
var<workgroup> wDg: array<f32, N>;

fn slotSize() -> u32 {
  return (p.nChunks + CHUNK + 1u) * N * M;
}

fn fE(fo: u32, m: u32) -> f32 { return feat[fo + 8u + m]; }
fn fQ(fo: u32, m: u32) -> f32 { return feat[fo + 8u + M + m]; }
fn fU(fo: u32, m: u32) -> f32 { return feat[fo + 8u + 2u * M + m]; }

fn editD(fo: u32, m: u32) -> f32 {
  if (headMeans()) { return feat[fo + 2u]; }
  return feat[fo + 8u + 3u * M + m];
}

fn editB(fo: u32, m: u32) -> f32 {
  if (headMeans()) { return feat[fo + 3u] * fE(fo, m); }
  return feat[fo + 8u + 4u * M + m];
}

fn valueOf(pair: u32, i: u32) -> f32 {
  if (writes()) { return v[pair * N + i]; }
  return 0.0;
}

// One token on row i: scratch[dst..] = step(scratch[src..]) (src may equal dst).
fn stepRow(src: u32, dst: u32, pair: u32, i: u32) {
  let fo = pair * p.F;
  var pi = 0.0;
  for (var m = 0u; m < M; m++) { pi += scratch[src + m] * fE(fo, m); }
  let vi = valueOf(pair, i);
  for (var m = 0u; m < M; m++) {
    scratch[dst + m] = scratch[src + m] * editD(fo, m) - pi * editB(fo, m) + vi * fU(fo, m);
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
  let g = gate[p.gateOff + h];
  var dgAcc = 0.0;
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
      if (t == (c - 1u) * CHUNK) { stepRow(src, dst, pair, i); } else { stepRow(dst, dst, pair, i); }
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
      stepRow(spBase + (tt - 1u) * NM + row, spBase + tt * NM + row, pair, i);
    }
    storageBarrier();
    for (var tr = 0u; tr < len; tr++) {
      let tt = len - 1u - tr;
      let pair = (b * p.T + t0 + tt) * p.H + h;
      let fo = pair * p.F;
      let df = pair * DF();
      let sp = spBase + tt * NM;
      // rows
      let dyi = dy[pair * N + i];
      let vi = valueOf(pair, i);
      var pi = 0.0;
      var dpi = 0.0;
      var dvi = 0.0;
      for (var m = 0u; m < M; m++) {
        let gm = scratch[gBase + row + m] + g * dyi * fQ(fo, m);
        scratch[gBase + row + m] = gm;
        pi += scratch[sp + row + m] * fE(fo, m);
        dpi -= gm * editB(fo, m);
        dvi += gm * fU(fo, m);
      }
      wP[i] = pi;
      wDp[i] = dpi;
      wDy[i] = dyi;
      wV[i] = vi;
      dfeat[df + 5u * M + 5u * N + i] = dvi;
      storageBarrier();
      workgroupBarrier();
      // columns
      for (var m = i; m < M; m += N) {
        let D = editD(fo, m);
        let bm = editB(fo, m);
        let em = fE(fo, m);
        let um = fU(fo, m);
        var sy = 0.0;
        var db = 0.0;
        var deS = 0.0;
        var dD = 0.0;
        var du = 0.0;
        for (var k = 0u; k < N; k++) {
          let prev = scratch[sp + k * M + m];
          let gk = scratch[gBase + k * M + m];
          sy += (prev * D - wP[k] * bm + wV[k] * um) * wDy[k];
          db -= gk * wP[k];
          deS += prev * wDp[k];
          dD += gk * prev;
          du += gk * wV[k];
          scratch[gBase + k * M + m] = gk * D + wDp[k] * em;
        }
        dgAcc += sy * fQ(fo, m);
        dfeat[df + m] = g * sy;
        dfeat[df + M + m] = deS;
        dfeat[df + 2u * M + m] = db;
        dfeat[df + 3u * M + m] = dD;
        dfeat[df + 4u * M + m] = du;
      }
      storageBarrier();
      workgroupBarrier();
    }
  }
  let ob = p.dsOff + bh * NM + row;
  for (var m = 0u; m < M; m++) { scratch[ob + m] = scratch[gBase + row + m]; }
  wDg[i] = dgAcc;
  workgroupBarrier();
  if (i == 0u) {
    var s = 0.0;
    if (writes()) { for (var k = 0u; k < N; k++) { s += wDg[k]; } }
    scratch[p.dgOff + bh] = s;
  }
}

// ---- features_backward ----
@group(0) @binding(1) var<storage, read> fkk: array<f32>; // (rows, H, N)
@group(0) @binding(2) var<storage, read> fr: array<f32>; // (rows, H, N)
@group(0) @binding(3) var<storage, read> fk: array<f32>; // (rows, H, N) written key
@group(0) @binding(4) var<storage, read> fd: array<f32>; // (rows, H, N)
@group(0) @binding(5) var<storage, read> fa: array<f32>; // (rows, H, N)
@group(0) @binding(6) var<storage, read> arena: array<f32>; // R, support, γ
@group(0) @binding(7) var<storage, read> ffeat: array<f32>; // (rows, H, F)
@group(0) @binding(8) var<storage, read_write> fdfeat: array<f32>; // (rows, H, DF)

var<workgroup> wDz: array<f32, M>; // de, then dz (edit direction)
var<workgroup> wDq: array<f32, M>; // dq, then dz of the read
var<workgroup> wDu: array<f32, M>; // du, then dz of the write key
var<workgroup> wPhiK: array<f32, M>; // φ(kk) · dφ(kk)
var<workgroup> wPhiR: array<f32, M>; // φ(r̂) · dφ(r̂)
var<workgroup> wPhiU: array<f32, M>; // φ(k̂) · dφ(k̂)
var<workgroup> wRed: array<f32, 8>; // dot products: e·de, ẑ_q·dq, ẑ_u·du, …
var<workgroup> wDhat: array<f32, N>; // dL/dr̂
var<workgroup> wDkh: array<f32, N>; // dL/dk̂

fn bE(fo: u32, m: u32) -> f32 { return ffeat[fo + 8u + m]; }
fn bQ(fo: u32, m: u32) -> f32 { return ffeat[fo + 8u + M + m]; }
fn bU(fo: u32, m: u32) -> f32 { return ffeat[fo + 8u + 2u * M + m]; }

@compute @workgroup_size(WG)
fn features_backward(@builtin(workgroup_id) wid: vec3<u32>,
                     @builtin(local_invocation_index) li: u32) {
  let pair = wid.x + wid.y * p.nx;
  if (pair >= p.rows * p.H) { return; }
  let h = pair % p.H;
  let base = pair * N;
  let fo = pair * p.F;
  let df = pair * DF();
  let vb = df + 5u * M; // the vector block
  let zn = ffeat[fo + 0u];
  let rn = ffeat[fo + 1u];
  let dBar = ffeat[fo + 2u];
  let aBar = ffeat[fo + 3u];
  let kn = ffeat[fo + 4u];
  let un = ffeat[fo + 5u];
  let means = headMeans();
  let wr = writes();
  // de = Ŝᵀdp + ∂b/∂e · db;  dẑ_q = ρ_r dq;  dẑ_u = ρ_k du
  for (var m = li; m < M; m += WG) {
    let db = fdfeat[df + 2u * M + m];
    var de = fdfeat[df + M + m];
    if (means) { de += aBar * db; } else { de += fa[base + m] * db; }
    wDz[m] = de;
    wDq[m] = fdfeat[df + m] * rn;
    if (wr) { wDu[m] = fdfeat[df + 4u * M + m] * kn; } else { wDu[m] = 0.0; }
  }
  workgroupBarrier();
  if (li == 0u) {
    var dot = 0.0;
    var dA = 0.0;
    var dDsum = 0.0;
    var dRho = 0.0;
    var dotU = 0.0;
    var dKn = 0.0;
    for (var m = 0u; m < M; m++) {
      dot += bE(fo, m) * wDz[m];
      dA += bE(fo, m) * fdfeat[df + 2u * M + m];
      dDsum += fdfeat[df + 3u * M + m];
      dRho += (bQ(fo, m) / rn) * (wDq[m] / rn); // ẑ_q · dq
      if (wr) {
        let uh = bU(fo, m) / kn;
        dotU += uh * wDu[m];
        dKn += uh * (wDu[m] / kn); // ẑ_u · du
      }
    }
    wRed[0] = dot;
    wRed[1] = dA;
    wRed[2] = dDsum;
    wRed[3] = dRho;
    wRed[4] = dotU;
    wRed[5] = dKn;
  }
  workgroupBarrier();
  let dot = wRed[0];
  let dotU = wRed[4];
  for (var m = li; m < M; m += WG) {
    let de = wDz[m];
    if (zn > 1e-12) { wDz[m] = (de - bE(fo, m) * dot) / zn; } else { wDz[m] = de / zn; }
    if (wr) {
      let du = wDu[m];
      let uh = bU(fo, m) / kn;
      if (un > 1e-12) { wDu[m] = (du - uh * dotU) / un; } else { wDu[m] = du / un; }
    }
  }
  workgroupBarrier();
  // dφ = Rᵀ dz; times φ for the Gaussian map
  for (var j = li; j < M; j += WG) {
    var gk = 0.0;
    var gr = 0.0;
    var gu = 0.0;
    for (var m = 0u; m < M; m++) {
      let w = arena[(h * M + m) * M + j];
      gk += w * wDz[m];
      gr += w * wDq[m];
      if (wr) { gu += w * wDu[m]; }
    }
    if (!identityMap()) {
      let c = p.supOff + (h * M + j) * N;
      var d2k = 0.0;
      var d2r = 0.0;
      var d2u = 0.0;
      for (var q = 0u; q < N; q++) {
        let cj = arena[c + q];
        let x = fkk[base + q] - cj;
        let y = fr[base + q] / rn - cj;
        d2k += x * x;
        d2r += y * y;
        if (wr) {
          let w = fk[base + q] / kn - cj;
          d2u += w * w;
        }
      }
      let ga = arena[p.gamOff + h];
      gk *= exp(-ga * d2k);
      gr *= exp(-ga * d2r);
      gu *= exp(-ga * d2u);
    }
    wPhiK[j] = gk;
    wPhiR[j] = gr;
    wPhiU[j] = gu;
  }
  workgroupBarrier();
  // per channel j: dkk, dr̂, dk̂ through φ; dd, da through D and b
  let dA = wRed[1];
  let dDsum = wRed[2];
  for (var j = li; j < N; j += WG) {
    var gk = 0.0;
    var gr = 0.0;
    var gu = 0.0;
    if (identityMap()) {
      gk = wPhiK[j];
      gr = wPhiR[j];
      gu = wPhiU[j];
    } else {
      let g2 = -2.0 * arena[p.gamOff + h];
      let rh = fr[base + j] / rn;
      let kh = fk[base + j] / kn;
      for (var m = 0u; m < M; m++) {
        let cj = arena[p.supOff + (h * M + m) * N + j];
        gk += g2 * wPhiK[m] * (fkk[base + j] - cj);
        gr += g2 * wPhiR[m] * (rh - cj);
        if (wr) { gu += g2 * wPhiU[m] * (kh - cj); }
      }
    }
    fdfeat[vb + j] = gk;
    wDhat[j] = gr;
    wDkh[j] = gu;
    if (means) {
      fdfeat[vb + 3u * N + j] = dDsum * dBar / (f32(N) * fd[base + j]);
      fdfeat[vb + 4u * N + j] = dA / f32(N);
    } else {
      fdfeat[vb + 3u * N + j] = fdfeat[df + 3u * M + j];
      fdfeat[vb + 4u * N + j] = bE(fo, j) * fdfeat[df + 2u * M + j];
    }
  }
  workgroupBarrier();
  // x̂ = x/ρ: dx = (dx̂ − x̂ (x̂·dx̂))/ρ + x̂ dρ  (below the floor: dx = dx̂/ρ)
  var dh = 0.0;
  var dkh = 0.0;
  for (var q = 0u; q < N; q++) {
    dh += (fr[base + q] / rn) * wDhat[q];
    if (wr) { dkh += (fk[base + q] / kn) * wDkh[q]; }
  }
  let dRho = wRed[3];
  let dKn = wRed[5];
  for (var j = li; j < N; j += WG) {
    if (normalisedRead()) {
      let rh = fr[base + j] / rn;
      if (rn > 1e-12) {
        fdfeat[vb + N + j] = (wDhat[j] - rh * dh) / rn + rh * dRho;
      } else {
        fdfeat[vb + N + j] = wDhat[j] / rn;
      }
    } else {
      fdfeat[vb + N + j] = wDhat[j];
    }
    var dk = 0.0;
    if (wr) {
      let kh = fk[base + j] / kn;
      if (kn > 1e-12) { dk = (wDkh[j] - kh * dkh) / kn + kh * dKn; } else { dk = wDkh[j] / kn; }
    }
    fdfeat[vb + 2u * N + j] = dk;
  }
}

// ---- scatter ----
@group(0) @binding(1) var<storage, read> sdfeat: array<f32>; // (rows, H, DF)
@group(0) @binding(2) var<storage, read_write> dkk: array<f32>; // (rows, H, N) added to
@group(0) @binding(3) var<storage, read_write> dr: array<f32>;
@group(0) @binding(4) var<storage, read_write> dk: array<f32>;
@group(0) @binding(5) var<storage, read_write> dd: array<f32>;
@group(0) @binding(6) var<storage, read_write> da: array<f32>;
@group(0) @binding(7) var<storage, read_write> dv: array<f32>;

@compute @workgroup_size(WG)
fn scatter(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let gi = (wid.x + wid.y * p.nx) * WG + li;
  if (gi >= p.rows * p.H * N) { return; }
  let pair = gi / N;
  let j = gi % N;
  let vb = pair * DF() + 5u * M;
  dkk[gi] += sdfeat[vb + j];
  dr[gi] += sdfeat[vb + N + j];
  dd[gi] += sdfeat[vb + 3u * N + j];
  da[gi] += sdfeat[vb + 4u * N + j];
  if (writes()) {
    dk[gi] += sdfeat[vb + 2u * N + j];
    dv[gi] += sdfeat[vb + 5u * N + j];
  }
}
