// Backward of the WKV-7 recurrence (SPEC §2) down to dL/dS0, one workgroup per (b, h), one
// invocation per value row i (N invocations, N ≤ 64).
//
// Rebuilding S_{t-1} backwards: state checkpoints every CHUNK = 16 tokens plus an exact
// recompute of each chunk forward from its checkpoint. Exact inversion
// S_{t-1} = (S_t − v kᵀ − sa βᵀ)/d was rejected: it divides by d ≥ 0.545 at every step, so f32
// rounding grows by up to 1/0.545 per token (≈ 1.6e4 over one 16-token chunk), while the
// recompute reproduces the forward's states bit for bit at the cost of one more forward pass.
//
// Scratch per workgroup (slot = wid.x), in storage:
//   ckpt[c]  (nChunks, N, N)  S before chunk c (ckpt[0] = S0)
//   sp[tt]   (CHUNK, N, N)    S_{t-1} for each token of the current chunk
//   sa[tt]   (CHUNK, N)       sa_t = S_{t-1} α_t
//
// Per token (walking backwards), dS lives in workgroup memory and two phases alternate:
//   rows    (invocation = i): dS[i,:] += dy_i rᵀ; dv_i = dS[i,:]·k; dsa_i = dS[i,:]·β
//   columns (invocation = j): dr_j = Σ_i S_t[i,j] dy_i, dk_j = Σ_i dS[i,j] v_i,
//                             dβ_j = Σ_i dS[i,j] sa_i, dd_j = Σ_i dS[i,j] S_{t-1}[i,j],
//                             dα_j = Σ_i S_{t-1}[i,j] dsa_i, then dS[:,j] ← dS[:,j] d_j + dsa α_j
// so every sum is thread-local and a token costs two workgroup barriers. With α = −kk and
// β = kk ⊙ a the kernel returns dkk = −dα + dβ ⊙ a and da = dβ ⊙ kk.

const CHUNK: u32 = 16u;

struct Params {
  B: u32,
  T: u32,
  H: u32,
  nChunks: u32, // ceil(T / CHUNK)
  bh0: u32, // first (b, h) pair of this dispatch (pair = b·H + h = bh0 + wid.x)
  s0Off: u32, // element offset of the initial state block in s0
  s0Stride: u32, // elements between sequences' initial states: H·N·N, or 0 when shared
  accumulate: u32, // 1: add dr, dk, dv into their buffers; 0: overwrite
  ds0Off: u32, // element offset of the (B, H, N, N) block in ds0
}

override N: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> r: array<f32>; // (B, T, H, N)
@group(0) @binding(2) var<storage, read> d: array<f32>; // (B, T, H, N) decay
@group(0) @binding(3) var<storage, read> k: array<f32>; // (B, T, H, N) after the k_a update
@group(0) @binding(4) var<storage, read> v: array<f32>; // (B, T, H, N)
@group(0) @binding(5) var<storage, read> kk: array<f32>; // (B, T, H, N)
@group(0) @binding(6) var<storage, read> a: array<f32>; // (B, T, H, N)
@group(0) @binding(7) var<storage, read> dy: array<f32>; // (B, T, H, N) gradient of y
@group(0) @binding(8) var<storage, read> s0: array<f32>; // (B or 1, H, N value, N key)
@group(0) @binding(9) var<storage, read_write> dr: array<f32>; // (B, T, H, N)
@group(0) @binding(10) var<storage, read_write> dd: array<f32>; // (B, T, H, N)
@group(0) @binding(11) var<storage, read_write> dk: array<f32>; // (B, T, H, N)
@group(0) @binding(12) var<storage, read_write> dv: array<f32>; // (B, T, H, N)
@group(0) @binding(13) var<storage, read_write> dkk: array<f32>; // (B, T, H, N)
@group(0) @binding(14) var<storage, read_write> da: array<f32>; // (B, T, H, N)
@group(0) @binding(15) var<storage, read_write> ds0: array<f32>; // (B, H, N value, N key)
@group(0) @binding(16) var<storage, read_write> scratch: array<f32>; // (pairs, slot) see above

var<workgroup> gS: array<f32, N * (N + 1u)>; // dS, row stride N + 1 (no bank conflicts)
var<workgroup> gDy: array<f32, N>;
var<workgroup> gV: array<f32, N>;
var<workgroup> gSa: array<f32, N>;
var<workgroup> gDsa: array<f32, N>;

fn slotSize() -> u32 {
  return (p.nChunks + CHUNK) * N * N + CHUNK * N;
}

// Run tokens [t0, t1) of the recurrence on row i held in `s`; when `keep`, store S_{t-1} and sa
// of each token in the chunk scratch.
fn forwardRow(s: ptr<function, array<f32, 64>>, i: u32, tb: u32, t0: u32, t1: u32, slot: u32,
              keep: bool) {
  let C = p.H * N;
  let spBase = slot + p.nChunks * N * N;
  let saBase = slot + (p.nChunks + CHUNK) * N * N;
  for (var t = t0; t < t1; t++) {
    let base = tb + t * C;
    var sa = 0.0;
    for (var j = 0u; j < N; j++) { sa -= (*s)[j] * kk[base + j]; }
    if (keep) {
      let o = spBase + (t - t0) * N * N + i * N;
      for (var j = 0u; j < N; j++) { scratch[o + j] = (*s)[j]; }
      scratch[saBase + (t - t0) * N + i] = sa;
    }
    let vi = v[base + i];
    for (var j = 0u; j < N; j++) {
      let q = base + j;
      (*s)[j] = (*s)[j] * d[q] + sa * (kk[q] * a[q]) + vi * k[q];
    }
  }
}

