//! The CPU implementation of every kernel: the fallback path of [`crate::Device::cpu`] and the
//! reference the GPU kernels are tested against. Plain single-threaded loops over row-major
//! `f32` slices; shapes are checked by the callers.

/// `C = A·B` with `A` m x k and `B` k x n, in cache-friendly i-k-j order.
pub fn matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut c = vec![0.0f32; m * n];
    matmul_into(a, b, &mut c, m, k, n);
    c
}

/// `C = A·B` written into `c` (overwritten), i-k-j order.
pub fn matmul_into(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    debug_assert_eq!(a.len(), m * k);
    debug_assert_eq!(b.len(), k * n);
    debug_assert_eq!(c.len(), m * n);
    c.fill(0.0);
    for i in 0..m {
        let c_row = &mut c[i * n..(i + 1) * n];
        let a_row = &a[i * k..(i + 1) * k];
        for (p, &a_ip) in a_row.iter().enumerate() {
            axpy(c_row, a_ip, &b[p * n..(p + 1) * n]);
        }
    }
}

/// `y += a * x` over the common length. A `while` loop with plain slice indexing: optimised
/// builds vectorise it like an iterator loop (the bound is the slices' own length, so the bounds
/// checks go away), and unoptimised builds (the test profile) run it several times faster than
/// an iterator chain, which keeps the CPU half of the training tests quick.
#[inline]
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    let n = y.len().min(x.len());
    let (y, x) = (&mut y[..n], &x[..n]);
    let mut j = 0;
    while j < n {
        y[j] += a * x[j];
        j += 1;
    }
}

/// `C = Aᵀ·B` with `A` stored k x m and `B` k x n (the weight-gradient product), k-i-j order.
pub fn matmul_tn(a: &[f32], b: &[f32], k: usize, m: usize, n: usize) -> Vec<f32> {
    let mut c = vec![0.0f32; m * n];
    matmul_tn_into(a, b, &mut c, k, m, n);
    c
}

/// `C = Aᵀ·B` written into `c` (overwritten).
pub fn matmul_tn_into(a: &[f32], b: &[f32], c: &mut [f32], k: usize, m: usize, n: usize) {
    debug_assert_eq!(a.len(), k * m);
    debug_assert_eq!(b.len(), k * n);
    debug_assert_eq!(c.len(), m * n);
    c.fill(0.0);
    for p in 0..k {
        let a_row = &a[p * m..(p + 1) * m];
        let b_row = &b[p * n..(p + 1) * n];
        for (i, &a_pi) in a_row.iter().enumerate() {
            axpy(&mut c[i * n..(i + 1) * n], a_pi, b_row);
        }
    }
}

/// Adds the row vector `bias` (length `cols`) to every row of `x`, in place.
pub fn add_bias_inplace(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(bias.len()) {
        for (v, &b) in row.iter_mut().zip(bias) {
            *v += b;
        }
    }
}

/// Index of the largest value, the first one among equals (what the GPU kernels also pick).
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// Numerically stable softmax of each row of `x` (`cols` wide).
pub fn softmax_rows(x: &[f32], cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    for (row, out_row) in x.chunks_exact(cols).zip(out.chunks_exact_mut(cols)) {
        let max = row[argmax(row)];
        let total: f32 = row.iter().map(|&v| (v - max).exp()).sum();
        for (o, &v) in out_row.iter_mut().zip(row) {
            *o = (v - max).exp() / total;
        }
    }
    out
}

/// The fused softmax / cross-entropy row pass.
#[derive(Debug, Clone, PartialEq)]
pub struct SoftmaxXent {
    /// Softmax probabilities, rows x cols.
    pub probs: Vec<f32>,
    /// Cross-entropy loss of each row, `-log p[label]`, computed as `log Σexp(z-max) - (z[label]-max)`.
    pub row_loss: Vec<f32>,
    /// Gradient of the mean loss w.r.t. the logits: `(p - onehot(label)) / rows`.
    pub dlogits: Vec<f32>,
    /// 1.0 where the row's argmax equals its label, else 0.0.
    pub correct: Vec<f32>,
}

