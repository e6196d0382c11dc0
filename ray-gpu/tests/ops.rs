//! GPU kernels against a plain CPU reference, on shapes that are not multiples of the 128x128x8
//! matmul tile. Each op is also run on the CPU device, so both implementations are checked
//! against the same reference.

mod common;

use common::{assert_close, dyadic, random, reference_matmul};
use ray_gpu::{Device, Error, cpu};

/// (m, k, n) for C (m x n) = A (m x k) · B (k x n).
const SHAPES: [(usize, usize, usize); 7] = [
    (1, 1, 1),
    (7, 13, 5),
    (100, 784, 10),
    (257, 129, 33),
    (130, 9, 131),
    (3, 300, 259),
    (64, 16, 128),
];

/// Matmul tolerance for real-valued inputs in [0, 1): all terms are positive, so the relative
/// error of an f32 sum of K terms is at most about K * 2^-24 (4.7e-5 for K = 784) and in practice
/// far smaller; we allow relative 1e-4 plus absolute 1e-5.
const MATMUL_REL: f64 = 1e-4;
const MATMUL_ABS: f64 = 1e-5;

fn devices() -> Vec<Device> {
    let mut d = vec![Device::cpu()];
    d.extend(common::gpu());
    d
}

fn check_product(dev: &Device, m: usize, k: usize, n: usize, transpose: bool) {
    let op = if transpose { "matmul_tn" } else { "matmul" };
    let (a_rows, a_cols) = if transpose { (k, m) } else { (m, k) };
    let seed = (m * 1_000_003 + k * 1009 + n) as u64;
    // 1. Dyadic inputs: every partial sum is exact, so any indexing slip shows as a mismatch and
    //    the product must equal the reference exactly.
    let a = dyadic(m * k, seed);
    let b = dyadic(k * n, seed + 1);
    let ta = dev.upload(a_rows, a_cols, &a).unwrap();
    let tb = dev.upload(k, n, &b).unwrap();
    let c = if transpose {
        dev.matmul_tn(&ta, &tb)
    } else {
        dev.matmul(&ta, &tb)
    }
    .unwrap();
    assert_eq!(c.shape(), (m, n));
    let want = reference_matmul(&a, &b, m, k, n, transpose);
    assert_close(
        &format!("{op} {m}x{k}x{n} exact on {}", dev.describe()),
        &c.read().unwrap(),
        &want,
        0.0,
        0.0,
    );
    // 2. Real-valued inputs with rounding.
    let a = random(m * k, seed + 2, 0.0, 1.0);
    let b = random(k * n, seed + 3, 0.0, 1.0);
    let ta = dev.upload(a_rows, a_cols, &a).unwrap();
    let tb = dev.upload(k, n, &b).unwrap();
    // Reuse an output tensor holding garbage: the product must overwrite it completely.
    let mut c = dev.upload(m, n, &vec![f32::NAN; m * n]).unwrap();
    if transpose {
        dev.matmul_tn_into(&ta, &tb, &mut c).unwrap();
    } else {
        dev.matmul_into(&ta, &tb, &mut c).unwrap();
    }
    let want = reference_matmul(&a, &b, m, k, n, transpose);
    assert_close(
        &format!("{op} {m}x{k}x{n} on {}", dev.describe()),
        &c.read().unwrap(),
        &want,
        MATMUL_ABS,
        MATMUL_REL,
    );
}

#[test]
fn matmul_matches_reference_on_odd_shapes() {
    for dev in devices() {
        for &(m, k, n) in &SHAPES {
            check_product(&dev, m, k, n, false);
        }
    }
}

#[test]
fn transposed_left_matmul_matches_reference_on_odd_shapes() {
    for dev in devices() {
        for &(m, k, n) in &SHAPES {
            check_product(&dev, m, k, n, true);
        }
        // The weight-gradient shape of the model: Xᵀ (784 x 100) · G (100 x 10).
        check_product(&dev, 784, 100, 10, true);
    }
}

#[test]
fn matmul_rejects_mismatched_shapes_on_every_device() {
    for dev in devices() {
        let a = dev.upload(3, 4, &[1.0; 12]).unwrap();
        let b = dev.upload(5, 2, &[1.0; 10]).unwrap();
        let err = dev.matmul(&a, &b).unwrap_err();
        assert!(matches!(err, Error::ShapeMismatch { .. }));
        assert_eq!(
            err.to_string(),
            "matmul: left is 3x4 but right is 5x2 (inner dimensions 4 and 5 must match)"
        );
        assert!(dev.matmul_tn(&a, &b).is_err());
        let mut wrong = dev.zeros(4, 4).unwrap();
        let b_ok = dev.upload(4, 2, &[1.0; 8]).unwrap();
        assert!(dev.matmul_into(&a, &b_ok, &mut wrong).is_err());
    }
}

