// LoRA (docs/MATH.md §7) on one row chunk of a Linear W (out, in): rows [rowStart, rowStart + rows) of
// the whole matrix, s = α / r.
//
//   merge:   weff[i, j] = w[i, j] + s Σ_k B[rowStart + i, k] A[k, j]
//   grad_b:  dB[rowStart + i, k] (+)= s Σ_j dW[i, j] A[k, j]
//   grad_a:  dA[k, j] (+)= s Σ_i B[rowStart + i, k] dW[i, j]       (the host adds up the chunks)
//
// Every invocation covers four outputs (four columns j in merge, four ranks k in the gradients)
// so each loaded value serves four FMAs; ranks past r are clamped to r − 1 and not written.

struct Params {
  rows: u32, // rows of this chunk
  cols: u32, // in
  r: u32, // rank
  rowStart: u32, // first row of the chunk in the whole matrix (the row of B)
  scale: f32, // α / r
  accumulate: u32, // gradients: 1 = add to the existing values
  nx: u32, // workgroups along x
}

@group(0) @binding(0) var<uniform> p: Params;

// ---- merge
@group(0) @binding(1) var<storage, read> mW: array<f32>; // (rows, cols) chunk of W
@group(0) @binding(2) var<storage, read> mA: array<f32>; // (r, cols)
@group(0) @binding(3) var<storage, read> mB: array<f32>; // (out, r)
@group(0) @binding(4) var<storage, read_write> mOut: array<f32>; // (rows, cols) chunk of W_eff

@compute @workgroup_size(64)
fn merge(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let q = (wid.x + wid.y * p.nx) * 64u + li;
  let cq = (p.cols + 3u) / 4u;
  if (q >= p.rows * cq) { return; }
  let i = q / cq;
  let j0 = (q % cq) * 4u;
  let last = p.cols - 1u;
  let bRow = (p.rowStart + i) * p.r;
  var acc = vec4<f32>(0.0);
  for (var k = 0u; k < p.r; k++) {
    let b = mB[bRow + k];
    let a = k * p.cols;
    acc += b * vec4<f32>(
      mA[a + j0],
      mA[a + min(j0 + 1u, last)],
      mA[a + min(j0 + 2u, last)],
      mA[a + min(j0 + 3u, last)],
    );
  }
  for (var c = 0u; c < 4u; c++) {
    let j = j0 + c;
    if (j < p.cols) {
      let w = mW[i * p.cols + j];
      let d = p.scale * acc[c];
      mOut[i * p.cols + j] = select(w + d, w, d == 0.0); // B = 0 keeps W bit for bit (even −0)
    }
  }
}

// ---- grad_b
@group(0) @binding(1) var<storage, read> bDW: array<f32>; // (rows, cols) chunk of dW
@group(0) @binding(2) var<storage, read> bA: array<f32>; // (r, cols)
@group(0) @binding(3) var<storage, read_write> bOut: array<f32>; // (out, r) dB

@compute @workgroup_size(64)
fn grad_b(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let q = (wid.x + wid.y * p.nx) * 64u + li;
  let kq = (p.r + 3u) / 4u;
  if (q >= p.rows * kq) { return; }
  let i = q / kq;
  let k0 = (q % kq) * 4u;
  let last = p.r - 1u;
  let a0 = k0 * p.cols;
  let a1 = min(k0 + 1u, last) * p.cols;
  let a2 = min(k0 + 2u, last) * p.cols;
  let a3 = min(k0 + 3u, last) * p.cols;
  var acc = vec4<f32>(0.0);
  for (var j = 0u; j < p.cols; j++) {
    let g = bDW[i * p.cols + j];
    acc += g * vec4<f32>(bA[a0 + j], bA[a1 + j], bA[a2 + j], bA[a3 + j]);
  }
  let o = (p.rowStart + i) * p.r;
  for (var c = 0u; c < 4u; c++) {
    let k = k0 + c;
    if (k < p.r) {
      var v = p.scale * acc[c];
      if (p.accumulate != 0u) { v += bOut[o + k]; }
      bOut[o + k] = v;
    }
  }
}

// ---- grad_a
@group(0) @binding(1) var<storage, read> aDW: array<f32>; // (rows, cols) chunk of dW
@group(0) @binding(2) var<storage, read> aB: array<f32>; // (out, r)
@group(0) @binding(3) var<storage, read_write> aOut: array<f32>; // (r, cols) dA

@compute @workgroup_size(64)
fn grad_a(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let q = (wid.x + wid.y * p.nx) * 64u + li;
  let kq = (p.r + 3u) / 4u;
  if (q >= kq * p.cols) { return; }
  let j = q % p.cols;
  let k0 = (q / p.cols) * 4u;
  let last = p.r - 1u;
  let k1 = min(k0 + 1u, last);
  let k2 = min(k0 + 2u, last);
  let k3 = min(k0 + 3u, last);
  var acc = vec4<f32>(0.0);
  for (var i = 0u; i < p.rows; i++) {
    let g = aDW[i * p.cols + j];
    let b = (p.rowStart + i) * p.r;
    acc += g * vec4<f32>(aB[b + k0], aB[b + k1], aB[b + k2], aB[b + k3]);
  }
  for (var c = 0u; c < 4u; c++) {
    let k = k0 + c;
    if (k < p.r) {
      var v = p.scale * acc[c];
      if (p.accumulate != 0u) { v += aOut[k * p.cols + j]; }
      aOut[k * p.cols + j] = v;
    }
  }
}
