// Backward of the WKV-7 recurrence (docs/MATH.md §3) down to dL/dS0, in three barrier-free passes. Each
// pass runs over windows of tokens (one dispatch each) whose per-token vectors the host copies
// into 64 KiB uniform windows `u*` (see shaders/wkv7.wgsl for why: on llvmpipe storage and
// workgroup loads are scalar loops over the SIMD lanes and barriers are coroutine switches).
//
// With G_t = dS_t + dy_t r_tᵀ (dS_t: gradient of S_t from the tokens after t):
//   rows    dv_t = G_t k_t,  dsa_t = G_t β_t,  dS_{t-1} = G_t diag(d_t) + dsa_t α_tᵀ
//   columns dr_t = S_tᵀ dy_t,  dk_t = G_tᵀ v_t,  dβ_t = G_tᵀ sa_t,  dα_t = S_{t-1}ᵀ dsa_t,
//           dd_t[j] = Σ_i G_t[i,j] S_{t-1}[i,j]
// The dS recurrence is row-local and needs no state S, so:
//   forward_rows   (invocation = value row i, forward in time): S rows from S0 or from the
//                  coarse checkpoint at the window start. Mode 0 (all windows, first to last,
//                  only when sequences span several windows) stores the state at the next
//                  window's start; mode 1 (each window just before its backward) stores sa_t[i]
//                  and a fine checkpoint after every K tokens of the window (window-local, so
//                  its memory is bounded by one window whatever T is).
//   backward_rows  (invocation = row i, backward in time): dS rows; dv, dsa, and dS0 (row-local).
//   backward_cols  (invocation = key column j, backward in time): G[:, j] and S[:, j] given the
//                  N-vectors sa_t, dsa_t, v_t, dy_t (uniform across the workgroup); every column
//                  sum is thread-local. S_{t-1}[:, j] = (S_t[:, j] − sa_t β_j − v_t k_j) / d_j,
//                  restarting from the fine checkpoint at the end of each K-token chunk, so f32
//                  rounding is amplified by at most Π 1/d over K tokens (d ≥ 0.545; K = 4: 11×).
// With α = −kk and β = kk ⊙ a the kernel returns dkk = −dα + dβ ⊙ a and da = dβ ⊙ kk.
//
// Element j of an N-vector lives in x[j / 4][j % 4]; q-loops have a constant trip count N / 4
// and are unrolled by the driver, so the state rows and columns stay in registers.

struct Params {
  T: u32,
  H: u32,
  b0: u32, // first sequence of the window
  t0: u32, // window tokens [t0, t1) of each of its sequences
  t1: u32,
  K: u32, // tokens between fine checkpoints (t0 and W are multiples of K)
  mode: u32, // forward_rows: 0 coarse pass, 1 fine pass
  s0Off: u32, // element offset of the initial state block in s0
  s0Stride: u32, // elements between sequences' initial states: H·N·N, or 0 when shared
  accumulate: u32, // 1: add dr, dk, dv into their buffers; 0: overwrite
  ds0Off: u32, // element offset of the (B, H, N, N) block in ds0
  dsaOff: u32, // element offset of dsa (B, T, H, N) in vecs (sa is at 0)
  W: u32, // tokens per window when sequences span several windows (window index = t0 / W)
  nWs: u32, // coarse slots per (b, h): windows per sequence − 1
  nKw: u32, // fine slots per (window sequence, h): ceil(window tokens / K)
  gcOff: u32, // element offsets in ck of the G carry (B, H, N, N) and of the fine checkpoints
  fineOff: u32,
}

// ck (storage) layout, elements:
//   [0, gcOff)          coarse (B, H, nWs, N, N): S at the start of window w + 1 of a sequence
//   [gcOff, fineOff)    G carry (B, H, N, N): G[:, j] between the column passes of two windows
//   [fineOff, …)        fine (window sequences, H, nKw, N, N): S after tokens t0 + K, t0 + 2K, …, t1
fn coarseAt(b: u32, h: u32, w: u32) -> u32 {
  return ((b * p.H + h) * p.nWs + w) * N * N;
}

