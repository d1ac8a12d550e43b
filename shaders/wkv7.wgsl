// The WKV-7 recurrence (SPEC §2), sequential over T. One workgroup per (b, h), one invocation
// per value row i holding row i of S in registers (16 vec4s, loops written out so that no private
// array is indexed dynamically: llvmpipe spills those to slow scratch memory), so the whole update
// is thread-local:
//   sa_i = Σ_j S_ij α_j;  S_ij = S_ij d_j + sa_i β_j + v_i k_j;  y_i = Σ_j S_ij r_j
// with α = −kk, β = kk ⊙ a. No barriers. This kernel is written for N = 64 (every released
// model); the host wrapper rejects other head sizes.

struct Params {
  B: u32,
  T: u32,
  H: u32,
  stateOff: u32, // element offset of this layer's (B, H, N, N) block in state (multiple of 4)
}

override N: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> r: array<vec4<f32>>; // (B, T, H, N)
@group(0) @binding(2) var<storage, read> d: array<vec4<f32>>; // (B, T, H, N) decay
@group(0) @binding(3) var<storage, read> k: array<vec4<f32>>; // (B, T, H, N)
@group(0) @binding(4) var<storage, read> v: array<f32>; // (B, T, H, N)
@group(0) @binding(5) var<storage, read> kk: array<vec4<f32>>; // (B, T, H, N)
@group(0) @binding(6) var<storage, read> a: array<vec4<f32>>; // (B, T, H, N)
@group(0) @binding(7) var<storage, read_write> state: array<vec4<f32>>; // (L, B, H, N value, N key)
@group(0) @binding(8) var<storage, read_write> y: array<f32>; // (B, T, H, N)

@compute @workgroup_size(N)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) i: u32) {
  let bh = wid.x;
  let b = bh / p.H;
  let h = bh % p.H;
  let C = p.H * N;
  let sb = (p.stateOff + (bh * N + i) * N) / 4u;
  var s0 = state[sb + 0u];
  var s1 = state[sb + 1u];
  var s2 = state[sb + 2u];
  var s3 = state[sb + 3u];
  var s4 = state[sb + 4u];
  var s5 = state[sb + 5u];
  var s6 = state[sb + 6u];
  var s7 = state[sb + 7u];
  var s8 = state[sb + 8u];
  var s9 = state[sb + 9u];
  var s10 = state[sb + 10u];
  var s11 = state[sb + 11u];
  var s12 = state[sb + 12u];
  var s13 = state[sb + 13u];
  var s14 = state[sb + 14u];
  var s15 = state[sb + 15u];
  for (var t = 0u; t < p.T; t++) {
    let base = (b * p.T + t) * C + h * N;
    let q = base / 4u;
    let sa = -(dot(s0, kk[q + 0u]) + dot(s1, kk[q + 1u]) + dot(s2, kk[q + 2u]) + dot(s3, kk[q + 3u]) + dot(s4, kk[q + 4u]) + dot(s5, kk[q + 5u]) + dot(s6, kk[q + 6u]) + dot(s7, kk[q + 7u]) + dot(s8, kk[q + 8u]) + dot(s9, kk[q + 9u]) + dot(s10, kk[q + 10u]) + dot(s11, kk[q + 11u]) + dot(s12, kk[q + 12u]) + dot(s13, kk[q + 13u]) + dot(s14, kk[q + 14u]) + dot(s15, kk[q + 15u]));
    let vi = v[base + i];
    var yv = vec4<f32>(0.0);
    s0 = s0 * d[q + 0u] + sa * (kk[q + 0u] * a[q + 0u]) + vi * k[q + 0u];
    yv += s0 * r[q + 0u];
    s1 = s1 * d[q + 1u] + sa * (kk[q + 1u] * a[q + 1u]) + vi * k[q + 1u];
    yv += s1 * r[q + 1u];
    s2 = s2 * d[q + 2u] + sa * (kk[q + 2u] * a[q + 2u]) + vi * k[q + 2u];
    yv += s2 * r[q + 2u];
    s3 = s3 * d[q + 3u] + sa * (kk[q + 3u] * a[q + 3u]) + vi * k[q + 3u];
    yv += s3 * r[q + 3u];
    s4 = s4 * d[q + 4u] + sa * (kk[q + 4u] * a[q + 4u]) + vi * k[q + 4u];
    yv += s4 * r[q + 4u];
    s5 = s5 * d[q + 5u] + sa * (kk[q + 5u] * a[q + 5u]) + vi * k[q + 5u];
    yv += s5 * r[q + 5u];
    s6 = s6 * d[q + 6u] + sa * (kk[q + 6u] * a[q + 6u]) + vi * k[q + 6u];
    yv += s6 * r[q + 6u];
    s7 = s7 * d[q + 7u] + sa * (kk[q + 7u] * a[q + 7u]) + vi * k[q + 7u];
    yv += s7 * r[q + 7u];
    s8 = s8 * d[q + 8u] + sa * (kk[q + 8u] * a[q + 8u]) + vi * k[q + 8u];
    yv += s8 * r[q + 8u];
    s9 = s9 * d[q + 9u] + sa * (kk[q + 9u] * a[q + 9u]) + vi * k[q + 9u];
    yv += s9 * r[q + 9u];
    s10 = s10 * d[q + 10u] + sa * (kk[q + 10u] * a[q + 10u]) + vi * k[q + 10u];
    yv += s10 * r[q + 10u];
    s11 = s11 * d[q + 11u] + sa * (kk[q + 11u] * a[q + 11u]) + vi * k[q + 11u];
    yv += s11 * r[q + 11u];
    s12 = s12 * d[q + 12u] + sa * (kk[q + 12u] * a[q + 12u]) + vi * k[q + 12u];
    yv += s12 * r[q + 12u];
    s13 = s13 * d[q + 13u] + sa * (kk[q + 13u] * a[q + 13u]) + vi * k[q + 13u];
    yv += s13 * r[q + 13u];
    s14 = s14 * d[q + 14u] + sa * (kk[q + 14u] * a[q + 14u]) + vi * k[q + 14u];
    yv += s14 * r[q + 14u];
    s15 = s15 * d[q + 15u] + sa * (kk[q + 15u] * a[q + 15u]) + vi * k[q + 15u];
    yv += s15 * r[q + 15u];
    y[base + i] = yv.x + yv.y + yv.z + yv.w;
  }
  state[sb + 0u] = s0;
  state[sb + 1u] = s1;
  state[sb + 2u] = s2;
  state[sb + 3u] = s3;
  state[sb + 4u] = s4;
  state[sb + 5u] = s5;
  state[sb + 6u] = s6;
  state[sb + 7u] = s7;
  state[sb + 8u] = s8;
  state[sb + 9u] = s9;
  state[sb + 10u] = s10;
  state[sb + 11u] = s11;
  state[sb + 12u] = s12;
  state[sb + 13u] = s13;
  state[sb + 14u] = s14;
  state[sb + 15u] = s15;
}
