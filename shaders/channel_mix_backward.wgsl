// Backward of the channel mix's activation, in place, one invocation per element:
//   act = relu(pre)²  ⇒  dpre = dact · 2 · max(pre, 0)

struct Params {
  n: u32, // B · T · F
  nx: u32, // workgroups along x
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> pre: array<f32>; // (B, T, F) ffn.key · mix
@group(0) @binding(2) var<storage, read_write> g: array<f32>; // (B, T, F) in dact, out dpre

@compute @workgroup_size(64)
fn relusq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = (wid.x + wid.y * p.nx) * 64u + li;
  if (i >= p.n) { return; }
  g[i] = g[i] * 2.0 * max(pre[i], 0.0);
}
