// out[r, c] = x[r, c] + bias[c]. Reads params.cols and params.count (= rows * cols).

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> bias: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(256)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let step = nwg.x * 256u;
    for (var i = gid.x; i < params.count; i += step) {
        out[i] = x[i] + bias[i % params.cols];
    }
}
