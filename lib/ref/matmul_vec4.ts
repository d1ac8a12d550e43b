/**
 * Reference of `shaders/matmul_vec4.wgsl` (the register-tiled products; also of `matmul.wgsl`,
 * `matmul_tex.wgsl`, `matmul_tiled.wgsl` and `gemv_subgroup.wgsl`): `linear` is `x · Wᵀ` with W
 * [out, in], `matmul` is `x · M` with a low-rank M [in, out]. The maths lives in `linear.ts`.
 *
 * @module
 */
export { linear, matmul } from "./linear.ts";