#[test]
fn tensors_cannot_cross_devices() {
    let Some(gpu) = common::gpu() else { return };
    let cpu_dev = Device::cpu();
    let g = gpu.upload(2, 2, &[1.0; 4]).unwrap();
    let c = cpu_dev.upload(2, 2, &[1.0; 4]).unwrap();
    let err = gpu.matmul(&g, &c).unwrap_err();
    assert!(matches!(err, Error::DeviceMismatch { .. }), "{err}");
    let err = cpu_dev.matmul(&g, &c).unwrap_err();
    assert!(
        err.to_string().contains("but the operation runs on cpu"),
        "{err}"
    );
}

#[test]
fn bias_softmax_and_gradient_kernels_match_cpu() {
    // (rows, cols): one class, a typical batch, more columns than the 64-wide row workgroup.
    for &(rows, cols) in &[(1usize, 1usize), (100, 10), (37, 130), (5, 1000)] {
        let x = random(rows * cols, 11 + cols as u64, -4.0, 4.0);
        let bias = random(cols, 12, -1.0, 1.0);
        let labels: Vec<u8> = (0..rows)
            .map(|r| ((r * 7 + 3) % cols.min(256)) as u8)
            .collect();

        let mut logits_ref = x.clone();
        cpu::add_bias_inplace(&mut logits_ref, &bias);
        let want = cpu::softmax_xent(&logits_ref, &labels, cols);
        let want_softmax = cpu::softmax_rows(&x, cols);
        let want_bias_grad = cpu::bias_grad(&want.dlogits, cols);
        let f64s = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();

        for dev in devices() {
            let what = |op: &str| format!("{op} {rows}x{cols} on {}", dev.describe());
            let tx = dev.upload(rows, cols, &x).unwrap();
            let tb = dev.upload(1, cols, &bias).unwrap();
            let logits = dev.add_bias(&tx, &tb).unwrap();
            // Addition of two f32 is correctly rounded everywhere: exact match.
            assert_close(
                &what("add_bias"),
                &logits.read().unwrap(),
                &f64s(&logits_ref),
                0.0,
                0.0,
            );

            let p = dev.softmax(&tx).unwrap().read().unwrap();
            assert_close(&what("softmax"), &p, &f64s(&want_softmax), 1e-6, 1e-5);

            let out = dev.softmax_cross_entropy(&logits, &labels).unwrap();
            assert_eq!(out.row_loss.shape(), (rows, 1));
            assert_close(
                &what("probs"),
                &out.probs.read().unwrap(),
                &f64s(&want.probs),
                1e-6,
                1e-5,
            );
            assert_close(
                &what("row_loss"),
                &out.row_loss.read().unwrap(),
                &f64s(&want.row_loss),
                1e-5,
                1e-5,
            );
            assert_close(
                &what("dlogits"),
                &out.dlogits.read().unwrap(),
                &f64s(&want.dlogits),
                1e-7,
                1e-5,
            );
            let mean: f64 = want.row_loss.iter().map(|&l| l as f64).sum::<f64>() / rows as f64;
            let ce = dev.cross_entropy(&logits, &labels).unwrap() as f64;
            assert!(
                (ce - mean).abs() <= 1e-5 * mean.max(1.0),
                "{}: {ce} vs {mean}",
                what("cross_entropy")
            );

            let bg = dev.bias_grad(&out.dlogits).unwrap();
            assert_eq!(bg.shape(), (1, cols));
            assert_close(
                &what("bias_grad"),
                &bg.read().unwrap(),
                &f64s(&want_bias_grad),
                1e-6,
                1e-4,
            );

            let mut w = dev.upload(rows, cols, &x).unwrap();
            dev.sgd_update(&mut w, &out.dlogits, 0.5).unwrap();
            let mut want_w = x.clone();
            cpu::sgd(&mut want_w, &want.dlogits, 0.5);
            assert_close(
                &what("sgd_update"),
                &w.read().unwrap(),
                &f64s(&want_w),
                1e-6,
                1e-6,
            );
        }
    }
}

#[test]
fn softmax_is_stable_for_huge_logits() {
    for dev in devices() {
        let x = dev
            .upload(2, 3, &[1000.0, 0.0, -1000.0, 88.0, 89.0, 90.0])
            .unwrap();
        let p = dev.softmax(&x).unwrap().read().unwrap();
        assert!(
            p.iter().all(|v| v.is_finite()),
            "{p:?} on {}",
            dev.describe()
        );
        assert!((p[0] - 1.0).abs() < 1e-6);
        let loss = dev.cross_entropy(&x, &[2, 0]).unwrap();
        assert!(loss.is_finite() && loss > 900.0, "{loss}");
    }
}

#[test]
fn labels_are_validated() {
    for dev in devices() {
        let x = dev.upload(2, 3, &[0.0; 6]).unwrap();
        let err = dev.softmax_cross_entropy(&x, &[0, 3]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "softmax_cross_entropy: label 3 at row 1 is out of range for 3 classes"
        );
    }
}
