// Token shift. `mix`: for m < nMix, out[m] = u + (uPrev − u) ⊙ x_m, where uPrev is u of the
// previous token of the same sequence, or the carried shift state at t = 0. `store`: the shift
// state becomes u of each sequence's last token (record it after every reader of the state).

struct Params {
  B: u32,
  T: u32,
  C: u32,
  shiftOff: u32, // element offset of this layer's (B, C) block in shift
  nMix: u32, // number of mixes (6 for the time mix, 1 for the channel mix)
  xOff: u32, // offset in vecs of the first mix vector; mix m uses xOff + m · C
  nx: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> u: array<f32>; // (B, T, C)
@group(0) @binding(2) var<storage, read_write> shift: array<f32>; // (L, B, C) state
@group(0) @binding(3) var<storage, read> vecs: array<f32>; // layer vectors
@group(0) @binding(4) var<storage, read_write> out: array<f32>; // (nMix, B, T, C)

@compute @workgroup_size(64)
fn mix(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let n = p.B * p.T * p.C;
  let i = (wid.x + wid.y * p.nx) * 64u + li;
  if (i >= n) { return; }
  let c = i % p.C;
  let bt = i / p.C;
  let t = bt % p.T;
  let b = bt / p.T;
  let cur = u[i];
  var prev: f32;
  if (t == 0u) { prev = shift[p.shiftOff + b * p.C + c]; } else { prev = u[i - p.C]; }
  let delta = prev - cur;
  for (var m = 0u; m < p.nMix; m++) {
    out[m * n + i] = cur + delta * vecs[p.xOff + m * p.C + c];
  }
}

@compute @workgroup_size(64)
fn store(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = (wid.x + wid.y * p.nx) * 64u + li;
  if (i >= p.B * p.C) { return; }
  let c = i % p.C;
  let b = i / p.C;
  shift[p.shiftOff + i] = u[(b * p.T + p.T - 1u) * p.C + c];
}
