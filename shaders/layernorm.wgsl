// LayerNorm over rows of C (biased variance), one invocation per output row, no barriers.
// Output row r reads input row r · inRowStep + inRowOff (so the head can normalise only the last
// token of each sequence: step T, offset T − 1).

struct Params {
  rows: u32, // output rows
  C: u32,
  inRowStep: u32,
  inRowOff: u32,
  wOff: u32, // element offset of the affine weight in vecs
  bOff: u32, // element offset of the affine bias in vecs
  eps: f32,
  nx: u32, // workgroups along x (flat workgroup = wid.x + wid.y · nx)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>; // (·, C)
@group(0) @binding(2) var<storage, read> vecs: array<f32>; // packed per-model/per-layer vectors
@group(0) @binding(3) var<storage, read_write> out: array<f32>; // (rows, C)

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let r = (wid.x + wid.y * p.nx) * 64u + li;
  if (r >= p.rows) { return; }
  let xi = (r * p.inRowStep + p.inRowOff) * p.C;
  var mean = 0.0;
  for (var c = 0u; c < p.C; c++) { mean += x[xi + c]; }
  mean /= f32(p.C);
  var v = 0.0;
  for (var c = 0u; c < p.C; c++) { let e = x[xi + c] - mean; v += e * e; }
  let inv = inverseSqrt(v / f32(p.C) + p.eps);
  let o = r * p.C;
  for (var c = 0u; c < p.C; c++) {
    out[o + c] = (x[xi + c] - mean) * inv * vecs[p.wOff + c] + vecs[p.bOff + c];
  }
}
