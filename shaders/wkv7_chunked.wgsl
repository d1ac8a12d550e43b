// The chunked WKV-7 (docs/MATH.md §3; lib/ref/wkv_chunked.ts is the living definition): chunks of 16
// tokens, intra-chunk matrices computed in parallel over chunks, the state passed between chunks
// by one workgroup of 256 invocations per (sequence, head), S kept in the storage scratch.
//
// Per head and chunk (tokens t < L ≤ 16, S0 the chunk-start state, γ_t = Π_{u≤t} d_u from the
// chunk start, γ_{−1} = 1, α = −kk, β = kk ⊙ a):
//   P[s,t]  = Σ_j β_s α_t γ_{t−1}/γ_s   Q[s,t]  = Σ_j k_s α_t γ_{t−1}/γ_s    (s < t)
//   Pr[s,t] = Σ_j β_s r_t γ_t/γ_s       Qr[s,t] = Σ_j k_s r_t γ_t/γ_s        (s ≤ t)
//   w_t = α_t γ_{t−1} + Σ_{s<t} w_s P[s,t];  u_t = Σ_{s<t} v_s Q[s,t] + u_s P[s,t]
//   sa_t = S0 w_t + u_t;  y_t = S0 (r_t γ_t) + Σ_{s≤t} sa_s Pr[s,t] + v_s Qr[s,t]
//   S_L[i,j] = S0[i,j] γ_{L−1} + Σ_s (sa_s[i] β_s[j] + v_s[i] k_s[j]) γ_{L−1}/γ_s
// Every decay factor is a ratio γ_a/γ_b with a ≥ b, so ≤ 1: nothing is amplified in f32.
//
// Entry points (one dispatch each, in this order):
//   gamma      invocation per (b, h, chunk, j): γ_t[j] for the chunk's tokens
//   intra      workgroup per (b, h, chunk): P, Q, Pr, Qr, then W and U (forward substitution)
//   state_fwd  workgroup per (b, h): chunks in order; SA, y (mode 0) or checkpoints (mode 1)
//   state_bwd  workgroup per (b, h): chunks in reverse; dS carried, dM by back substitution
//   grads      workgroup per (b, h, chunk): dr, dd, dk, dv, dkk, da from the stored S, dS, SA, dM
//
// Scratch `sc` (f32 elements; offsets in Params; "chunk vectors" are (B, H, nC, 16, N)):
//   [0, offW)      γ, chunk vectors          [offW, offU) W       [offU, offSA) U
//   [offSA, …)     SA = sa_t (chunk vectors) [offDM, …) dM (chunk vectors)
//   [offMat, …)    (B, H, nC, 4, 16, 16): P, Q, Pr, Qr as [s][t]
//   [offCkS, …)    (B, H, nC + 1, N, N): S at each chunk start, then the final state
//   [offCkD, …)    (B, H, nC, N, N): dS at each chunk end
//   [offWS, …)     (B, H, 2, N, N): state_fwd mode 0 working states
//   [offG, …)      (B, H, nC, 3, 1024): grads' per-chunk scratch

// Params, N, CH, WG, `p` and the index helpers: wkv7_chunked_common.wgsl.

// ---- gamma -------------------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read> gd: array<f32>; // decay d (B, T, H, N)
@group(0) @binding(2) var<storage, read_write> gsc: array<f32>;

@compute @workgroup_size(64)
fn gamma(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let flat = (wid.x + wid.y * p.nx) * 64u + li;
  if (flat >= p.count) { return; }
  let j = flat % N;
  let c = (flat / N) % p.nC;
  let bh = flat / (N * p.nC);
  let b = bh / p.H;
  let h = bh % p.H;
  let base = cvBase(bh, c) + j;
  var g = 1.0;
  for (var t = 0u; t < chunkLen(c); t++) {
    g *= gd[vi(b, c * CH + t, h, j)];
    gsc[base + t * N] = g;
  }
}

// ---- intra -------------------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read> ir: array<f32>; // (B, T, H, N) each
@group(0) @binding(2) var<storage, read> ik: array<f32>;
@group(0) @binding(3) var<storage, read> iv: array<f32>;
@group(0) @binding(4) var<storage, read> ikk: array<f32>;
@group(0) @binding(5) var<storage, read> ia: array<f32>;
@group(0) @binding(6) var<storage, read_write> isc: array<f32>;

