// Adam (no weight decay) with optional clipping by the global gradient norm, entirely on the GPU:
//
//   sq_norm:  partial[partOff + wg] = Σ g² over a grid-stride slice of one gradient buffer
//   clip:     norm[0] = Σ partial (squared norm), norm[1] = min(1, maxNorm / (√norm[0] + 1e-6))
//   step:     g ← g · (clip ? norm[1] : 1); m ← β1 m + (1 − β1) g; v ← β2 v + (1 − β2) g²
//             p ← p − (lr / bc1) · m / (√v / √bc2 + eps)          (PyTorch's form)
//
// bc1 = 1 − β1^t and bc2 = 1 − β2^t come from the host (the step count t is host-side state),
// so nothing is read back to the CPU.

struct NormParams {
  n: u32, // gradient elements
  gOff: u32, // element offset of the gradient in g
  partOff: u32, // first partial written by this dispatch
  nParts: u32, // clip: partials to sum
  maxNorm: f32, // clip: clipping threshold (≤ 0: scale 1)
}

struct StepParams {
  n: u32,
  off: u32, // element offset of this parameter block in p, g, m, v
  nx: u32, // workgroups along x
  clip: u32, // 1: scale g by norm[1]
  lr: f32,
  beta1: f32,
  beta2: f32,
  eps: f32,
  bc1: f32,
  bc2: f32,
}

const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> np: NormParams;
@group(0) @binding(1) var<storage, read> gIn: array<f32>; // (n) gradient
@group(0) @binding(2) var<storage, read_write> partial: array<f32>; // (parts)

var<workgroup> red: array<f32, WG>;

fn reduceSum(li: u32, x: f32) -> f32 {
  red[li] = x;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (li < s) { red[li] += red[li + s]; }
    workgroupBarrier();
  }
  return red[0];
}

@compute @workgroup_size(WG)
fn sq_norm(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  var s = 0.0;
  for (var e = wid.x * WG + li; e < np.n; e += nwg.x * WG) {
    let x = gIn[np.gOff + e];
    s += x * x;
  }
  let tot = reduceSum(li, s);
  if (li == 0u) { partial[np.partOff + wid.x] = tot; }
}

@group(0) @binding(0) var<uniform> cp: NormParams;
@group(0) @binding(1) var<storage, read> parts: array<f32>; // (nParts)
@group(0) @binding(2) var<storage, read_write> norm: array<f32>; // (2) squared norm, scale

@compute @workgroup_size(WG)
fn clip(@builtin(local_invocation_index) li: u32) {
  var s = 0.0;
  for (var e = li; e < cp.nParts; e += WG) { s += parts[e]; }
  let tot = reduceSum(li, s);
  if (li == 0u) {
    norm[0] = tot;
    norm[1] = select(1.0, min(1.0, cp.maxNorm / (sqrt(tot) + 1e-6)), cp.maxNorm > 0.0);
  }
}

@group(0) @binding(0) var<uniform> sp: StepParams;
@group(0) @binding(1) var<storage, read_write> param: array<f32>; // (n) parameters
@group(0) @binding(2) var<storage, read> grad: array<f32>; // (n)
@group(0) @binding(3) var<storage, read_write> m1: array<f32>; // (n) first moment
@group(0) @binding(4) var<storage, read_write> m2: array<f32>; // (n) second moment
@group(0) @binding(5) var<storage, read> scale: array<f32>; // (2) from clip; read when sp.clip

@compute @workgroup_size(64)
fn step(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let e = (wid.x + wid.y * sp.nx) * 64u + li;
  if (e >= sp.n) { return; }
  let i = sp.off + e;
  var g = grad[i];
  if (sp.clip != 0u) { g *= scale[1]; }
  let m = sp.beta1 * m1[i] + (1.0 - sp.beta1) * g;
  let v = sp.beta2 * m2[i] + (1.0 - sp.beta2) * g * g;
  m1[i] = m;
  m2[i] = v;
  param[i] -= (sp.lr / sp.bc1) * m / (sqrt(v) / sqrt(sp.bc2) + sp.eps);
}