// Row phase of token t (invocation = value row i).
fn rowPhase(i: u32, q0: u32, tt: u32, slot: u32) {
  let saBase = slot + (p.nChunks + CHUNK) * N * N;
  let dyi = dy[q0 + i];
  let vi = v[q0 + i];
  var dvi = 0.0;
  var dsa = 0.0;
  for (var j = 0u; j < N; j++) {
    let q = q0 + j;
    let g = gS[i * (N + 1u) + j] + dyi * r[q];
    gS[i * (N + 1u) + j] = g;
    dvi += g * k[q];
    dsa += g * (kk[q] * a[q]);
  }
  if (p.accumulate != 0u) { dvi += dv[q0 + i]; }
  dv[q0 + i] = dvi;
  gDy[i] = dyi;
  gV[i] = vi;
  gSa[i] = scratch[saBase + tt * N + i];
  gDsa[i] = dsa;
}

// Column phase of token t (invocation = key column j).
fn columnPhase(j: u32, q0: u32, tt: u32, slot: u32) {
  let sp = slot + p.nChunks * N * N + tt * N * N;
  let q = q0 + j;
  let dj = d[q];
  let kj = k[q];
  let kkj = kk[q];
  let aj = a[q];
  let bj = kkj * aj;
  var sdr = 0.0;
  var sdk = 0.0;
  var sdb = 0.0;
  var sdd = 0.0;
  var sdal = 0.0;
  for (var i = 0u; i < N; i++) {
    let prev = scratch[sp + i * N + j];
    let cur = prev * dj + gSa[i] * bj + gV[i] * kj;
    let g = gS[i * (N + 1u) + j];
    sdr += cur * gDy[i];
    sdk += g * gV[i];
    sdb += g * gSa[i];
    sdd += g * prev;
    sdal += prev * gDsa[i];
    gS[i * (N + 1u) + j] = g * dj - gDsa[i] * kkj; // + dsa_i α_j with α = −kk
  }
  if (p.accumulate != 0u) {
    sdr += dr[q];
    sdk += dk[q];
  }
  dr[q] = sdr;
  dk[q] = sdk;
  dd[q] = sdd;
  dkk[q] = -sdal + sdb * aj;
  da[q] = sdb * kkj;
}

@compute @workgroup_size(N)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) i: u32) {
  let bh = p.bh0 + wid.x;
  let b = bh / p.H;
  let h = bh % p.H;
  let C = p.H * N;
  let tb = b * p.T * C + h * N; // element of (b, t = 0, h, 0)
  let slot = wid.x * slotSize();
  // 1. forward from S0, storing a checkpoint before every chunk
  var s: array<f32, 64>;
  let s0b = p.s0Off + b * p.s0Stride + (h * N + i) * N;
  for (var j = 0u; j < N; j++) { s[j] = s0[s0b + j]; }
  for (var c = 0u; c < p.nChunks; c++) {
    let o = slot + c * N * N + i * N;
    for (var j = 0u; j < N; j++) { scratch[o + j] = s[j]; }
    if (c + 1u < p.nChunks) {
      forwardRow(&s, i, tb, c * CHUNK, (c + 1u) * CHUNK, slot, false);
    }
  }
  for (var j = 0u; j < N; j++) { gS[i * (N + 1u) + j] = 0.0; }
  // 2. chunks backwards: recompute the chunk's states, then walk its tokens backwards
  for (var cc = 0u; cc < p.nChunks; cc++) {
    let c = p.nChunks - 1u - cc;
    let t0 = c * CHUNK;
    let t1 = min(t0 + CHUNK, p.T);
    storageBarrier(); // the previous chunk's column reads of sp are done
    let o = slot + c * N * N + i * N;
    for (var j = 0u; j < N; j++) { s[j] = scratch[o + j]; }
    forwardRow(&s, i, tb, t0, t1, slot, true);
    storageBarrier();
    workgroupBarrier();
    for (var tr = 0u; tr < t1 - t0; tr++) {
      let tt = t1 - t0 - 1u - tr;
      let q0 = tb + (t0 + tt) * C;
      rowPhase(i, q0, tt, slot);
      workgroupBarrier();
      columnPhase(i, q0, tt, slot);
      workgroupBarrier();
    }
  }
  let ob = p.ds0Off + (bh * N + i) * N;
  for (var j = 0u; j < N; j++) { ds0[ob + j] = gS[i * (N + 1u) + j]; }
}

struct SumParams {
  n: u32, // elements per batch item (H·N·N)
  B: u32,
  outOff: u32, // element offset in out
  accumulate: u32,
  nx: u32, // workgroups along x
  srcOff: u32, // element offset of the (B, n) block in src
}

@group(0) @binding(0) var<uniform> q: SumParams;
@group(0) @binding(1) var<storage, read> src: array<f32>; // (B, n) at srcOff
@group(0) @binding(2) var<storage, read_write> dst: array<f32>; // (n) at outOff

// dst[outOff + e] (+)= Σ_b src[b, e]: the gradient of an initial state shared by the batch.
@compute @workgroup_size(64)
fn sum_batch(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let e = (wid.x + wid.y * q.nx) * 64u + li;
  if (e >= q.n) { return; }
  var s = 0.0;
  for (var b = 0u; b < q.B; b++) { s += src[q.srcOff + b * q.n + e]; }
  if (q.accumulate != 0u) { s += dst[q.outOff + e]; }
  dst[q.outOff + e] = s;
}