fn fineAt(bl: u32, h: u32, m: u32) -> u32 {
  return p.fineOff + ((bl * p.H + h) * p.nKw + m) * N * N;
}

override N: u32 = 64u; // head size, a multiple of 4, at most 64
override NV: u32 = N / 4u;
override RW: u32 = N; // invocations per workgroup; N / RW workgroups per (b, h)


@group(0) @binding(0) var<uniform> p: Params;

// ---- forward_rows ------------------------------------------------------------------------------

@group(0) @binding(1) var<uniform> fd: array<vec4<f32>, 4096>; // windows of (B, T, H, N)
@group(0) @binding(2) var<uniform> fk: array<vec4<f32>, 4096>;
@group(0) @binding(3) var<uniform> fkk: array<vec4<f32>, 4096>;
@group(0) @binding(4) var<uniform> fa: array<vec4<f32>, 4096>;
@group(0) @binding(5) var<uniform> fv: array<vec4<f32>, 4096>;
@group(0) @binding(6) var<storage, read> s0: array<vec4<f32>>; // (B or 1, H, N, N)
@group(0) @binding(7) var<storage, read_write> fsa: array<f32>; // sa (B, T, H, N)
@group(0) @binding(8) var<storage, read_write> fck: array<vec4<f32>>; // ck, see above

// Workgroup (sequence of the window, head), invocation = row i.
@compute @workgroup_size(RW)
fn forward_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let pair = wid.x / (N / RW); // (sequence of the window, head)
  let i = (wid.x % (N / RW)) * RW + li;
  let bl = pair / p.H;
  let b = p.b0 + bl;
  let h = pair % p.H;
  let C = p.H * N;
  var s: array<vec4<f32>, 16>;
  if (p.t0 == 0u) {
    let sb = (p.s0Off + b * p.s0Stride + (h * N + i) * N) / 4u;
    for (var q = 0u; q < NV; q++) { s[q] = s0[sb + q]; }
  } else {
    let cb = (coarseAt(b, h, p.t0 / p.W - 1u) + i * N) / 4u;
    for (var q = 0u; q < NV; q++) { s[q] = fck[cb + q]; }
  }
  let row0 = p.b0 * p.T + p.t0;
  for (var t = p.t0; t < p.t1; t++) {
    let row = b * p.T + t;
    let e = (row - row0) * C + h * N;
    let u = e / 4u;
    var sa = 0.0;
    for (var q = 0u; q < NV; q++) { sa -= dot(s[q], fkk[u + q]); }
    let vi = fv[(e + i) / 4u][(e + i) % 4u];
    for (var q = 0u; q < NV; q++) {
      s[q] = s[q] * fd[u + q] + sa * (fkk[u + q] * fa[u + q]) + vi * fk[u + q];
    }
    if (p.mode == 1u) {
      fsa[row * C + h * N + i] = sa;
      if ((t + 1u) % p.K == 0u || t + 1u == p.t1) {
        let cb = (fineAt(bl, h, (t - p.t0) / p.K) + i * N) / 4u;
        for (var q = 0u; q < NV; q++) { fck[cb + q] = s[q]; }
      }
    }
  }
  if (p.mode == 0u && p.t1 < p.T) {
    let cb = (coarseAt(b, h, p.t0 / p.W) + i * N) / 4u;
    for (var q = 0u; q < NV; q++) { fck[cb + q] = s[q]; }
  }
}

// ---- backward_rows -----------------------------------------------------------------------------

