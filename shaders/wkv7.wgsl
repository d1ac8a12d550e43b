// The WKV-7 recurrence (docs/MATH.md §3), sequential over T, for one window of tokens (the host splits
// long inputs into windows that fit a 64 KiB uniform binding). One workgroup per (b, h), one
// invocation per value row i holding row i of S in registers, so the update is thread-local:
//   sa_i = Σ_j S_ij α_j;  S_ij = S_ij d_j + sa_i β_j + v_i k_j;  y_i = Σ_j S_ij r_j
// with α = −kk, β = kk ⊙ a. No barriers, no workgroup memory.
//
// Why uniform buffers: every invocation of a head reads the same 5·N per-token values. On Mesa's
// llvmpipe a storage or workgroup load is a scalar loop over the SIMD lanes (~20 ns per value)
// while a uniform load is one vector gather, so the per-token vectors are copied (by the host)
// into uniform windows `u*`; on GPUs uniform reads with a uniform index are the cheap broadcast
// path too. Row element j of S lives in s[j / 4][j % 4]; the q-loops have a constant trip count
// (N / 4 after override specialisation) and are unrolled by the driver, so `s` stays in
// registers.

struct Params {
  T: u32,
  H: u32,
  b0: u32, // first sequence of the window
  t0: u32, // window tokens [t0, t1) of each of its sequences
  t1: u32,
  stateOff: u32, // element offset of this layer's (B, H, N, N) block in state
}

override N: u32 = 64u; // head size, a multiple of 4, at most 64
override NV: u32 = N / 4u;
override RW: u32 = N; // invocations per workgroup; N / RW workgroups per (b, h)


@group(0) @binding(0) var<uniform> p: Params;
// window of (B, T, H, N) rows b0·T + t0 …, starting at element 0 of each binding
@group(0) @binding(1) var<uniform> ur: array<vec4<f32>, 4096>;
@group(0) @binding(2) var<uniform> ud: array<vec4<f32>, 4096>; // decay
@group(0) @binding(3) var<uniform> uk: array<vec4<f32>, 4096>;
@group(0) @binding(4) var<uniform> ukk: array<vec4<f32>, 4096>;
@group(0) @binding(5) var<uniform> ua: array<vec4<f32>, 4096>;
@group(0) @binding(6) var<uniform> uv: array<vec4<f32>, 4096>;
@group(0) @binding(7) var<storage, read_write> state: array<vec4<f32>>; // (L, B, H, N, N)
@group(0) @binding(8) var<storage, read_write> y: array<f32>; // (B, T, H, N)

@compute @workgroup_size(RW)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let pair = wid.x / (N / RW);
  let i = (wid.x % (N / RW)) * RW + li;
  let b = p.b0 + pair / p.H;
  let h = pair % p.H;
  let C = p.H * N;
  let sb = (p.stateOff + ((b * p.H + h) * N + i) * N) / 4u;
  var s: array<vec4<f32>, 16>;
  for (var q = 0u; q < NV; q++) { s[q] = state[sb + q]; }
  let row0 = p.b0 * p.T + p.t0; // first row of the window
  for (var t = p.t0; t < p.t1; t++) {
    let row = b * p.T + t;
    let e = (row - row0) * C + h * N; // element of (b, t, h, 0) in the window
    let u = e / 4u;
    var sa = 0.0;
    for (var q = 0u; q < NV; q++) { sa -= dot(s[q], ukk[u + q]); }
    let vi = uv[(e + i) / 4u][(e + i) % 4u];
    var yv = vec4<f32>(0.0);
    for (var q = 0u; q < NV; q++) {
      s[q] = s[q] * ud[u + q] + sa * (ukk[u + q] * ua[u + q]) + vi * uk[u + q];
      yv += s[q] * ur[u + q];
    }
    y[row * C + h * N + i] = yv.x + yv.y + yv.z + yv.w;
  }
  for (var q = 0u; q < NV; q++) { state[sb + q] = s[q]; }
}
