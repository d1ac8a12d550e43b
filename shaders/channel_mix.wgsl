// Channel-mix activation: act = relu(pre)², elementwise.

struct Params {
  n: u32, // B · T · F
  nx: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> pre: array<f32>; // (B, T, F) ffn.key · mix
@group(0) @binding(2) var<storage, read_write> act: array<f32>; // (B, T, F) out

@compute @workgroup_size(64)
fn relu_sq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = (wid.x + wid.y * p.nx) * 64u + li;
  if (i >= p.n) { return; }
  let s = max(pre[i], 0.0);
  act[i] = s * s;
}