@compute @workgroup_size(256)
fn intra(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let bh = wid.x / p.nC;
  let c = wid.x % p.nC;
  let b = bh / p.H;
  let h = bh % p.H;
  let L = chunkLen(c);
  let t0 = c * CH;
  let gb = cvBase(bh, c);
  let s = li / CH;
  let t = li % CH;
  var P = 0.0;
  var Q = 0.0;
  var Pr = 0.0;
  var Qr = 0.0;
  if (s <= t && t < L) {
    for (var j = 0u; j < p.nh; j++) {
      let gs = isc[gb + s * N + j];
      let gt = isc[gb + t * N + j];
      var gp = 1.0; // γ_{t−1}
      if (t > 0u) { gp = isc[gb + (t - 1u) * N + j]; }
      let os = vi(b, t0 + s, h, j);
      let ot = vi(b, t0 + t, h, j);
      let bs = ikk[os] * ia[os];
      let ks = ik[os];
      let at = -ikk[ot] * (gp / gs);
      let rt = ir[ot] * (gt / gs);
      P += bs * at;
      Q += ks * at;
      Pr += bs * rt;
      Qr += ks * rt;
    }
    if (s == t) {
      P = 0.0;
      Q = 0.0;
    }
  }
  let mb = p.offMat + (bh * p.nC + c) * 1024u;
  isc[mb + li] = P;
  isc[mb + 256u + li] = Q;
  isc[mb + 512u + li] = Pr;
  isc[mb + 768u + li] = Qr;
  storageBarrier();
  if (li < N) { // row i = li of W and U
    let i = li;
    var w: array<f32, 16>;
    var u: array<f32, 16>;
    for (var tt = 0u; tt < L; tt++) {
      var gp = 1.0;
      if (tt > 0u) { gp = isc[gb + (tt - 1u) * N + i]; }
      var wt = -ikk[vi(b, t0 + tt, h, i)] * gp;
      var ut = 0.0;
      for (var ss = 0u; ss < tt; ss++) {
        let pm = isc[mb + ss * CH + tt];
        wt += w[ss] * pm;
        ut += iv[vi(b, t0 + ss, h, i)] * isc[mb + 256u + ss * CH + tt] + u[ss] * pm;
      }
      w[tt] = wt;
      u[tt] = ut;
      isc[p.offW + gb + tt * N + i] = wt;
      isc[p.offU + gb + tt * N + i] = ut;
    }
  }
}

// ---- state_fwd ---------------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read> fr: array<f32>; // (B, T, H, N) each
@group(0) @binding(2) var<storage, read> fk: array<f32>;
@group(0) @binding(3) var<storage, read> fv: array<f32>;
@group(0) @binding(4) var<storage, read> fkk: array<f32>;
@group(0) @binding(5) var<storage, read> fa: array<f32>;
@group(0) @binding(6) var<storage, read_write> fst: array<f32>; // state (·, B, H, N, N) or S0
@group(0) @binding(7) var<storage, read_write> fy: array<f32>; // (B, T, H, N)
@group(0) @binding(8) var<storage, read_write> fsc: array<f32>;

// The state of chunk c in scratch (no workgroup memory: llvmpipe's LLVM spent minutes on the
// zero-initialisation of large workgroup arrays): mode 1 the checkpoint slots, mode 0 two
// ping-pong slots per (b, h) at offWS.
fn stateSlot(bh: u32, c: u32) -> u32 {
  let NN = p.nh * p.nh;
  if (p.mode == 1u) { return p.offCkS + (bh * (p.nC + 1u) + c) * NN; }
  return p.offWS + (bh * 2u + c % 2u) * NN;
}

@compute @workgroup_size(256)
fn state_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let bh = wid.x;
  let b = bh / p.H;
  let h = bh % p.H;
  let NN = p.nh * p.nh;
  let sb = p.sOff + b * p.sStride + h * NN;
  let first = stateSlot(bh, 0u);
  for (var e = li; e < NN; e += WG) { fsc[first + e] = fst[sb + e]; }
  storageBarrier();
  for (var c = 0u; c < p.nC; c++) {
    let L = chunkLen(c);
    let t0 = c * CH;
    let gb = cvBase(bh, c);
    let mb = p.offMat + (bh * p.nC + c) * 1024u;
    let cur = stateSlot(bh, c);
    let nxt = stateSlot(bh, c + 1u);
    var ys: array<f32, 4>;
    for (var q = 0u; q < 4u; q++) { // pairs (i, t): sa_t[i] and S0 r̃_t
      let pr = li + q * WG;
      let i = pr / CH;
      let t = pr % CH;
      if (i < N && t < L) {
        var sa = fsc[p.offU + gb + t * N + i];
        var y0 = 0.0;
        for (var j = 0u; j < p.nh; j++) {
          let sij = fsc[cur + i * N + j];
          sa += sij * fsc[p.offW + gb + t * N + j];
          y0 += sij * fr[vi(b, t0 + t, h, j)] * fsc[gb + t * N + j];
        }
        fsc[p.offSA + gb + t * N + i] = sa;
        ys[q] = y0;
      }
    }
    storageBarrier();
    if (p.mode == 0u) {
      for (var q = 0u; q < 4u; q++) {
        let pr = li + q * WG;
        let i = pr / CH;
        let t = pr % CH;
        if (i < N && t < L) {
          var y = ys[q];
          for (var s = 0u; s <= t; s++) {
            y += fsc[p.offSA + gb + s * N + i] * fsc[mb + 512u + s * CH + t];
            y += fv[vi(b, t0 + s, h, i)] * fsc[mb + 768u + s * CH + t];
          }
          fy[vi(b, t0 + t, h, i)] = y;
        }
      }
    }
    for (var e = li; e < NN; e += WG) { // S_L
      let i = e / N;
      let j = e % N;
      let gL = fsc[gb + (L - 1u) * N + j];
      var x = fsc[cur + e] * gL;
      for (var s = 0u; s < L; s++) {
        let os = vi(b, t0 + s, h, j);
        let bs = fkk[os] * fa[os];
        let w = fsc[p.offSA + gb + s * N + i] * bs + fv[vi(b, t0 + s, h, i)] * fk[os];
        x += w * (gL / fsc[gb + s * N + j]);
      }
      fsc[nxt + e] = x;
    }
    storageBarrier();
  }
  if (p.mode == 0u) {
    let last = stateSlot(bh, p.nC);
    for (var e = li; e < NN; e += WG) { fst[sb + e] = fsc[last + e]; }
  }
}

