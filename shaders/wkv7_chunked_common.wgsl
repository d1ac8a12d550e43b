// Shared by shaders/wkv7_chunked.wgsl and shaders/wkv7_chunked_backward.wgsl (the host prepends
// it to both, `chunkedSource` in lib/kernels/wkv7_chunked.ts): the parameter block, the sizes and
// the index helpers. The scratch layout is described in wkv7_chunked.wgsl.

struct Params {
  T: u32,
  H: u32,
  nC: u32, // chunks per sequence, ceil(T / 16)
  nx: u32, // gamma: workgroups along x (flat = wid.x + wid.y · nx)
  offW: u32,
  offU: u32,
  offSA: u32,
  offDM: u32,
  offMat: u32,
  offCkS: u32,
  offCkD: u32,
  sOff: u32, // state_fwd: element offset of the state (mode 0) or of S0 (mode 1) …
  sStride: u32, // … and elements between sequences' blocks (0: one S0 shared by the batch)
  mode: u32, // state_fwd: 0 forward (write y, update state), 1 backward checkpoints
  accumulate: u32, // grads: 1 adds dr, dk, dv into their buffers
  ds0Off: u32, // state_bwd: element offset of the (B, H, N, N) dS0 block
  count: u32, // gamma: B · H · nC · N invocations
  offWS: u32, // two working-state slots per (b, h) (state_fwd mode 0)
  offG: u32, // grads: per chunk dP, dQ, dPr, dQr and two (16, N) decay-gradient terms
  nh: u32, // N again, as a runtime value: loops bounded by it are not unrolled (llvmpipe's
  // LLVM took minutes on the fully unrolled shaders)
}

override N: u32 = 64u; // head size, at most 64
const CH: u32 = 16u; // tokens per chunk
const WG: u32 = 256u; // invocations per workgroup

@group(0) @binding(0) var<uniform> p: Params;

fn chunkLen(c: u32) -> u32 {
  return min(CH, p.T - c * CH);
}

// element (b, t, h, x) of a (B, T, H, N) vector
fn vi(b: u32, t: u32, h: u32, x: u32) -> u32 {
  return ((b * p.T + t) * p.H + h) * N + x;
}

// first element of chunk c of pair bh = b·H + h in the chunk-vector layout
fn cvBase(bh: u32, c: u32) -> u32 {
  return (bh * p.nC + c) * CH * N;
}
