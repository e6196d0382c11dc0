// Bias gradient: out[c] = sum over rows of g[r, c]. One invocation per column walks the rows,
// so neighbouring invocations read neighbouring addresses. Reads params.rows and params.cols.

@group(0) @binding(0) var<storage, read> g: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(256)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let step = nwg.x * 256u;
    for (var c = gid.x; c < params.cols; c += step) {
        var sum = 0.0;
        for (var r = 0u; r < params.rows; r++) {
            sum += g[r * params.cols + c];
        }
        out[c] = sum;
    }
}
