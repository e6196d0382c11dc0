// Workgroup reductions for the row kernels (one workgroup of ROW_WG invocations per row).
// Every invocation must call them (they contain barriers) and every invocation gets the result.

const ROW_WG: u32 = 64u;

var<workgroup> red_value: array<f32, 64>;
var<workgroup> red_index: array<u32, 64>;

struct ArgMax {
    value: f32,
    index: u32,
}

// Largest value and its index; among equal values the smallest index wins, which is what the
// CPU implementation (first maximum) picks.
fn wg_argmax(t: u32, value: f32, index: u32) -> ArgMax {
    red_value[t] = value;
    red_index[t] = index;
    workgroupBarrier();
    for (var stride = ROW_WG / 2u; stride > 0u; stride = stride / 2u) {
        if (t < stride) {
            let ov = red_value[t + stride];
            let oi = red_index[t + stride];
            let mv = red_value[t];
            let mi = red_index[t];
            if (ov > mv || (ov == mv && oi < mi)) {
                red_value[t] = ov;
                red_index[t] = oi;
            }
        }
        workgroupBarrier();
    }
    let result = ArgMax(red_value[0], red_index[0]);
    workgroupBarrier();
    return result;
}

fn wg_sum(t: u32, value: f32) -> f32 {
    red_value[t] = value;
    workgroupBarrier();
    for (var stride = ROW_WG / 2u; stride > 0u; stride = stride / 2u) {
        if (t < stride) {
            red_value[t] = red_value[t] + red_value[t + stride];
        }
        workgroupBarrier();
    }
    let result = red_value[0];
    workgroupBarrier();
    return result;
}
