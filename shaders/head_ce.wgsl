// Masked softmax cross-entropy over head logits and its gradient, in place, one block of rows at a
// time (the host computes a block's logits with the head matmul, runs `rows`, then multiplies the
// block's dlogits by the head: every logit is computed once and never kept for all rows).
//
//   count_mask: stats[1] = number of counted positions (mask ≠ 0)
//   rows:       per row: M = max logit (first argmax on ties), lse = M + log Σ exp(l − M),
//               nll[row] = lse − l[tgt] (0 when not counted); the row is overwritten with
//               dL/dl = (softmax − onehot(tgt)) / count (+ M · 1e-4 / count at the argmax
//               with L2Wrap; 0 when not counted)
//   finish:     stats[0] = Σ nll / count (the masked mean loss), stats[2] = Σ nll

struct Params {
  rows: u32, // total rows (B·T)
  V: u32, // logits per row
  r0: u32, // first row of this block
  nRows: u32, // rows in this block
  l2wrap: u32, // 1: add the L2Wrap term to the gradient
  nx: u32, // workgroups along x
}

const WG: u32 = 64u;
const L2WRAP: f32 = 1e-4;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> logits: array<f32>; // (nRows, V) block
@group(0) @binding(2) var<storage, read> targets: array<u32>; // (B·T)
@group(0) @binding(3) var<storage, read> mask: array<f32>; // (B·T), ≠ 0 counts
@group(0) @binding(4) var<storage, read_write> stats: array<f32>; // (4) loss, count, Σ nll, ·
@group(0) @binding(5) var<storage, read_write> nll: array<f32>; // (B·T)

var<workgroup> redV: array<f32, WG>;
var<workgroup> redI: array<u32, WG>;

// Every entry point uses the same bindings (the "auto" layout keeps only those it touches).
fn touchAll() {
  _ = logits[0];
  _ = targets[0];
  _ = mask[0];
  _ = stats[0];
  _ = nll[0];
}

fn reduceSum(li: u32, x: f32) -> f32 {
  workgroupBarrier();
  redV[li] = x;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (li < s) { redV[li] += redV[li + s]; }
    workgroupBarrier();
  }
  return redV[0];
}

@compute @workgroup_size(WG)
fn count_mask(@builtin(local_invocation_index) li: u32) {
  touchAll();
  var c = 0.0;
  for (var e = li; e < p.rows; e += WG) { c += select(0.0, 1.0, mask[e] != 0.0); }
  let tot = reduceSum(li, c);
  if (li == 0u) { stats[1] = tot; }
}

// (max, first index) over the row, reduced across the workgroup.
fn rowMax(li: u32, base: u32) -> vec2<f32> {
  var m = -3.4e38;
  var mi = 0xffffffffu;
  for (var v = li; v < p.V; v += WG) {
    let x = logits[base + v];
    if (x > m) { m = x; mi = v; }
  }
  redV[li] = m;
  redI[li] = mi;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (li < s) {
      let om = redV[li + s];
      let oi = redI[li + s];
      if (om > redV[li] || (om == redV[li] && oi < redI[li])) {
        redV[li] = om;
        redI[li] = oi;
      }
    }
    workgroupBarrier();
  }
  return vec2<f32>(redV[0], bitcast<f32>(redI[0]));
}

@compute @workgroup_size(WG)
fn rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let lr = wid.x + wid.y * p.nx; // row within the block (uniform per workgroup)
  if (lr >= p.nRows) { return; }
  let row = p.r0 + lr;
  let base = lr * p.V;
  let mx = rowMax(li, base);
  let M = mx.x;
  let argmax = bitcast<u32>(mx.y);
  var s = 0.0;
  for (var v = li; v < p.V; v += WG) { s += exp(logits[base + v] - M); }
  let lse = M + log(reduceSum(li, s));
  let counted = mask[row] != 0.0;
  let tgt = targets[row];
  let inv = 1.0 / max(stats[1], 1.0);
  if (li == 0u) { nll[row] = select(0.0, lse - logits[base + min(tgt, p.V - 1u)], counted); }
  workgroupBarrier(); // the tgt logit is read before the row is overwritten
  for (var v = li; v < p.V; v += WG) {
    var g = 0.0;
    if (counted) {
      g = exp(logits[base + v] - lse);
      if (v == tgt) { g -= 1.0; }
      if (p.l2wrap != 0u && v == argmax) { g += M * L2WRAP; }
      g *= inv;
    }
    logits[base + v] = g;
  }
}

@compute @workgroup_size(WG)
fn finish(@builtin(local_invocation_index) li: u32) {
  touchAll();
  var s = 0.0;
  for (var e = li; e < p.rows; e += WG) { s += nll[e]; }
  let tot = reduceSum(li, s);
  if (li == 0u) {
    stats[0] = tot / max(stats[1], 1.0);
    stats[2] = tot;
  }
}
