// sample: draw one token per row of logits on the GPU and write it where the next forward reads
// its input, so that many generation steps run in one submit. The CPU twin is
// lib/generate/gpu_sampler_ref.ts (same f32 operations in the same order).
//
// One workgroup of WG invocations per row (override: 256 on GPUs, 64 on llvmpipe, see
// lib/kernels/sample.ts); invocation li owns the contiguous chunk [li·ch, (li+1)·ch) of the V
// ids, ch = ceil(V / WG). Reductions over invocations run in invocation order in one invocation
// (deterministic, and what the CPU twin reproduces). Per row:
//   1. x = logit − (presence + count·frequency) where count > 0; ids ≥ limit and logits of −inf
//      are banned; NaN or +inf logits make the row an error (token ERR_NONFINITE).
//      M = max x, first id on ties (chunk maxima reduced in id order by one invocation).
//   2. greedy (temperature 0): token = argmax. Otherwise p = exp((x − M) · invT), 0 below
//      s = −87 (no denormals), written to `probs`. key(p) = bits(p) orders p ∈ [0, 1].
//   3. top-k: c_k = the largest key c with #{p : key ≥ c} ≥ k (ties kept; all kept when fewer).
//      top-p: T_k = Σ p over key ≥ c_k, c_p = the largest key c with Σ_{key ≥ c} p ≥ topP·T_k.
//      Both by the same radix search: 10 rounds of 3 bits over keys < 2^30, each round one pass
//      over the chunk into 8 bins per invocation, column sums over the WG invocations in
//      invocation order, then the bin where the running sum from the top reaches the target
//      (the lowest non-empty bin when rounding leaves it short). 2 barriers per round.
//   4. draw: u = (pcg3d(seed, step, row).x >> 8) / 2^24, r = u · Σ p over kept ids; the kept
//      chunk sums are scanned in id order to find the chunk, then that chunk's ids until the
//      running sum exceeds r (its last kept id if rounding never gets there).
//   5. write the token at tokens[tokOff + row]; counts ← counts · decay, +1 at the token.
// Barrier rounds per row: greedy 2; sampling with top-k and top-p ≈ 48, with ≈ 24 passes over
// the chunk. On llvmpipe the first dispatch compiles for ~40 s (once per machine: Mesa caches
// it on disk). The in-order reduction loops run by one invocation are the cause: the greedy path
// alone compiled in 35–45 s with its loop and in 0.2 s without it (also with run-time loop bounds
// and branch-free bodies: still ~35 s). A tree reduction is the next thing to try there.

struct Params {
  V: u32, // logits per row (row stride)
  limit: u32, // ids ≥ limit are never drawn (the tokenizer's vocabulary)
  rows: u32, // B
  nx: u32, // workgroups along x
  step: u32, // generation step: the RNG counter
  seed: u32,
  greedy: u32, // 1: argmax
  topK: u32, // 0 = off
  invT: f32, // 1 / temperature
  topP: f32, // 1 = off
  presence: f32,
  frequency: f32,
  decay: f32,
  logitsOff: u32, // element offset of row 0 in logits
  tokOff: u32, // element offset of row 0's token in tokens
  penalties: u32, // 1: apply and update counts
}

override WG: u32 = 256u; // invocations per workgroup (≤ MAX_WG)
const MAX_WG: u32 = 256u;
const NB: u32 = 8u; // bins per radix round
const ROUNDS: u32 = 10u; // 3 bits per round; keys of p ≤ 1 are < 2^30
const MIN_S: f32 = -87.0; // exp below this would be denormal
const NONE: u32 = 0xffffffffu;
const ERR_NONFINITE: u32 = 0xffffffffu; // a NaN or +inf logit
const ERR_ALL_BANNED: u32 = 0xfffffffeu; // no id can be drawn

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>; // (rows, V) at logitsOff
@group(0) @binding(2) var<storage, read_write> probs: array<f32>; // (rows, V) scratch: x, then p
@group(0) @binding(3) var<storage, read_write> counts: array<f32>; // (rows, V) decayed counts
@group(0) @binding(4) var<storage, read_write> tokens: array<u32>; // ring; row b at tokOff + b

