// Fused softmax + cross entropy + its gradient, one pass per row (one workgroup per row):
//   probs[r, :]   = softmax(logits[r, :])
//   row_loss[r]   = log(sum exp(z - row_max)) - (z[label] - row_max)      (= -log probs[r, label])
//   dlogits[r, c] = (probs[r, c] - [c == label]) * scale           (scale = 1 / batch size)
// Reads params.rows, params.cols and params.scale. Labels are checked on the host.

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> labels: array<u32>;
@group(0) @binding(2) var<storage, read_write> probs: array<f32>;
@group(0) @binding(3) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(4) var<storage, read_write> row_loss: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

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
            let v = logits[base + c];
            if (v > best) {
                best = v;
                best_index = c;
            }
        }
        let row_max = wg_argmax(t, best, best_index).value;
        var sum = 0.0;
        for (var c = t; c < cols; c += ROW_WG) {
            sum += exp(logits[base + c] - row_max);
        }
        let total = wg_sum(t, sum);
        let label = labels[row];
        for (var c = t; c < cols; c += ROW_WG) {
            let p = exp(logits[base + c] - row_max) / total;
            probs[base + c] = p;
            dlogits[base + c] = (p - select(0.0, 1.0, c == label)) * params.scale;
        }
        if (t == 0u) {
            row_loss[row] = log(total) - (logits[base + label] - row_max);
        }
    }
}
