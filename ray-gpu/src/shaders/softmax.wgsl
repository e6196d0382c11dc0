// Row-wise numerically stable softmax: out[r, :] = exp(x[r, :] - row_max) / sum. One workgroup per
// row (grid-stride over rows). Reads params.rows and params.cols.

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(64)
fn main(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let cols = params.cols;
    for (var row = wg.x; row < params.rows; row += nwg.x) {
        let base = row * cols;
        var best = NEG_MAX;
        var best_index = NO_INDEX;
        for (var c = t; c < cols; c += ROW_WG) {
            let v = x[base + c];
            if (v > best) {
                best = v;
                best_index = c;
            }
        }
        let row_max = wg_argmax(t, best, best_index).value;
        var sum = 0.0;
        for (var c = t; c < cols; c += ROW_WG) {
            sum += exp(x[base + c] - row_max);
        }
        let total = wg_sum(t, sum);
        for (var c = t; c < cols; c += ROW_WG) {
            out[base + c] = exp(x[base + c] - row_max) / total;
        }
    }
}