var<workgroup> part: array<f32, 2048>; // (MAX_WG, NB) per-invocation partials
var<workgroup> partI: array<u32, MAX_WG>; // per-invocation argmax
var<workgroup> col: array<f32, NB>; // column sums of part
var<workgroup> bc: array<u32, 4>; // broadcasts from invocation 0: token, chunk, r, start
var<workgroup> bad: atomic<u32>; // a non-finite logit was seen

fn pcg3d(a: vec3<u32>) -> vec3<u32> {
  var v = a * 1664525u + 1013904223u;
  v.x += v.y * v.z;
  v.y += v.z * v.x;
  v.z += v.x * v.y;
  v ^= v >> vec3<u32>(16u);
  v.x += v.y * v.z;
  v.y += v.z * v.x;
  v.z += v.x * v.y;
  return v;
}

fn banned(i: u32, raw: u32) -> bool {
  return i >= p.limit || raw == 0xff800000u;
}

// Largest key c ≥ lo with W(c) = Σ_{key ≥ c, key ≥ lo} w ≥ target (w = 1, or p when useMass).
fn search(li: u32, base: u32, n0: u32, n1: u32, useMass: bool, lo: u32, goal: f32) -> u32 {
  var prefix = 0u;
  var above = 0.0;
  for (var r = 0u; r < ROUNDS; r++) {
    let shift = 27u - 3u * r;
    let hi = shift + 3u;
    var acc = array<f32, NB>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for (var i = n0; i < n1; i++) {
      let pv = probs[base + i];
      let k = bitcast<u32>(pv);
      if (k >= lo && (k >> hi) == (prefix >> hi)) {
        let d = (k >> shift) & (NB - 1u);
        acc[d] += select(1.0, pv, useMass);
      }
    }
    for (var d = 0u; d < NB; d++) { part[li * NB + d] = acc[d]; }
    workgroupBarrier();
    if (li < NB) {
      var s = 0.0;
      for (var t = 0u; t < WG; t++) { s += part[t * NB + li]; }
      col[li] = s;
    }
    workgroupBarrier();
    var cum = above;
    var pick = NONE;
    var low = 0u;
    var aboveLow = above;
    for (var j = 0u; j < NB; j++) {
      let d = NB - 1u - j;
      let c = col[d];
      if (c > 0.0) {
        low = d;
        aboveLow = cum;
        if (pick == NONE && cum + c >= goal) {
          pick = d;
          above = cum;
        }
      }
      cum += c;
    }
    if (pick == NONE) {
      pick = low;
      above = aboveLow;
    }
    prefix |= pick << shift;
  }
  return prefix;
}

// Σ p over the chunk's ids with key ≥ lo, in id order.
fn chunkMass(base: u32, n0: u32, n1: u32, lo: u32) -> f32 {
  var s = 0.0;
  for (var i = n0; i < n1; i++) {
    let pv = probs[base + i];
    if (bitcast<u32>(pv) >= lo) { s += pv; }
  }
  return s;
}

// Σ p over the row's ids with key ≥ lo: chunk sums, then summed in chunk order by one invocation.
fn rowMass(li: u32, base: u32, n0: u32, n1: u32, lo: u32) -> f32 {
  part[li] = chunkMass(base, n0, n1, lo);
  workgroupBarrier();
  if (li == 0u) {
    var t = 0.0;
    for (var l = 0u; l < WG; l++) { t += part[l]; }
    col[0] = t;
  }
  return workgroupUniformLoad(&col[0]);
}

