// Weight gradients, only dispatched when weight gradients are on:
//
//   out[p, q] (+)= Σ_r A[r, p] · Bm[r, q]        A (R, P), Bm (R, Q), out (P, Q), all strided
//
// A Linear weight W [out, in] (y = x Wᵀ) takes A = dy, Bm = x; a low-rank M [in, out] (y = x M)
// takes A = x, Bm = dy. Each invocation owns a 4 × 4 tile of out; no workgroup barriers (slow on
// llvmpipe). Also `colsum`: out[q] (+)= Σ_r A[r, q] · (Bm[r, q] when mode bit 1), the gradient
// of a per-channel vector (biases, mixing coefficients, norm weights).
//
// The embedding, for one row chunk [rowStart, rowStart + chunkRows) of emb [V, C] at a time:
//   emb_gather:  out[r, c] = emb[tokens[r], c]            (tokens in the chunk only)
//   emb_scatter: dEmb[tokens[r], c] += dx[r, c] over r    (one invocation per channel walks the
//                rows in order: deterministic, no atomics)

struct Params {
  R: u32,
  P: u32,
  Q: u32,
  aOff: u32,
  aStride: u32,
  bOff: u32,
  bStride: u32,
  outOff: u32,
  outStride: u32,
  mode: u32, // bit 0: add into out; bit 1 (colsum): multiply by Bm
  nx: u32, // colsum: workgroups along x
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> A: array<f32>; // (R, P) strided
@group(0) @binding(2) var<storage, read> Bm: array<f32>; // (R, Q) strided
@group(0) @binding(3) var<storage, read_write> dw: array<f32>; // (P, Q) strided

@compute @workgroup_size(8, 8)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let q0 = gid.x * 4u;
  let p0 = gid.y * 4u;
  if (q0 >= p.Q || p0 >= p.P) { return; }
  var acc: array<vec4<f32>, 4>;
  let pl = p.P - 1u;
  let ql = p.Q - 1u;
  for (var r = 0u; r < p.R; r++) {
    let ar = p.aOff + r * p.aStride;
    let br = p.bOff + r * p.bStride;
    let bv = vec4<f32>(
      Bm[br + q0],
      Bm[br + min(q0 + 1u, ql)],
      Bm[br + min(q0 + 2u, ql)],
      Bm[br + min(q0 + 3u, ql)],
    );
    for (var i = 0u; i < 4u; i++) { acc[i] = fma(vec4<f32>(A[ar + min(p0 + i, pl)]), bv, acc[i]); }
  }
  for (var i = 0u; i < 4u; i++) {
    if (p0 + i >= p.P) { break; }
    for (var j = 0u; j < 4u; j++) {
      if (q0 + j >= p.Q) { break; }
      let o = p.outOff + (p0 + i) * p.outStride + q0 + j;
      var s = acc[i][j];
      if ((p.mode & 1u) != 0u) { s += dw[o]; }
      dw[o] = s;
    }
  }
}

@compute @workgroup_size(64)
fn colsum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let q = (wid.x + wid.y * p.nx) * 64u + li;
  if (q >= p.Q) { return; }
  var s = 0.0;
  for (var r = 0u; r < p.R; r++) {
    var x = A[p.aOff + r * p.aStride + q];
    if ((p.mode & 2u) != 0u) { x *= Bm[p.bOff + r * p.bStride + q]; }
    s += x;
  }
  let o = p.outOff + q;
  if ((p.mode & 1u) != 0u) { s += dw[o]; }
  dw[o] = s;
}

// ---- embedding gather / scatter ----
struct EmbParams {
  rows: u32, // token rows (B·T)
  C: u32,
  rowStart: u32, // first vocabulary row of this chunk
  chunkRows: u32, // vocabulary rows in this chunk
  nx: u32, // workgroups along x
}

@group(0) @binding(0) var<uniform> ep: EmbParams;
@group(0) @binding(1) var<storage, read> eTokens: array<u32>; // (rows)
@group(0) @binding(2) var<storage, read> eSrc: array<f32>; // emb chunk (chunkRows, C) | dx (rows, C)
@group(0) @binding(3) var<storage, read_write> eDst: array<f32>; // (rows, C) | dEmb chunk (chunkRows, C)

@compute @workgroup_size(64)
fn emb_gather(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = (wid.x + wid.y * ep.nx) * 64u + li;
  if (i >= ep.rows * ep.C) { return; }
  let tok = eTokens[i / ep.C];
  if (tok < ep.rowStart || tok >= ep.rowStart + ep.chunkRows) { return; }
  eDst[i] = eSrc[(tok - ep.rowStart) * ep.C + i % ep.C];
}

@compute @workgroup_size(64)
fn emb_scatter(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let c = (wid.x + wid.y * ep.nx) * 64u + li;
  if (c >= ep.C) { return; }
  for (var r = 0u; r < ep.rows; r++) {
    let tok = eTokens[r];
    if (tok >= ep.rowStart && tok < ep.rowStart + ep.chunkRows) {
      let o = (tok - ep.rowStart) * ep.C + c;
      eDst[o] = eDst[o] + eSrc[r * ep.C + c];
    }
  }
}
