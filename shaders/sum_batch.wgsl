// sum_batch: dst[dstOff + e] (+)= Σ_b src[srcOff + b·n + e] for e < n.
// The gradient of a state shared by the batch from per-sequence gradients (wkv S0, lifted Ŝ0),
// and gradient accumulation over micro-batches (B = 1, accumulate).

struct Params {
  n: u32, // elements per batch item
  B: u32,
  srcOff: u32, // element offset of the (B, n) block in src
  dstOff: u32, // element offset in dst
  accumulate: u32, // 1: add to dst
  nx: u32, // workgroups along x
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>; // (B, n) at srcOff
@group(0) @binding(2) var<storage, read_write> dst: array<f32>; // (n) at dstOff

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let e = (wid.x + wid.y * p.nx) * 64u + li;
  if (e >= p.n) { return; }
  var s = 0.0;
  for (var b = 0u; b < p.B; b++) { s += src[p.srcOff + b * p.n + e]; }
  if (p.accumulate != 0u) { s += dst[p.dstOff + e]; }
  dst[p.dstOff + e] = s;
}