// Penalised logits into probs; returns the row's argmax id (or an error code), M in col[0].
fn penalisedMax(li: u32, row: u32, base: u32, n0: u32, n1: u32) -> u32 {
  var m = 0.0;
  var mi = NONE;
  for (var i = n0; i < n1; i++) {
    let l = logits[p.logitsOff + base + i];
    let raw = bitcast<u32>(l);
    if (banned(i, raw)) { continue; }
    if ((raw & 0x7fffffffu) >= 0x7f800000u) {
      atomicOr(&bad, 1u);
      continue;
    }
    var x = l;
    if (p.penalties != 0u) {
      let c = counts[base + i];
      if (c > 0.0) { x = l - (p.presence + c * p.frequency); }
    }
    probs[base + i] = x;
    if (mi == NONE || x > m) {
      m = x;
      mi = i;
    }
  }
  part[li] = m;
  partI[li] = mi;
  workgroupBarrier();
  if (li == 0u) {
    var best = NONE;
    var bm = 0.0;
    for (var t = 0u; t < WG; t++) {
      if (partI[t] != NONE && (best == NONE || part[t] > bm)) {
        bm = part[t];
        best = partI[t];
      }
    }
    if (best == NONE) { best = ERR_ALL_BANNED; }
    if (atomicLoad(&bad) != 0u) { best = ERR_NONFINITE; }
    bc[0] = best;
    col[0] = bm;
  }
  return workgroupUniformLoad(&bc[0]);
}

// p = exp((x − M) · invT) (0 for banned ids and s < MIN_S) over the chunk, in place.
fn probabilities(base: u32, n0: u32, n1: u32, M: f32) {
  for (var i = n0; i < n1; i++) {
    let raw = bitcast<u32>(logits[p.logitsOff + base + i]);
    var pv = 0.0;
    if (!banned(i, raw)) {
      let s = (probs[base + i] - M) * p.invT;
      if (s >= MIN_S) { pv = exp(s); }
    }
    probs[base + i] = pv;
  }
}

// Inverse-CDF draw over ids with key ≥ lo.
fn draw(li: u32, row: u32, base: u32, n0: u32, n1: u32, lo: u32) -> u32 {
  part[li] = chunkMass(base, n0, n1, lo);
  workgroupBarrier();
  if (li == 0u) {
    var total = 0.0;
    for (var l = 0u; l < WG; l++) { total += part[l]; }
    let h = pcg3d(vec3<u32>(p.seed, p.step, row)).x;
    let r = f32(h >> 8u) * (1.0 / 16777216.0) * total;
    var cum = 0.0;
    var j = NONE;
    var start = 0.0;
    var lastJ = 0u;
    var lastStart = 0.0;
    for (var l = 0u; l < WG; l++) {
      let s = part[l];
      if (s > 0.0) {
        lastJ = l;
        lastStart = cum;
        if (j == NONE && cum + s > r) {
          j = l;
          start = cum;
        }
      }
      cum += s;
    }
    if (j == NONE) {
      j = lastJ;
      start = lastStart;
    }
    bc[1] = j;
    bc[2] = bitcast<u32>(r);
    bc[3] = bitcast<u32>(start);
  }
  workgroupBarrier();
  if (li == bc[1]) {
    let r = bitcast<f32>(bc[2]);
    var acc = bitcast<f32>(bc[3]);
    var tok = NONE;
    var last = n0;
    for (var i = n0; i < n1; i++) {
      let pv = probs[base + i];
      if (bitcast<u32>(pv) < lo) { continue; }
      acc += pv;
      last = i;
      if (acc > r) {
        tok = i;
        break;
      }
    }
    bc[0] = select(tok, last, tok == NONE);
  }
  return workgroupUniformLoad(&bc[0]);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let row = wid.x + wid.y * p.nx;
  if (row >= p.rows) { return; }
  let base = row * p.V;
  let ch = (p.V + WG - 1u) / WG;
  let n0 = min(li * ch, p.V);
  let n1 = min(n0 + ch, p.V);
  var tok = penalisedMax(li, row, base, n0, n1);
  if (tok < p.V && p.greedy == 0u) {
    probabilities(base, n0, n1, col[0]);
    var lo = 1u; // p > 0
    if (p.topK > 0u) { lo = search(li, base, n0, n1, false, lo, f32(p.topK)); }
    if (p.topP < 1.0) {
      let goal = p.topP * rowMass(li, base, n0, n1, lo);
      lo = search(li, base, n0, n1, true, lo, goal);
    }
    tok = draw(li, row, base, n0, n1, lo);
  }
  if (li == 0u) { tokens[p.tokOff + row] = tok; }
  if (p.penalties != 0u && tok < p.V) {
    for (var i = n0; i < n1; i++) {
      var c = counts[base + i] * p.decay;
      if (i == tok) { c += 1.0; }
      counts[base + i] = c;
    }
  }
}
