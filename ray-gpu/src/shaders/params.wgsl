// Uniform parameters shared by the element-wise and row kernels (32 bytes, matches
// `kernels::Params` on the host). Which fields a kernel reads is stated in that kernel.
struct Params {
    rows: u32,
    cols: u32,
    count: u32,
    classes: u32,
    scale: f32,
    lr: f32,
    _pad0: f32,
    _pad1: f32,
}

// The most negative finite f32: the identity of a max reduction.
const NEG_MAX: f32 = -3.40282347e38;
const NO_INDEX: u32 = 0xffffffffu;
