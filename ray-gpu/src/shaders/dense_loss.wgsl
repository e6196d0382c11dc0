// Softmax regression, forward pass 2 of 2: one invocation per row of the (few-class) logits,
// whose rows are params.count wide (classes padded to a multiple of four; the padding is
// ignored here and its dlogits stay zero):
//   dlogits[r, :] = (softmax(z) - onehot(label)) * scale      (scale = 1 / batch size)
//   row_out[r]    = (cross-entropy loss log(sum exp(z - max)) - (z[label] - max),
//                    1.0 if argmax(z) == label else 0.0; the first maximum wins ties)
// The row is walked serially: with a handful of classes that beats a workgroup reduction and
// needs no barriers. Reads params.rows, params.count, params.classes and params.scale.

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> labels: array<u32>;
@group(0) @binding(2) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(3) var<storage, read_write> row_out: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(64)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let classes = params.classes;
    let step = nwg.x * 64u;
    for (var r = gid.x; r < params.rows; r += step) {
        let base = r * params.count;
        var best = logits[base];
        var best_index = 0u;
        for (var c = 1u; c < classes; c++) {
            let v = logits[base + c];
            if (v > best) {
                best = v;
                best_index = c;
            }
        }
        var total = 0.0;
        for (var c = 0u; c < classes; c++) {
            total += exp(logits[base + c] - best);
        }
        let label = labels[r];
        for (var c = 0u; c < classes; c++) {
            let p = exp(logits[base + c] - best) / total;
            dlogits[base + c] = (p - select(0.0, 1.0, c == label)) * params.scale;
        }
        row_out[2u * r] = log(total) - (logits[base + label] - best);
        row_out[2u * r + 1u] = select(0.0, 1.0, best_index == label);
    }
}
