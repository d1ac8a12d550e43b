// DERIVED by lib/kernels/codegen.ts: compiled after matmul_tile_common.wgsl in the variant
// `subgroups` or `sg1` (subgroup size 1, any adapter), each also with `f16w` for f16 weights.
//
// Subgroup matrix-vector product for few-row Linear products (T = 1 generation, rows ≤ 4):
//
//   linear: y = act(x · Wᵀ (+ y) (+ res))  W (Nc, K), Linear [out, in]
//
// Each workgroup of WG = 64 invocations computes 4 output columns for all rows. Lanes stride
// along K (consecutive lanes read consecutive weights, so W streams at full bandwidth), each
// keeping 4 × 4 partial sums; `subgroupAdd` reduces them within a subgroup, then each subgroup's
// first lane writes its sums to workgroup memory and the other lanes write zeros, so the final
// workgroup sum needs no assumption on how subgroups are laid out (any subgroup size 1…128).
// Same Params and bindings as matmul_vec4.wgsl (`matmul_tile_common.wgsl` is prepended).
//
// Requires the `subgroups` feature: the host prepends `enable subgroups;`. Without it, the host
// compiles a check variant with a subgroup size of 1 (`subgroupAdd(v)` = v, every lane first),
// which runs the same arithmetic and reductions on any adapter (variant `sg1` in lib/kernels/codegen.ts).

@group(0) @binding(1) var<storage, read> x: array<f32>; // (rows, K) strided, rows ≤ 4
@group(0) @binding(2) var<storage, read> w: array<f32>; // (Nc, K)

const GW = 64u; // invocations per workgroup
const GC = 4u; // output columns per workgroup
const GR = 4u; // rows at most

var<workgroup> part: array<array<f32, 16>, 64>; // [lane][row · 4 + column]

fn ldwc(c: u32, k: u32) -> f32 {
  return w[min(c, p.Nc - 1u) * p.wStride + k];
}

@compute @workgroup_size(64)
fn linear(
  @builtin(local_invocation_index) li: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(subgroup_invocation_id) sgLane: u32,
) {
  let c0 = (wid.x + wid.y * p.nx) * GC;
  var acc: array<f32, 16>;
  for (var k0 = 0u; k0 < p.K; k0 += GW) { // uniform bounds: the barrier below stays uniform
    let k = k0 + li;
    if (k < p.K) {
      let wv = vec4<f32>(ldwc(c0, k), ldwc(c0 + 1u, k), ldwc(c0 + 2u, k), ldwc(c0 + 3u, k));
      for (var r = 0u; r < min(p.rows, GR); r++) {
        let xv = x[p.xOff + min(r, p.rows - 1u) * p.xStride + k];
        for (var j = 0u; j < GC; j++) { acc[r * GC + j] = fma(xv, wv[j], acc[r * GC + j]); }
      }
    }
  }
  for (var e = 0u; e < 16u; e++) {
    let s = subgroupAdd(acc[e]);
    part[li][e] = select(0.0, s, sgLane == 0u);
  }
  workgroupBarrier();
  if (li >= 16u) { return; }
  var s = 0.0;
  for (var l = 0u; l < GW; l++) { s += part[l][li]; }
  store1(s, li / GC, c0 + li % GC);
}