// ---- state_bwd ---------------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read> br: array<f32>; // (B, T, H, N) each
@group(0) @binding(2) var<storage, read> bkk: array<f32>;
@group(0) @binding(3) var<storage, read> ba: array<f32>;
@group(0) @binding(4) var<storage, read> bdy: array<f32>;
@group(0) @binding(5) var<storage, read_write> bds0: array<f32>; // (B, H, N, N) at ds0Off
@group(0) @binding(6) var<storage, read_write> bsc: array<f32>;

// dS at the end of chunk c lives in its slot at offCkD; dS0 goes to bds0.
@compute @workgroup_size(256)
fn state_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let bh = wid.x;
  let b = bh / p.H;
  let h = bh % p.H;
  let NN = p.nh * p.nh;
  let lastSlot = p.offCkD + (bh * p.nC + p.nC - 1u) * NN;
  for (var e = li; e < NN; e += WG) { bsc[lastSlot + e] = 0.0; }
  storageBarrier();
  for (var cr = 0u; cr < p.nC; cr++) {
    let c = p.nC - 1u - cr;
    let L = chunkLen(c);
    let t0 = c * CH;
    let gb = cvBase(bh, c);
    let mb = p.offMat + (bh * p.nC + c) * 1024u;
    let db = p.offCkD + (bh * p.nC + c) * NN;
    for (var q = 0u; q < 4u; q++) { // pairs (i, t): g_t[i] = (dS_L diag γ_L B̂ + dY Prᵀ)[i, t]
      let pr = li + q * WG;
      let i = pr / CH;
      let t = pr % CH;
      if (i < N && t < L) {
        var g = 0.0;
        for (var j = 0u; j < p.nh; j++) {
          let o = vi(b, t0 + t, h, j);
          let ratio = bsc[gb + (L - 1u) * N + j] / bsc[gb + t * N + j];
          g += bsc[db + i * N + j] * (bkk[o] * ba[o]) * ratio;
        }
        for (var u = t; u < L; u++) { g += bdy[vi(b, t0 + u, h, i)] * bsc[mb + 512u + t * CH + u]; }
        bsc[p.offDM + gb + t * N + i] = g;
      }
    }
    storageBarrier();
    if (li < N) { // back substitution along row i: dm_t = g_t + Σ_{u>t} P[t,u] dm_u
      let i = li;
      for (var tr = 0u; tr < L; tr++) {
        let t = L - 1u - tr;
        var m = bsc[p.offDM + gb + t * N + i];
        for (var u = t + 1u; u < L; u++) { m += bsc[mb + t * CH + u] * bsc[p.offDM + gb + u * N + i]; }
        bsc[p.offDM + gb + t * N + i] = m;
      }
    }
    storageBarrier();
    for (var e = li; e < NN; e += WG) { // dS_start = dS_L γ_L + dY R̃ᵀ + dM A'ᵀ
      let i = e / N;
      let j = e % N;
      var x = bsc[db + e] * bsc[gb + (L - 1u) * N + j];
      for (var t = 0u; t < L; t++) {
        let o = vi(b, t0 + t, h, j);
        var gp = 1.0;
        if (t > 0u) { gp = bsc[gb + (t - 1u) * N + j]; }
        x += bdy[vi(b, t0 + t, h, i)] * br[o] * bsc[gb + t * N + j];
        x -= bsc[p.offDM + gb + t * N + i] * bkk[o] * gp;
      }
      if (c > 0u) {
        bsc[db - NN + e] = x;
      } else {
        bds0[p.ds0Off + bh * NN + e] = x;
      }
    }
    storageBarrier();
  }
}