@group(0) @binding(1) var<uniform> rr: array<vec4<f32>, 4096>;
@group(0) @binding(2) var<uniform> rd: array<vec4<f32>, 4096>;
@group(0) @binding(3) var<uniform> rk: array<vec4<f32>, 4096>;
@group(0) @binding(4) var<uniform> rkk: array<vec4<f32>, 4096>;
@group(0) @binding(5) var<uniform> ra: array<vec4<f32>, 4096>;
@group(0) @binding(6) var<uniform> rdy: array<vec4<f32>, 4096>;
@group(0) @binding(7) var<storage, read_write> rdv: array<f32>; // (B, T, H, N)
@group(0) @binding(8) var<storage, read_write> rdsa: array<f32>; // dsa at p.dsaOff
@group(0) @binding(9) var<storage, read_write> rds0: array<vec4<f32>>; // (B, H, N, N), also the carry

// Workgroup (sequence of the window, head), invocation = row i; windows run last to first.
@compute @workgroup_size(RW)
fn backward_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let pair = wid.x / (N / RW); // (sequence of the window, head)
  let i = (wid.x % (N / RW)) * RW + li;
  let b = p.b0 + pair / p.H;
  let h = pair % p.H;
  let C = p.H * N;
  let db = (p.ds0Off + ((b * p.H + h) * N + i) * N) / 4u;
  var g: array<vec4<f32>, 16>;
  for (var q = 0u; q < NV; q++) {
    g[q] = select(vec4<f32>(0.0), rds0[db + q], p.t1 < p.T); // dS after the window
  }
  let row0 = p.b0 * p.T + p.t0;
  for (var tr = p.t0; tr < p.t1; tr++) {
    let t = p.t1 - 1u - (tr - p.t0);
    let row = b * p.T + t;
    let e = (row - row0) * C + h * N;
    let u = e / 4u;
    let dyi = rdy[(e + i) / 4u][(e + i) % 4u];
    var dv = vec4<f32>(0.0);
    var dsa = vec4<f32>(0.0);
    for (var q = 0u; q < NV; q++) {
      g[q] += dyi * rr[u + q];
      dv += g[q] * rk[u + q];
      dsa += g[q] * (rkk[u + q] * ra[u + q]);
    }
    let o = row * C + h * N + i;
    var dvi = dv.x + dv.y + dv.z + dv.w;
    if (p.accumulate != 0u) { dvi += rdv[o]; }
    rdv[o] = dvi;
    let ds = dsa.x + dsa.y + dsa.z + dsa.w;
    rdsa[p.dsaOff + o] = ds;
    for (var q = 0u; q < NV; q++) { g[q] = g[q] * rd[u + q] - ds * rkk[u + q]; }
  }
  for (var q = 0u; q < NV; q++) { rds0[db + q] = g[q]; }
}

// ---- backward_cols -----------------------------------------------------------------------------

@group(0) @binding(1) var<uniform> cr: array<vec4<f32>, 4096>;
@group(0) @binding(2) var<uniform> cd: array<vec4<f32>, 4096>;
@group(0) @binding(3) var<uniform> ck: array<vec4<f32>, 4096>;
@group(0) @binding(4) var<uniform> ckk: array<vec4<f32>, 4096>;
@group(0) @binding(5) var<uniform> ca: array<vec4<f32>, 4096>;
@group(0) @binding(6) var<uniform> cv: array<vec4<f32>, 4096>;
@group(0) @binding(7) var<uniform> cdy: array<vec4<f32>, 4096>;
@group(0) @binding(8) var<uniform> csa: array<vec4<f32>, 4096>;
@group(0) @binding(9) var<uniform> cdsa: array<vec4<f32>, 4096>;
@group(0) @binding(10) var<storage, read_write> cck: array<f32>; // ck, see above
@group(0) @binding(11) var<storage, read_write> cdr: array<f32>; // (B, T, H, N) each
@group(0) @binding(12) var<storage, read_write> cdd: array<f32>;
@group(0) @binding(13) var<storage, read_write> cdk: array<f32>;
@group(0) @binding(14) var<storage, read_write> cdkk: array<f32>;
@group(0) @binding(15) var<storage, read_write> cda: array<f32>;

