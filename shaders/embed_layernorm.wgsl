// x0 = LN(emb[token]; ln0) for every token, one invocation per token. The embedding may be split
// into row chunks (one storage binding each); a dispatch handles the tokens whose id falls in
// [rowStart, rowStart + rowCount) and leaves the others to the other chunks' dispatches.

struct Params {
  rows: u32, // tokens (B · T)
  C: u32,
  tokOff: u32, // element offset of the first token in tokens
  rowStart: u32, // first vocabulary row held by this chunk
  rowCount: u32, // rows in this chunk
  wOff: u32, // ln0 weight offset in vecs
  bOff: u32, // ln0 bias offset in vecs
  eps: f32,
  nx: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> tokens: array<u32>; // (B, T)
@group(0) @binding(2) var<storage, read> emb: array<f32>; // (rowCount, C)
@group(0) @binding(3) var<storage, read> vecs: array<f32>; // model vectors
@group(0) @binding(4) var<storage, read_write> out: array<f32>; // (B·T, C)

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let r = (wid.x + wid.y * p.nx) * 64u + li;
  if (r >= p.rows) { return; }
  let tok = tokens[p.tokOff + r];
  if (tok < p.rowStart || tok >= p.rowStart + p.rowCount) { return; }
  let ei = (tok - p.rowStart) * p.C;
  var mean = 0.0;
  for (var c = 0u; c < p.C; c++) { mean += emb[ei + c]; }
  mean /= f32(p.C);
  var v = 0.0;
  for (var c = 0u; c < p.C; c++) { let e = emb[ei + c] - mean; v += e * e; }
  let inv = inverseSqrt(v / f32(p.C) + p.eps);
  let o = r * p.C;
  for (var c = 0u; c < p.C; c++) {
    out[o + c] = (emb[ei + c] - mean) * inv * vecs[p.wOff + c] + vecs[p.bOff + c];
  }
}