/// Softmax, per-row cross entropy and the softmax-minus-one-hot gradient (divided by the batch
/// size `rows`) in one pass over each row. Labels must be below `cols` (checked by callers).
pub fn softmax_xent(logits: &[f32], labels: &[u8], cols: usize) -> SoftmaxXent {
    let rows = labels.len();
    debug_assert_eq!(logits.len(), rows * cols);
    let scale = 1.0 / rows as f32;
    let mut probs = vec![0.0f32; logits.len()];
    let mut dlogits = vec![0.0f32; logits.len()];
    let mut row_loss = Vec::with_capacity(rows);
    let mut correct = Vec::with_capacity(rows);
    for (r, &label) in labels.iter().enumerate() {
        let z = &logits[r * cols..(r + 1) * cols];
        let best = argmax(z);
        let max = z[best];
        let total: f32 = z.iter().map(|&v| (v - max).exp()).sum();
        let label = label as usize;
        for c in 0..cols {
            let p = (z[c] - max).exp() / total;
            probs[r * cols + c] = p;
            let onehot = if c == label { 1.0 } else { 0.0 };
            dlogits[r * cols + c] = (p - onehot) * scale;
        }
        row_loss.push(total.ln() - (z[label] - max));
        correct.push(if best == label { 1.0 } else { 0.0 });
    }
    SoftmaxXent {
        probs,
        row_loss,
        dlogits,
        correct,
    }
}

/// Column sums of `g` (rows x cols): the bias gradient.
pub fn bias_grad(g: &[f32], cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; cols];
    for row in g.chunks_exact(cols) {
        for (o, &v) in out.iter_mut().zip(row) {
            *o += v;
        }
    }
    out
}

/// SGD update `w -= lr * g`, in place.
pub fn sgd(w: &mut [f32], g: &[f32], lr: f32) {
    for (w, &g) in w.iter_mut().zip(g) {
        *w -= lr * g;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_products_by_hand() {
        // [1 2; 3 4] · [5 6; 7 8] = [19 22; 43 50]
        assert_eq!(
            matmul(&[1., 2., 3., 4.], &[5., 6., 7., 8.], 2, 2, 2),
            vec![19., 22., 43., 50.]
        );
        // [1 2; 3 4]ᵀ · [5 6; 7 8] = [1 3; 2 4] · [5 6; 7 8] = [26 30; 38 44]
        assert_eq!(
            matmul_tn(&[1., 2., 3., 4.], &[5., 6., 7., 8.], 2, 2, 2),
            vec![26., 30., 38., 44.]
        );
        // 1x3 · 3x1
        assert_eq!(matmul(&[1., 2., 3.], &[4., 5., 6.], 1, 3, 1), vec![32.]);
    }

    #[test]
    fn softmax_xent_by_hand() {
        let logits = [0.0, 0.0, 1000.0, 1.0, 2.0, 3.0];
        let out = softmax_xent(&logits, &[0, 2], 3);
        // Row 0: the huge logit takes all the mass without overflowing.
        assert_eq!(out.probs[2], 1.0);
        assert!(out.probs[0] < 1e-30);
        assert!((out.row_loss[0] - 1000.0).abs() < 1e-3);
        assert_eq!(out.correct, vec![0.0, 1.0]);
        // Row 1: softmax(1,2,3).
        let e: Vec<f64> = [1.0f64, 2.0, 3.0].iter().map(|v| v.exp()).collect();
        let s: f64 = e.iter().sum();
        for (c, e_c) in e.iter().enumerate() {
            assert!((out.probs[3 + c] as f64 - e_c / s).abs() < 1e-6);
        }
        assert!((out.row_loss[1] as f64 - (s.ln() - 3.0)).abs() < 1e-6);
        // dlogits = (p - onehot) / 2
        assert!((out.dlogits[5] as f64 - (e[2] / s - 1.0) / 2.0).abs() < 1e-6);
        assert!((out.dlogits[3] as f64 - (e[0] / s) / 2.0).abs() < 1e-6);
        assert_eq!(softmax_rows(&logits[3..], 3), out.probs[3..].to_vec());
    }

    #[test]
    fn argmax_takes_the_first_of_equals() {
        assert_eq!(argmax(&[0.0, 0.0, 0.0]), 0);
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
    }

    #[test]
    fn bias_and_sgd() {
        let mut x = vec![1., 2., 3., 4.];
        add_bias_inplace(&mut x, &[10., 20.]);
        assert_eq!(x, vec![11., 22., 13., 24.]);
        assert_eq!(bias_grad(&x, 2), vec![24., 46.]);
        let mut w = vec![1.0, 1.0];
        sgd(&mut w, &[2.0, -4.0], 0.5);
        assert_eq!(w, vec![0.0, 3.0]);
    }
}