fn uget(x: vec4<f32>, j: u32) -> f32 {
  return x[j % 4u];
}

// Workgroup (sequence of the window, head), invocation = key column j; windows last to first.
@compute @workgroup_size(RW)
fn backward_cols(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let pair = wid.x / (N / RW); // (sequence of the window, head)
  let j = (wid.x % (N / RW)) * RW + li;
  let bl = pair / p.H;
  let b = p.b0 + bl;
  let h = pair % p.H;
  let C = p.H * N;
  var g: array<vec4<f32>, 16>; // G[:, j], then dS[:, j]
  var s: array<vec4<f32>, 16>; // S_t[:, j]
  let gc = p.gcOff + (b * p.H + h) * N * N + j;
  for (var q = 0u; q < NV; q++) {
    let o = gc + 4u * q * N;
    let x = vec4<f32>(cck[o], cck[o + N], cck[o + 2u * N], cck[o + 3u * N]);
    g[q] = select(vec4<f32>(0.0), x, p.t1 < p.T);
  }
  let row0 = p.b0 * p.T + p.t0;
  for (var tr = p.t0; tr < p.t1; tr++) {
    let t = p.t1 - 1u - (tr - p.t0);
    if (t + 1u == p.t1 || (t + 1u) % p.K == 0u) { // last token of a chunk: S_t from its checkpoint
      let cb = fineAt(bl, h, (t - p.t0) / p.K) + j;
      for (var q = 0u; q < NV; q++) {
        let o = cb + 4u * q * N;
        s[q] = vec4<f32>(cck[o], cck[o + N], cck[o + 2u * N], cck[o + 3u * N]);
      }
    }
    let row = b * p.T + t;
    let e = (row - row0) * C + h * N;
    let u = e / 4u;
    let uj = (e + j) / 4u;
    let rj = uget(cr[uj], j);
    let dj = uget(cd[uj], j);
    let kj = uget(ck[uj], j);
    let kkj = uget(ckk[uj], j);
    let aj = uget(ca[uj], j);
    let bj = kkj * aj;
    var dr = vec4<f32>(0.0);
    var dk = vec4<f32>(0.0);
    var dbeta = vec4<f32>(0.0);
    var dal = vec4<f32>(0.0);
    var dd = vec4<f32>(0.0);
    for (var q = 0u; q < NV; q++) {
      let dy = cdy[u + q];
      let sa = csa[u + q];
      let v = cv[u + q];
      let dsa = cdsa[u + q];
      dr += s[q] * dy;
      let gq = g[q] + dy * rj;
      let prev = (s[q] - sa * bj - v * kj) / dj;
      dk += gq * v;
      dbeta += gq * sa;
      dal += prev * dsa;
      dd += gq * prev;
      g[q] = gq * dj - dsa * kkj;
      s[q] = prev;
    }
    let o = row * C + h * N + j;
    var sdr = dr.x + dr.y + dr.z + dr.w;
    var sdk = dk.x + dk.y + dk.z + dk.w;
    if (p.accumulate != 0u) {
      sdr += cdr[o];
      sdk += cdk[o];
    }
    cdr[o] = sdr;
    cdk[o] = sdk;
    cdd[o] = dd.x + dd.y + dd.z + dd.w;
    let sb = dbeta.x + dbeta.y + dbeta.z + dbeta.w;
    cdkk[o] = -(dal.x + dal.y + dal.z + dal.w) + sb * aj;
    cda[o] = sb * kkj;
  }
  for (var q = 0u; q < NV; q++) {
    let o = gc + 4u * q * N;
    cck[o] = g[q].x;
    cck[o + N] = g[q].y;
    cck[o + 2u * N] = g[q].z;
    cck[o + 3u * N] = g[q].w;
  }
}
