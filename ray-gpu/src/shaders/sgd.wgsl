// In-place SGD update w -= lr * g. Reads params.count and params.lr.

@group(0) @binding(0) var<storage, read_write> w: array<f32>;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(256)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let step = nwg.x * 256u;
    for (var i = gid.x; i < params.count; i += step) {
        w[i] = w[i] - params.lr * g[i];
    }
}
