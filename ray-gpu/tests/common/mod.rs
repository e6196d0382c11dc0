//! Helpers shared by the integration tests.
#![allow(dead_code)]

use ray_gpu::Device;

/// Logical GPU 0, or `None` (with a note) when this machine has no adapter. Under `CI=true` a
/// missing adapter fails the test instead: CI installs lavapipe (scripts/install-gpu-deps.sh),
/// so no adapter there means the GPU path went untested.
pub fn gpu() -> Option<Device> {
    let count = ray_gpu::adapter_count();
    if count == 0 {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        if ci {
            panic!(
                "CI=true but wgpu found no GPU adapter (not even lavapipe): run \
                 scripts/install-gpu-deps.sh so the GPU kernels are tested"
            );
        }
        eprintln!("note: no GPU adapter on this machine; skipping the GPU half of this test");
        return None;
    }
    Some(Device::try_gpu(0).expect("logical GPU 0 exists but could not be opened"))
}

/// Deterministic pseudo-random values (xorshift64*), uniform in `[lo, hi)`.
pub fn random(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let bits = state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40; // 24 bits
            lo + (hi - lo) * (bits as f32 / (1u64 << 24) as f32)
        })
        .collect()
}

/// Values that are multiples of 1/8 in [-1, 1]: products and sums of a few thousand of them
/// are exact in f32 whatever the order of summation, so a product of such matrices must match
/// the reference bit for bit.
pub fn dyadic(n: usize, seed: u64) -> Vec<f32> {
    random(n, seed, 0.0, 1.0)
        .into_iter()
        .map(|v| ((v * 17.0).floor() - 8.0) / 8.0)
        .collect()
}

/// Plain triple-loop reference in f64: C = op(A)·B with A m x k (or k x m when `transpose`).
pub fn reference_matmul(
    a: &[f32],
    b: &[f32],
    m: usize,
    k: usize,
    n: usize,
    transpose: bool,
) -> Vec<f64> {
    let mut c = vec![0.0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f64;
            for p in 0..k {
                let av = if transpose {
                    a[p * m + i]
                } else {
                    a[i * k + p]
                };
                s += av as f64 * b[p * n + j] as f64;
            }
            c[i * n + j] = s;
        }
    }
    c
}

/// Panics with the worst element unless |got - want| <= abs + rel * |want| everywhere.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], abs: f64, rel: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst: Option<(usize, f64)> = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        // A NaN (e.g. an output element the kernel never wrote) counts as an infinite error.
        let err = (g as f64 - w).abs();
        let err = if err.is_nan() { f64::INFINITY } else { err };
        let tol = abs + rel * w.abs();
        if err > tol && worst.is_none_or(|(_, e)| err > e) {
            worst = Some((i, err));
        }
    }
    if let Some((i, err)) = worst {
        panic!(
            "{what}: element {i} is {} but the reference is {} (error {err:e}, tolerance abs {abs:e} + rel {rel:e})",
            got[i], want[i]
        );
    }
}
