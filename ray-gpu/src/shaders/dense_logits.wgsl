// Softmax regression, forward pass 1 of 2: logits = x · W + b.
// The class dimension is padded to a multiple of four (params.count = padded width, W is
// inputs x padded, b and the logits rows are padded wide; the padding columns stay zero), so
// one invocation computes four classes of one row with vec4 loads of W. Neighbouring
// invocations share the row, so the loads of x are broadcasts. No workgroup memory, no
// barriers. Reads params.rows, params.cols (= inputs) and params.count.

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> logits: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(256)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let quads = params.count / 4u;
    let inputs = params.cols;
    let step = nwg.x * 256u;
    for (var i = gid.x; i < params.rows * quads; i += step) {
        let r = i / quads;
        let q = i % quads;
        let xb = r * inputs;
        var z = vec4<f32>(0.0);
        for (var k = 0u; k < inputs; k++) {
            z = fma(vec4<f32>(x[xb + k]), w[k * quads + q], z);
        }
        logits[i] = z + b[q];
    }
}
