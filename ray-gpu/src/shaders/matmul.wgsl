// Tiled single-precision matrix product: out (M x N) = op(lhs) · rhs, all row-major.
//   TRANSPOSE_LHS = false: lhs is M x K, op(lhs) = lhs.
//   TRANSPOSE_LHS = true:  lhs is K x M, op(lhs) = lhsᵀ (the weight-gradient product Xᵀ·G).
//
// One workgroup of 256 invocations computes a 128x128 block of `out`, walking K in steps of 8.
// Each step the workgroup stages a 128x8 slab of op(lhs) and an 8x128 slab of rhs in workgroup
// memory (both k-major, so a thread reads four consecutive rows or columns as one vec4), and
// each invocation accumulates an 8x8 register block: rows {ty*4..ty*4+3, 64+ty*4..64+ty*4+3},
// columns {tx*4..tx*4+3, 64+tx*4..64+tx*4+3}. The split into two 4-wide halves keeps the vec4
// reads of a quarter warp on distinct banks. The next slab is prefetched from global memory into
// registers while the current one is being multiplied. Loads outside the matrices read as zero
// and stores outside are skipped, so any M, N, K works.

struct Dims {
    m: u32,
    n: u32,
    k: u32,
    _pad0: u32,
    _pad1: vec4<u32>,
}

@group(0) @binding(0) var<storage, read> lhs: array<f32>;
@group(0) @binding(1) var<storage, read> rhs: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> dims: Dims;

override TRANSPOSE_LHS: bool = false;

const TILE_K: u32 = 8u;

// The staged slabs, [k][slot]: slot s of k-row k holds four consecutive rows of op(lhs)
// (columns of rhs) starting at 4s. The lhs rows have 32 slots (128 rows / 4) plus one slot of
// padding, so that the transposing stores of the non-transposed load (eight invocations, eight
// different k, same slot) land on eight different bank groups.
var<workgroup> a_tile: array<array<vec4<f32>, 33>, TILE_K>;
var<workgroup> b_tile: array<array<vec4<f32>, 32>, TILE_K>;

// Four values of op(lhs) for this invocation's staging slot: op(lhs)[m..m+4, k].
fn load_lhs(m0: u32, k0: u32, t: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if (TRANSPOSE_LHS) {
        // lhs is K x M: one k-row, four consecutive columns (coalesced across the warp).
        let k = k0 + t / 32u;
        let m = m0 + (t % 32u) * 4u;
        if (k < dims.k) {
            let base = k * dims.m + m;
            if (m < dims.m) { v.x = lhs[base]; }
            if (m + 1u < dims.m) { v.y = lhs[base + 1u]; }
            if (m + 2u < dims.m) { v.z = lhs[base + 2u]; }
            if (m + 3u < dims.m) { v.w = lhs[base + 3u]; }
        }
    } else {
        // lhs is M x K: one k-column of four consecutive rows; eight neighbouring invocations
        // read eight consecutive k of the same row (one 32-byte sector).
        let k = k0 + t % 8u;
        let m = m0 + (t / 8u) * 4u;
        if (k < dims.k) {
            if (m < dims.m) { v.x = lhs[m * dims.k + k]; }
            if (m + 1u < dims.m) { v.y = lhs[(m + 1u) * dims.k + k]; }
            if (m + 2u < dims.m) { v.z = lhs[(m + 2u) * dims.k + k]; }
            if (m + 3u < dims.m) { v.w = lhs[(m + 3u) * dims.k + k]; }
        }
    }
    return v;
}

// Where this invocation's lhs vec4 goes in a_tile: [k-row, slot].
fn lhs_slot(t: u32) -> vec2<u32> {
    if (TRANSPOSE_LHS) {
        return vec2<u32>(t / 32u, t % 32u);
    }
    return vec2<u32>(t % 8u, t / 8u);
}

