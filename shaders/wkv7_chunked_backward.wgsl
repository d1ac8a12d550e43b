// Per-token gradients of the chunked WKV-7 (lib/ref/wkv_chunked.ts, `chunkBackward`), one
// workgroup of 256 invocations per (b, h, chunk) in each of four passes (grads_beta, grads_r,
// grads_k, grads_decay: split so that none binds more than WebGPU's default 8 storage buffers),
// after shaders/wkv7_chunked.wgsl's passes
// gamma, intra, state_fwd (mode 1: chunk-start states and SA) and state_bwd (dS at chunk ends
// and dM). Parameters and the scratch layout are those of wkv7_chunked.wgsl.
//
// With S0 the chunk-start state, D = dS at the chunk end, S_L the chunk-end state, and every
// decay factor a ratio γ_a/γ_b ≤ 1 (a ≥ b; γ_{−1} = 1):
//   dPr[s,t] = sa_s·dy_t, dQr[s,t] = v_s·dy_t (s ≤ t);  dP[s,t] = sa_s·dm_t, dQ[s,t] = v_s·dm_t (s < t)
//   dr_t = γ_t S0ᵀdy_t + Σ_{s≤t} (β_s dPr[s,t] + k_s dQr[s,t]) γ_t/γ_s
//   dα_t = γ_{t−1} S0ᵀdm_t + Σ_{s<t} (β_s dP[s,t] + k_s dQ[s,t]) γ_{t−1}/γ_s
//   dβ_t = (γ_L/γ_t) Dᵀsa_t + Σ_{u≥t} r_u dPr[t,u] γ_u/γ_t + Σ_{u>t} α_u dP[t,u] γ_{u−1}/γ_t
//   dk_t = (γ_L/γ_t) Dᵀv_t  + Σ_{u≥t} r_u dQr[t,u] γ_u/γ_t + Σ_{u>t} α_u dQ[t,u] γ_{u−1}/γ_t
//   dv_t = D (k_t γ_L/γ_t) + Σ_{u≥t} dy_u Qr[t,u] + Σ_{u>t} dm_u Q[t,u]
//   dL/dlog γ_t = dr_t r_t − dβ_t β_t − dk_t k_t + dα_{t+1} α_{t+1}  (+ Σ_i D ⊙ S_L at t = L−1)
//   dd_u = Σ_{t≥u} dL/dlog γ_t / d_u
// and with α = −kk, β = kk ⊙ a: dkk = −dα + dβ ⊙ a, da = dβ ⊙ kk.

// Params, N, CH, WG, `p`, chunkLen, vi and cvBase: wkv7_chunked_common.wgsl.

// Each pass declares its own bindings (1 … ≤ 8, in the order the host passes them).
// Per-chunk scratch at p.offG + chunk · 3072 (not workgroup memory: llvmpipe's LLVM spent minutes
// on zero-initialising large workgroup arrays): [0, 1024) dP, dQ, dPr, dQr as [s][t];
// [1024, 2048) sc[gmb + 1024u + t][j] = dr r − dβ β − dk k (summed over the passes);
// [2048, 3072) sc[gmb + 2048u + t][j] = dα α.

// Where one (b, h, chunk) workgroup's data lie.
struct Chunk {
  b: u32,
  h: u32,
  L: u32, // tokens in the chunk
  t0: u32, // first token
  gb: u32, // γ of this chunk; SA and dM at offSA / offDM + gb
  mb: u32, // forward Q, Qr (intra pass)
  cS: u32, // S0; S_L at cS + N²
  cD: u32, // dS at the chunk end
  gmb: u32, // this pass family's scratch
}

fn chunkOf(wid: vec3<u32>) -> Chunk {
  let bh = wid.x / p.nC;
  let c = wid.x % p.nC;
  let NN = N * N;
  return Chunk(
    bh / p.H,
    bh % p.H,
    chunkLen(c),
    c * CH,
    cvBase(bh, c),
    p.offMat + (bh * p.nC + c) * 1024u,
    p.offCkS + (bh * (p.nC + 1u) + c) * NN,
    p.offCkD + (bh * p.nC + c) * NN,
    p.offG + (bh * p.nC + c) * 3072u,
  );
}

// ---- grads_beta: dP, dQ, dPr, dQr, then dβ → da, dkk (temporarily dβ), the −dβ β term ----
@group(0) @binding(1) var<storage, read_write> bSc: array<f32>; // scratch, see wkv7_chunked.wgsl
@group(0) @binding(2) var<storage, read> bV: array<f32>; // (B, T, H, N) each
@group(0) @binding(3) var<storage, read> bDy: array<f32>;
@group(0) @binding(4) var<storage, read> bR: array<f32>;
@group(0) @binding(5) var<storage, read> bKk: array<f32>;
@group(0) @binding(6) var<storage, read> bA: array<f32>;
@group(0) @binding(7) var<storage, read_write> bDkk: array<f32>; // out: dβ (grads_r finishes dkk)
@group(0) @binding(8) var<storage, read_write> bDa: array<f32>; // out

