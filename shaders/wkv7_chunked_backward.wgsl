// Per-token gradients of the chunked WKV-7 (lib/ref/wkv_chunked.ts, `chunkBackward`), one
// workgroup of 256 invocations per (b, h, chunk), after shaders/wkv7_chunked.wgsl's passes
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

@group(0) @binding(1) var<storage, read> r: array<f32>; // (B, T, H, N) each
@group(0) @binding(2) var<storage, read> d: array<f32>;
@group(0) @binding(3) var<storage, read> k: array<f32>;
@group(0) @binding(4) var<storage, read> v: array<f32>;
@group(0) @binding(5) var<storage, read> kk: array<f32>;
@group(0) @binding(6) var<storage, read> a: array<f32>;
@group(0) @binding(7) var<storage, read> dy: array<f32>;
@group(0) @binding(8) var<storage, read_write> sc: array<f32>; // scratch, see wkv7_chunked.wgsl
@group(0) @binding(9) var<storage, read_write> odr: array<f32>; // (B, T, H, N) each
@group(0) @binding(10) var<storage, read_write> odd: array<f32>;
@group(0) @binding(11) var<storage, read_write> odk: array<f32>;
@group(0) @binding(12) var<storage, read_write> odv: array<f32>;
@group(0) @binding(13) var<storage, read_write> odkk: array<f32>;
@group(0) @binding(14) var<storage, read_write> oda: array<f32>;

// Per-chunk scratch at p.offG + chunk · 3072 (not workgroup memory: llvmpipe's LLVM spent minutes
// on zero-initialising large workgroup arrays): [0, 1024) dP, dQ, dPr, dQr as [s][t];
// [1024, 2048) sc[gmb + 1024u + t][j] = dr r − dβ β − dk k; [2048, 3072) sc[gmb + 2048u + t][j] = dα α.


@compute @workgroup_size(256)
fn grads(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let bh = wid.x / p.nC;
  let c = wid.x % p.nC;
  let b = bh / p.H;
  let h = bh % p.H;
  let L = chunkLen(c);
  let t0 = c * CH;
  let NN = N * N;
  let gb = cvBase(bh, c); // γ of this chunk; SA and dM at offSA / offDM + gb
  let mb = p.offMat + (bh * p.nC + c) * 1024u;
  let cS = p.offCkS + (bh * (p.nC + 1u) + c) * NN; // S0; S_L at cS + NN
  let cD = p.offCkD + (bh * p.nC + c) * NN;
  let gmb = p.offG + (bh * p.nC + c) * 3072u;
  {
    let s = li / CH;
    let t = li % CH;
    var dP = 0.0;
    var dQ = 0.0;
    var dPr = 0.0;
    var dQr = 0.0;
    if (s <= t && t < L) {
      for (var i = 0u; i < p.nh; i++) {
        let sa = sc[p.offSA + gb + s * N + i];
        let vs = v[vi(b, t0 + s, h, i)];
        let dyt = dy[vi(b, t0 + t, h, i)];
        let dmt = sc[p.offDM + gb + t * N + i];
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
    sc[gmb + li] = dP;
    sc[gmb + 256u + li] = dQ;
    sc[gmb + 512u + li] = dPr;
    sc[gmb + 768u + li] = dQr;
  }
  storageBarrier();
  for (var q = 0u; q < 4u; q++) { // pairs (t, j)
    let pr = li + q * WG;
    let t = pr / N;
    let j = pr % N;
    if (t < L) {
      let gt = sc[gb + t * N + j];
      var gp = 1.0;
      if (t > 0u) { gp = sc[gb + (t - 1u) * N + j]; }
      let gL = sc[gb + (L - 1u) * N + j];
      var s0dy = 0.0;
      var s0dm = 0.0;
      var dsa = 0.0;
      var dsv = 0.0;
      for (var i = 0u; i < p.nh; i++) {
        let s0 = sc[cS + i * N + j];
        let dS = sc[cD + i * N + j];
        s0dy += s0 * dy[vi(b, t0 + t, h, i)];
        s0dm += s0 * sc[p.offDM + gb + t * N + i];
        dsa += dS * sc[p.offSA + gb + t * N + i];
        dsv += dS * v[vi(b, t0 + t, h, i)];
      }
      var dr = gt * s0dy;
      var dal = gp * s0dm;
      for (var s = 0u; s <= t; s++) {
        let os = vi(b, t0 + s, h, j);
        let gs = sc[gb + s * N + j];
        let bs = kk[os] * a[os];
        dr += (bs * sc[gmb + 512u + s * CH + t] + k[os] * sc[gmb + 768u + s * CH + t]) * (gt / gs);
        if (s < t) { dal += (bs * sc[gmb + s * CH + t] + k[os] * sc[gmb + 256u + s * CH + t]) * (gp / gs); }
      }
      var dbe = (gL / gt) * dsa;
      var dk = (gL / gt) * dsv;
      for (var u = t; u < L; u++) {
        let ou = vi(b, t0 + u, h, j);
        let ru = r[ou] * (sc[gb + u * N + j] / gt);
        dbe += ru * sc[gmb + 512u + t * CH + u];
        dk += ru * sc[gmb + 768u + t * CH + u];
        if (u > t) {
          let au = -kk[ou] * (sc[gb + (u - 1u) * N + j] / gt);
          dbe += au * sc[gmb + t * CH + u];
          dk += au * sc[gmb + 256u + t * CH + u];
        }
      }
      let o = vi(b, t0 + t, h, j);
      sc[gmb + 1024u + t * N + j] = dr * r[o] - dbe * kk[o] * a[o] - dk * k[o];
      sc[gmb + 2048u + t * N + j] = -dal * kk[o];
      if (p.accumulate != 0u) {
        dr += odr[o];
        dk += odk[o];
      }
      odr[o] = dr;
      odk[o] = dk;
      odkk[o] = -dal + dbe * a[o];
      oda[o] = dbe * kk[o];
    }
  }
  for (var q = 0u; q < 4u; q++) { // pairs (t, i): dv
    let pr = li + q * WG;
    let t = pr / N;
    let i = pr % N;
    if (t < L) {
      var dv = 0.0;
      for (var j = 0u; j < p.nh; j++) {
        let ratio = sc[gb + (L - 1u) * N + j] / sc[gb + t * N + j];
        dv += sc[cD + i * N + j] * k[vi(b, t0 + t, h, j)] * ratio;
      }
      for (var u = t; u < L; u++) {
        dv += dy[vi(b, t0 + u, h, i)] * sc[mb + 768u + t * CH + u];
        if (u > t) { dv += sc[p.offDM + gb + u * N + i] * sc[mb + 256u + t * CH + u]; }
      }
      let o = vi(b, t0 + t, h, i);
      if (p.accumulate != 0u) { dv += odv[o]; }
      odv[o] = dv;
    }
  }
  storageBarrier();
  if (li < N) { // decay: suffix sums of dL/dlog γ over the chunk
    let j = li;
    var last = 0.0;
    for (var i = 0u; i < p.nh; i++) { last += sc[cD + i * N + j] * sc[cS + NN + i * N + j]; }
    var acc = 0.0;
    for (var tr = 0u; tr < L; tr++) {
      let t = L - 1u - tr;
      acc += sc[gmb + 1024u + t * N + j];
      if (t + 1u < L) { acc += sc[gmb + 2048u + (t + 1u) * N + j]; } else { acc += last; }
      let o = vi(b, t0 + t, h, j);
      odd[o] = acc / d[o];
    }
  }
}
