// Softmax regression, backward pass and SGD update, fused. With the class dimension padded to
// a multiple of four (params.count wide; padding columns of dlogits are zero, so the padding
// of W and b stays zero), each invocation owns four weights or four biases:
//   W[k, 4q..4q+4] -= lr * sum_r x[r, k] * dlogits[r, 4q..4q+4]     (the Xᵀ·G weight gradient)
//   b[4q..4q+4]    -= lr * sum_r dlogits[r, 4q..4q+4]               (the bias-gradient reduction)
// dlogits already carries the 1 / batch size factor. Reads params.rows, params.cols (= inputs),
// params.count and params.lr.

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dlogits: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> w: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> b: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(256)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let quads = params.count / 4u;
    let inputs = params.cols;
    let rows = params.rows;
    let weight_quads = inputs * quads;
    let step = nwg.x * 256u;
    for (var i = gid.x; i < weight_quads + quads; i += step) {
        if (i < weight_quads) {
            let k = i / quads;
            let q = i % quads;
            var g = vec4<f32>(0.0);
            for (var r = 0u; r < rows; r++) {
                g = fma(vec4<f32>(x[r * inputs + k]), dlogits[r * quads + q], g);
            }
            w[i] = w[i] - params.lr * g;
        } else {
            let q = i - weight_quads;
            var g = vec4<f32>(0.0);
            for (var r = 0u; r < rows; r++) {
                g += dlogits[r * quads + q];
            }
            b[q] = b[q] - params.lr * g;
        }
    }
}