@compute @workgroup_size(256)
fn grads_beta(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let q = chunkOf(wid);
  {
    let s = li / CH;
    let t = li % CH;
    var dP = 0.0;
    var dQ = 0.0;
    var dPr = 0.0;
    var dQr = 0.0;
    if (s <= t && t < q.L) {
      for (var i = 0u; i < p.nh; i++) {
        let sa = bSc[p.offSA + q.gb + s * N + i];
        let vs = bV[vi(q.b, q.t0 + s, q.h, i)];
        let dyt = bDy[vi(q.b, q.t0 + t, q.h, i)];
        let dmt = bSc[p.offDM + q.gb + t * N + i];
        dPr += sa * dyt;
        dQr += vs * dyt;
        dP += sa * dmt;
        dQ += vs * dmt;
      }
      if (s == t) {
        dP = 0.0;
        dQ = 0.0;
      }
    }
    bSc[q.gmb + li] = dP;
    bSc[q.gmb + 256u + li] = dQ;
    bSc[q.gmb + 512u + li] = dPr;
    bSc[q.gmb + 768u + li] = dQr;
  }
  storageBarrier();
  for (var qq = 0u; qq < 4u; qq++) { // pairs (t, j)
    let pr = li + qq * WG;
    let t = pr / N;
    let j = pr % N;
    if (t < q.L) {
      let gt = bSc[q.gb + t * N + j];
      let gL = bSc[q.gb + (q.L - 1u) * N + j];
      var dsa = 0.0;
      for (var i = 0u; i < p.nh; i++) {
        dsa += bSc[q.cD + i * N + j] * bSc[p.offSA + q.gb + t * N + i];
      }
      var dbe = (gL / gt) * dsa;
      for (var u = t; u < q.L; u++) {
        let ou = vi(q.b, q.t0 + u, q.h, j);
        dbe += bR[ou] * (bSc[q.gb + u * N + j] / gt) * bSc[q.gmb + 512u + t * CH + u];
        if (u > t) {
          dbe += -bKk[ou] * (bSc[q.gb + (u - 1u) * N + j] / gt) * bSc[q.gmb + t * CH + u];
        }
      }
      let o = vi(q.b, q.t0 + t, q.h, j);
      bSc[q.gmb + 1024u + t * N + j] = -dbe * bKk[o] * bA[o];
      bDkk[o] = dbe;
      bDa[o] = dbe * bKk[o];
    }
  }
}

// ---- grads_r: dr, dα → dkk, the dr r and dα α terms ----
@group(0) @binding(1) var<storage, read_write> rSc: array<f32>;
@group(0) @binding(2) var<storage, read> rDy: array<f32>;
@group(0) @binding(3) var<storage, read> rKk: array<f32>;
@group(0) @binding(4) var<storage, read> rA: array<f32>;
@group(0) @binding(5) var<storage, read> rK: array<f32>;
@group(0) @binding(6) var<storage, read> rR: array<f32>;
@group(0) @binding(7) var<storage, read_write> rDr: array<f32>; // out (added to with accumulate)
@group(0) @binding(8) var<storage, read_write> rDkk: array<f32>; // in dβ, out dkk

@compute @workgroup_size(256)
fn grads_r(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let q = chunkOf(wid);
  for (var qq = 0u; qq < 4u; qq++) { // pairs (t, j)
    let pr = li + qq * WG;
    let t = pr / N;
    let j = pr % N;
    if (t < q.L) {
      let gt = rSc[q.gb + t * N + j];
      var gp = 1.0;
      if (t > 0u) { gp = rSc[q.gb + (t - 1u) * N + j]; }
      var s0dy = 0.0;
      var s0dm = 0.0;
      for (var i = 0u; i < p.nh; i++) {
        let s0 = rSc[q.cS + i * N + j];
        s0dy += s0 * rDy[vi(q.b, q.t0 + t, q.h, i)];
        s0dm += s0 * rSc[p.offDM + q.gb + t * N + i];
      }
      var dr = gt * s0dy;
      var dal = gp * s0dm;
      for (var s = 0u; s <= t; s++) {
        let os = vi(q.b, q.t0 + s, q.h, j);
        let gs = rSc[q.gb + s * N + j];
        let bs = rKk[os] * rA[os];
        let m = q.gmb + s * CH + t;
        dr += (bs * rSc[m + 512u] + rK[os] * rSc[m + 768u]) * (gt / gs);
        if (s < t) { dal += (bs * rSc[m] + rK[os] * rSc[m + 256u]) * (gp / gs); }
      }
      let o = vi(q.b, q.t0 + t, q.h, j);
      rSc[q.gmb + 1024u + t * N + j] += dr * rR[o];
      rSc[q.gmb + 2048u + t * N + j] = -dal * rKk[o];
      if (p.accumulate != 0u) { dr += rDr[o]; }
      rDr[o] = dr;
      rDkk[o] = -dal + rDkk[o] * rA[o];
    }
  }
}