// rhs[k, n..n+4] for this invocation's staging slot (slot index = t).
fn load_rhs(n0: u32, k0: u32, t: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    let k = k0 + t / 32u;
    let n = n0 + (t % 32u) * 4u;
    if (k < dims.k) {
        let base = k * dims.n + n;
        if (n < dims.n) { v.x = rhs[base]; }
        if (n + 1u < dims.n) { v.y = rhs[base + 1u]; }
        if (n + 2u < dims.n) { v.z = rhs[base + 2u]; }
        if (n + 3u < dims.n) { v.w = rhs[base + 3u]; }
    }
    return v;
}

fn store4(r: u32, c: u32, v: vec4<f32>) {
    if (r >= dims.m) {
        return;
    }
    let base = r * dims.n + c;
    if (c + 3u < dims.n) {
        out[base] = v.x;
        out[base + 1u] = v.y;
        out[base + 2u] = v.z;
        out[base + 3u] = v.w;
    } else {
        if (c < dims.n) { out[base] = v.x; }
        if (c + 1u < dims.n) { out[base + 1u] = v.y; }
        if (c + 2u < dims.n) { out[base + 2u] = v.z; }
    }
}

@compute @workgroup_size(256)
fn main(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    let m0 = wg.y * 128u;
    let n0 = wg.x * 128u;
    let tx = t % 16u;
    let ty = t / 16u;

    var acc00 = vec4<f32>(0.0);
    var acc01 = vec4<f32>(0.0);
    var acc10 = vec4<f32>(0.0);
    var acc11 = vec4<f32>(0.0);
    var acc20 = vec4<f32>(0.0);
    var acc21 = vec4<f32>(0.0);
    var acc30 = vec4<f32>(0.0);
    var acc31 = vec4<f32>(0.0);
    var acc40 = vec4<f32>(0.0);
    var acc41 = vec4<f32>(0.0);
    var acc50 = vec4<f32>(0.0);
    var acc51 = vec4<f32>(0.0);
    var acc60 = vec4<f32>(0.0);
    var acc61 = vec4<f32>(0.0);
    var acc70 = vec4<f32>(0.0);
    var acc71 = vec4<f32>(0.0);

    let a_dst = lhs_slot(t);
    let tiles = (dims.k + TILE_K - 1u) / TILE_K;
    var next_a = load_lhs(m0, 0u, t);
    var next_b = load_rhs(n0, 0u, t);
    var a0: vec4<f32>;
    var a1: vec4<f32>;
    var b0: vec4<f32>;
    var b1: vec4<f32>;

    for (var tile = 0u; tile < tiles; tile++) {
        a_tile[a_dst.x][a_dst.y] = next_a;
        b_tile[t / 32u][t % 32u] = next_b;
        workgroupBarrier();

        // Prefetch the next slab while this one is multiplied.
        if (tile + 1u < tiles) {
            let k_next = (tile + 1u) * TILE_K;
            next_a = load_lhs(m0, k_next, t);
            next_b = load_rhs(n0, k_next, t);
        }

        // The eight k-steps of the slab, unrolled by hand: no loop (and so no loop-bounding
        // counter from naga), constant workgroup-memory indices for the driver.
        // k = 0
        a0 = a_tile[0][ty];
        a1 = a_tile[0][ty + 16u];
        b0 = b_tile[0][tx];
        b1 = b_tile[0][tx + 16u];
        acc00 = fma(vec4<f32>(a0.x), b0, acc00);
        acc01 = fma(vec4<f32>(a0.x), b1, acc01);
        acc10 = fma(vec4<f32>(a0.y), b0, acc10);
        acc11 = fma(vec4<f32>(a0.y), b1, acc11);
        acc20 = fma(vec4<f32>(a0.z), b0, acc20);
        acc21 = fma(vec4<f32>(a0.z), b1, acc21);
        acc30 = fma(vec4<f32>(a0.w), b0, acc30);
        acc31 = fma(vec4<f32>(a0.w), b1, acc31);
        acc40 = fma(vec4<f32>(a1.x), b0, acc40);
        acc41 = fma(vec4<f32>(a1.x), b1, acc41);
        acc50 = fma(vec4<f32>(a1.y), b0, acc50);
        acc51 = fma(vec4<f32>(a1.y), b1, acc51);
        acc60 = fma(vec4<f32>(a1.z), b0, acc60);
        acc61 = fma(vec4<f32>(a1.z), b1, acc61);
        acc70 = fma(vec4<f32>(a1.w), b0, acc70);
        acc71 = fma(vec4<f32>(a1.w), b1, acc71);
        // k = 1
        a0 = a_tile[1][ty];
        a1 = a_tile[1][ty + 16u];
        b0 = b_tile[1][tx];
        b1 = b_tile[1][tx + 16u];
        acc00 = fma(vec4<f32>(a0.x), b0, acc00);
        acc01 = fma(vec4<f32>(a0.x), b1, acc01);
        acc10 = fma(vec4<f32>(a0.y), b0, acc10);
        acc11 = fma(vec4<f32>(a0.y), b1, acc11);
        acc20 = fma(vec4<f32>(a0.z), b0, acc20);
        acc21 = fma(vec4<f32>(a0.z), b1, acc21);
        acc30 = fma(vec4<f32>(a0.w), b0, acc30);
        acc31 = fma(vec4<f32>(a0.w), b1, acc31);
        acc40 = fma(vec4<f32>(a1.x), b0, acc40);
        acc41 = fma(vec4<f32>(a1.x), b1, acc41);
        acc50 = fma(vec4<f32>(a1.y), b0, acc50);
        acc51 = fma(vec4<f32>(a1.y), b1, acc51);
        acc60 = fma(vec4<f32>(a1.z), b0, acc60);
        acc61 = fma(vec4<f32>(a1.z), b1, acc61);
        acc70 = fma(vec4<f32>(a1.w), b0, acc70);
        acc71 = fma(vec4<f32>(a1.w), b1, acc71);
        // k = 2
        a0 = a_tile[2][ty];
        a1 = a_tile[2][ty + 16u];
        b0 = b_tile[2][tx];
        b1 = b_tile[2][tx + 16u];
        acc00 = fma(vec4<f32>(a0.x), b0, acc00);
        acc01 = fma(vec4<f32>(a0.x), b1, acc01);
        acc10 = fma(vec4<f32>(a0.y), b0, acc10);
        acc11 = fma(vec4<f32>(a0.y), b1, acc11);
        acc20 = fma(vec4<f32>(a0.z), b0, acc20);
        acc21 = fma(vec4<f32>(a0.z), b1, acc21);
        acc30 = fma(vec4<f32>(a0.w), b0, acc30);
        acc31 = fma(vec4<f32>(a0.w), b1, acc31);
        acc40 = fma(vec4<f32>(a1.x), b0, acc40);
        acc41 = fma(vec4<f32>(a1.x), b1, acc41);
        acc50 = fma(vec4<f32>(a1.y), b0, acc50);
        acc51 = fma(vec4<f32>(a1.y), b1, acc51);
        acc60 = fma(vec4<f32>(a1.z), b0, acc60);
        acc61 = fma(vec4<f32>(a1.z), b1, acc61);
        acc70 = fma(vec4<f32>(a1.w), b0, acc70);
        acc71 = fma(vec4<f32>(a1.w), b1, acc71);
        // k = 3
        a0 = a_tile[3][ty];
        a1 = a_tile[3][ty + 16u];
        b0 = b_tile[3][tx];
        b1 = b_tile[3][tx + 16u];
        acc00 = fma(vec4<f32>(a0.x), b0, acc00);
        acc01 = fma(vec4<f32>(a0.x), b1, acc01);
        acc10 = fma(vec4<f32>(a0.y), b0, acc10);
        acc11 = fma(vec4<f32>(a0.y), b1, acc11);
        acc20 = fma(vec4<f32>(a0.z), b0, acc20);
        acc21 = fma(vec4<f32>(a0.z), b1, acc21);
        acc30 = fma(vec4<f32>(a0.w), b0, acc30);
        acc31 = fma(vec4<f32>(a0.w), b1, acc31);
        acc40 = fma(vec4<f32>(a1.x), b0, acc40);
        acc41 = fma(vec4<f32>(a1.x), b1, acc41);
        acc50 = fma(vec4<f32>(a1.y), b0, acc50);
        acc51 = fma(vec4<f32>(a1.y), b1, acc51);
        acc60 = fma(vec4<f32>(a1.z), b0, acc60);
        acc61 = fma(vec4<f32>(a1.z), b1, acc61);
        acc70 = fma(vec4<f32>(a1.w), b0, acc70);
        acc71 = fma(vec4<f32>(a1.w), b1, acc71);
        // k = 4
        a0 = a_tile[4][ty];
        a1 = a_tile[4][ty + 16u];
        b0 = b_tile[4][tx];
        b1 = b_tile[4][tx + 16u];
        acc00 = fma(vec4<f32>(a0.x), b0, acc00);
        acc01 = fma(vec4<f32>(a0.x), b1, acc01);
        acc10 = fma(vec4<f32>(a0.y), b0, acc10);
        acc11 = fma(vec4<f32>(a0.y), b1, acc11);
        acc20 = fma(vec4<f32>(a0.z), b0, acc20);
        acc21 = fma(vec4<f32>(a0.z), b1, acc21);
        acc30 = fma(vec4<f32>(a0.w), b0, acc30);
        acc31 = fma(vec4<f32>(a0.w), b1, acc31);
        acc40 = fma(vec4<f32>(a1.x), b0, acc40);
        acc41 = fma(vec4<f32>(a1.x), b1, acc41);
        acc50 = fma(vec4<f32>(a1.y), b0, acc50);
        acc51 = fma(vec4<f32>(a1.y), b1, acc51);
        acc60 = fma(vec4<f32>(a1.z), b0, acc60);
        acc61 = fma(vec4<f32>(a1.z), b1, acc61);
        acc70 = fma(vec4<f32>(a1.w), b0, acc70);
        acc71 = fma(vec4<f32>(a1.w), b1, acc71);
        // k = 5
        a0 = a_tile[5][ty];
        a1 = a_tile[5][ty + 16u];
        b0 = b_tile[5][tx];
        b1 = b_tile[5][tx + 16u];
        acc00 = fma(vec4<f32>(a0.x), b0, acc00);
        acc01 = fma(vec4<f32>(a0.x), b1, acc01);
        acc10 = fma(vec4<f32>(a0.y), b0, acc10);
        acc11 = fma(vec4<f32>(a0.y), b1, acc11);
        acc20 = fma(vec4<f32>(a0.z), b0, acc20);
        acc21 = fma(vec4<f32>(a0.z), b1, acc21);
        acc30 = fma(vec4<f32>(a0.w), b0, acc30);
        acc31 = fma(vec4<f32>(a0.w), b1, acc31);
        acc40 = fma(vec4<f32>(a1.x), b0, acc40);
        acc41 = fma(vec4<f32>(a1.x), b1, acc41);
        acc50 = fma(vec4<f32>(a1.y), b0, acc50);
        acc51 = fma(vec4<f32>(a1.y), b1, acc51);
        acc60 = fma(vec4<f32>(a1.z), b0, acc60);
        acc61 = fma(vec4<f32>(a1.z), b1, acc61);
        acc70 = fma(vec4<f32>(a1.w), b0, acc70);
        acc71 = fma(vec4<f32>(a1.w), b1, acc71);
        // k = 6
        a0 = a_tile[6][ty];
        a1 = a_tile[6][ty + 16u];
        b0 = b_tile[6][tx];
        b1 = b_tile[6][tx + 16u];
        acc00 = fma(vec4<f32>(a0.x), b0, acc00);
        acc01 = fma(vec4<f32>(a0.x), b1, acc01);
        acc10 = fma(vec4<f32>(a0.y), b0, acc10);
        acc11 = fma(vec4<f32>(a0.y), b1, acc11);
        acc20 = fma(vec4<f32>(a0.z), b0, acc20);
        acc21 = fma(vec4<f32>(a0.z), b1, acc21);
        acc30 = fma(vec4<f32>(a0.w), b0, acc30);
        acc31 = fma(vec4<f32>(a0.w), b1, acc31);
        acc40 = fma(vec4<f32>(a1.x), b0, acc40);
        acc41 = fma(vec4<f32>(a1.x), b1, acc41);
        acc50 = fma(vec4<f32>(a1.y), b0, acc50);
        acc51 = fma(vec4<f32>(a1.y), b1, acc51);
        acc60 = fma(vec4<f32>(a1.z), b0, acc60);
        acc61 = fma(vec4<f32>(a1.z), b1, acc61);
        acc70 = fma(vec4<f32>(a1.w), b0, acc70);
        acc71 = fma(vec4<f32>(a1.w), b1, acc71);
        // k = 7
        a0 = a_tile[7][ty];
        a1 = a_tile[7][ty + 16u];
        b0 = b_tile[7][tx];
        b1 = b_tile[7][tx + 16u];
        acc00 = fma(vec4<f32>(a0.x), b0, acc00);
        acc01 = fma(vec4<f32>(a0.x), b1, acc01);
        acc10 = fma(vec4<f32>(a0.y), b0, acc10);
        acc11 = fma(vec4<f32>(a0.y), b1, acc11);
        acc20 = fma(vec4<f32>(a0.z), b0, acc20);
        acc21 = fma(vec4<f32>(a0.z), b1, acc21);
        acc30 = fma(vec4<f32>(a0.w), b0, acc30);
        acc31 = fma(vec4<f32>(a0.w), b1, acc31);
        acc40 = fma(vec4<f32>(a1.x), b0, acc40);
        acc41 = fma(vec4<f32>(a1.x), b1, acc41);
        acc50 = fma(vec4<f32>(a1.y), b0, acc50);
        acc51 = fma(vec4<f32>(a1.y), b1, acc51);
        acc60 = fma(vec4<f32>(a1.z), b0, acc60);
        acc61 = fma(vec4<f32>(a1.z), b1, acc61);
        acc70 = fma(vec4<f32>(a1.w), b0, acc70);
        acc71 = fma(vec4<f32>(a1.w), b1, acc71);
        workgroupBarrier();
    }

    store4(m0 + ty * 4u + 0u, n0 + tx * 4u, acc00);
    store4(m0 + ty * 4u + 0u, n0 + 64u + tx * 4u, acc01);
    store4(m0 + ty * 4u + 1u, n0 + tx * 4u, acc10);
    store4(m0 + ty * 4u + 1u, n0 + 64u + tx * 4u, acc11);
    store4(m0 + ty * 4u + 2u, n0 + tx * 4u, acc20);
    store4(m0 + ty * 4u + 2u, n0 + 64u + tx * 4u, acc21);
    store4(m0 + ty * 4u + 3u, n0 + tx * 4u, acc30);
    store4(m0 + ty * 4u + 3u, n0 + 64u + tx * 4u, acc31);
    store4(m0 + 64u + ty * 4u + 0u, n0 + tx * 4u, acc40);
    store4(m0 + 64u + ty * 4u + 0u, n0 + 64u + tx * 4u, acc41);
    store4(m0 + 64u + ty * 4u + 1u, n0 + tx * 4u, acc50);
    store4(m0 + 64u + ty * 4u + 1u, n0 + 64u + tx * 4u, acc51);
    store4(m0 + 64u + ty * 4u + 2u, n0 + tx * 4u, acc60);
    store4(m0 + 64u + ty * 4u + 2u, n0 + 64u + tx * 4u, acc61);
    store4(m0 + 64u + ty * 4u + 3u, n0 + tx * 4u, acc70);
    store4(m0 + 64u + ty * 4u + 3u, n0 + 64u + tx * 4u, acc71);
}