// ---- grads_k: dk, the −dk k term, dv ----
@group(0) @binding(1) var<storage, read_write> kSc: array<f32>;
@group(0) @binding(2) var<storage, read> kV: array<f32>;
@group(0) @binding(3) var<storage, read> kR: array<f32>;
@group(0) @binding(4) var<storage, read> kKk: array<f32>;
@group(0) @binding(5) var<storage, read> kK: array<f32>;
@group(0) @binding(6) var<storage, read> kDy: array<f32>;
@group(0) @binding(7) var<storage, read_write> kDk: array<f32>; // out (added to with accumulate)
@group(0) @binding(8) var<storage, read_write> kDv: array<f32>; // out (added to with accumulate)

@compute @workgroup_size(256)
fn grads_k(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let q = chunkOf(wid);
  for (var qq = 0u; qq < 4u; qq++) { // pairs (t, j): dk
    let pr = li + qq * WG;
    let t = pr / N;
    let j = pr % N;
    if (t < q.L) {
      let gt = kSc[q.gb + t * N + j];
      let gL = kSc[q.gb + (q.L - 1u) * N + j];
      var dsv = 0.0;
      for (var i = 0u; i < p.nh; i++) {
        dsv += kSc[q.cD + i * N + j] * kV[vi(q.b, q.t0 + t, q.h, i)];
      }
      var dk = (gL / gt) * dsv;
      for (var u = t; u < q.L; u++) {
        let ou = vi(q.b, q.t0 + u, q.h, j);
        dk += kR[ou] * (kSc[q.gb + u * N + j] / gt) * kSc[q.gmb + 768u + t * CH + u];
        if (u > t) {
          dk += -kKk[ou] * (kSc[q.gb + (u - 1u) * N + j] / gt) * kSc[q.gmb + 256u + t * CH + u];
        }
      }
      let o = vi(q.b, q.t0 + t, q.h, j);
      kSc[q.gmb + 1024u + t * N + j] -= dk * kK[o];
      if (p.accumulate != 0u) { dk += kDk[o]; }
      kDk[o] = dk;
    }
  }
  for (var qq = 0u; qq < 4u; qq++) { // pairs (t, i): dv
    let pr = li + qq * WG;
    let t = pr / N;
    let i = pr % N;
    if (t < q.L) {
      var dv = 0.0;
      for (var j = 0u; j < p.nh; j++) {
        let ratio = kSc[q.gb + (q.L - 1u) * N + j] / kSc[q.gb + t * N + j];
        dv += kSc[q.cD + i * N + j] * kK[vi(q.b, q.t0 + t, q.h, j)] * ratio;
      }
      for (var u = t; u < q.L; u++) {
        dv += kDy[vi(q.b, q.t0 + u, q.h, i)] * kSc[q.mb + 768u + t * CH + u];
        if (u > t) { dv += kSc[p.offDM + q.gb + u * N + i] * kSc[q.mb + 256u + t * CH + u]; }
      }
      let o = vi(q.b, q.t0 + t, q.h, i);
      if (p.accumulate != 0u) { dv += kDv[o]; }
      kDv[o] = dv;
    }
  }
}

// ---- grads_decay: dd from suffix sums of dL/dlog γ over the chunk ----
@group(0) @binding(1) var<storage, read> dSc: array<f32>;
@group(0) @binding(2) var<storage, read> dD: array<f32>; // decay d
@group(0) @binding(3) var<storage, read_write> dDd: array<f32>; // out

@compute @workgroup_size(256)
fn grads_decay(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let q = chunkOf(wid);
  if (li < N) {
    let j = li;
    var last = 0.0;
    for (var i = 0u; i < p.nh; i++) {
      last += dSc[q.cD + i * N + j] * dSc[q.cS + N * N + i * N + j];
    }
    var acc = 0.0;
    for (var tr = 0u; tr < q.L; tr++) {
      let t = q.L - 1u - tr;
      acc += dSc[q.gmb + 1024u + t * N + j];
      if (t + 1u < q.L) { acc += dSc[q.gmb + 2048u + (t + 1u) * N + j]; } else { acc += last; }
      let o = vi(q.b, q.t0 + t, q.h, j);
      dDd[o] = acc / dD[o];
    }
  }
}
