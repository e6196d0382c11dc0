//! The typed, shape-checked operations on [`Tensor`]s. Each runs on the GPU kernels of
//! `kernels.rs` or, on the CPU device, on the loops of `cpu.rs`. A shape mismatch is an
//! [`Error::ShapeMismatch`] naming both shapes, never a wrong answer.
//!
//! GPU operations are submitted without waiting; [`Tensor::read`] or [`Device::synchronize`]
//! waits.

use std::sync::Arc;

use crate::cpu;
use crate::device::{Backing, Device, GpuContext};
use crate::error::{Error, Result};
use crate::kernels::{Dispatch, ELEMENTWISE_WG, MATMUL_TILE, Params};
use crate::tensor::{Storage, Tensor};

/// What [`Device::softmax_cross_entropy`] computes in its single pass over each row.
#[derive(Debug)]
pub struct SoftmaxCrossEntropy {
    /// Softmax probabilities, same shape as the logits.
    pub probs: Tensor,
    /// Cross-entropy loss of each row (`-log p[label]`), rows x 1.
    pub row_loss: Tensor,
    /// Gradient of the mean loss with respect to the logits, `(p - onehot(label)) / rows`.
    pub dlogits: Tensor,
}

fn shape(rows: usize, cols: usize) -> String {
    format!("{rows}x{cols}")
}

fn check_nonempty(op: &'static str, rows: usize, cols: usize) -> Result<()> {
    if rows == 0 || cols == 0 {
        return Err(Error::EmptyShape { op, rows, cols });
    }
    Ok(())
}

/// Checks every label is below `classes`.
pub(crate) fn check_labels(op: &'static str, labels: &[u8], classes: usize) -> Result<()> {
    match labels.iter().position(|&l| l as usize >= classes) {
        Some(row) => Err(Error::LabelOutOfRange {
            op,
            row,
            label: labels[row],
            classes,
        }),
        None => Ok(()),
    }
}

fn cpu_values<'t>(op: &'static str, t: &'t Tensor) -> Result<&'t [f32]> {
    match &t.storage {
        Storage::Cpu(v) => Ok(v),
        Storage::Gpu { ctx, .. } => Err(Error::DeviceMismatch {
            op,
            tensor: ctx.describe(),
            device: "cpu".to_string(),
        }),
    }
}

fn gpu_buffer<'t>(op: &'static str, ctx: &GpuContext, t: &'t Tensor) -> Result<&'t wgpu::Buffer> {
    match &t.storage {
        Storage::Gpu { ctx: owner, buffer } if std::ptr::eq(Arc::as_ptr(owner), ctx) => Ok(buffer),
        _ => Err(Error::DeviceMismatch {
            op,
            tensor: t.location(),
            device: ctx.describe(),
        }),
    }
}

impl Device {
    fn expect_on(&self, op: &'static str, tensors: &[&Tensor]) -> Result<()> {
        for t in tensors {
            if !self.same_as(&t.backing()) {
                return Err(Error::DeviceMismatch {
                    op,
                    tensor: t.location(),
                    device: self.describe(),
                });
            }
        }
        Ok(())
    }

    fn gpu_tensor(ctx: &Arc<GpuContext>, rows: usize, cols: usize, buffer: wgpu::Buffer) -> Tensor {
        Tensor {
            rows,
            cols,
            storage: Storage::Gpu {
                ctx: Arc::clone(ctx),
                buffer,
            },
        }
    }

    fn cpu_tensor(rows: usize, cols: usize, values: Vec<f32>) -> Tensor {
        debug_assert_eq!(values.len(), rows * cols);
        Tensor {
            rows,
            cols,
            storage: Storage::Cpu(values),
        }
    }

    /// Copies `data` (row-major, `rows * cols` values) to the device.
    pub fn upload(&self, rows: usize, cols: usize, data: &[f32]) -> Result<Tensor> {
        const OP: &str = "upload";
        check_nonempty(OP, rows, cols)?;
        if data.len() != rows * cols {
            return Err(Error::DataLength {
                op: OP,
                rows,
                cols,
                expected: rows * cols,
                found: data.len(),
            });
        }
        match &self.backing {
            Backing::Cpu => Ok(Self::cpu_tensor(rows, cols, data.to_vec())),
            Backing::Gpu(ctx) => {
                ctx.buffer_bytes(OP, rows, cols)?;
                let buffer = ctx.storage_init("ray-gpu tensor", bytemuck::cast_slice(data));
                ctx.check(OP)?;
                Ok(Self::gpu_tensor(ctx, rows, cols, buffer))
            }
        }
    }

    /// A `rows x cols` tensor of zeros.
    pub fn zeros(&self, rows: usize, cols: usize) -> Result<Tensor> {
        const OP: &str = "zeros";
        check_nonempty(OP, rows, cols)?;
        match &self.backing {
            Backing::Cpu => Ok(Self::cpu_tensor(rows, cols, vec![0.0; rows * cols])),
            Backing::Gpu(ctx) => {
                let bytes = ctx.buffer_bytes(OP, rows, cols)?;
                // wgpu zero-initialises buffers before their first use.
                let buffer = ctx.storage("ray-gpu tensor", bytes);
                ctx.check(OP)?;
                Ok(Self::gpu_tensor(ctx, rows, cols, buffer))
            }
        }
    }

    /// `C = A·B` for `A` m x k and `B` k x n (tiled kernel: 128x128 blocks, 8x8 per invocation).
    pub fn matmul(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let mut c = self.zeros(a.rows, b.cols)?;
        self.matmul_into(a, b, &mut c)?;
        Ok(c)
    }

    /// `C = A·B` written into an existing `c` of shape m x n (reuses its memory).
    pub fn matmul_into(&self, a: &Tensor, b: &Tensor, c: &mut Tensor) -> Result<()> {
        const OP: &str = "matmul";
        if a.cols != b.rows {
            return Err(Error::ShapeMismatch {
                op: OP,
                detail: format!(
                    "left is {} but right is {} (inner dimensions {} and {} must match)",
                    a.shape_str(),
                    b.shape_str(),
                    a.cols,
                    b.rows
                ),
            });
        }
        self.product_into(OP, false, a, b, c, a.rows, a.cols, b.cols)
    }

    /// `C = Aᵀ·B` for `A` stored k x m and `B` k x n, without materialising `Aᵀ` (the weight
    /// gradient `Xᵀ·G`).
    pub fn matmul_tn(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let mut c = self.zeros(a.cols, b.cols)?;
        self.matmul_tn_into(a, b, &mut c)?;
        Ok(c)
    }

    /// `C = Aᵀ·B` written into an existing `c` of shape m x n.
    pub fn matmul_tn_into(&self, a: &Tensor, b: &Tensor, c: &mut Tensor) -> Result<()> {
        const OP: &str = "matmul_tn";
        if a.rows != b.rows {
            return Err(Error::ShapeMismatch {
                op: OP,
                detail: format!(
                    "left is {} (transposed {}) but right is {} (inner dimensions {} and {} must match)",
                    a.shape_str(),
                    shape(a.cols, a.rows),
                    b.shape_str(),
                    a.rows,
                    b.rows
                ),
            });
        }
        self.product_into(OP, true, a, b, c, a.cols, a.rows, b.cols)
    }

    #[allow(clippy::too_many_arguments)]
    fn product_into(
        &self,
        op: &'static str,
        transpose_lhs: bool,
        a: &Tensor,
        b: &Tensor,
        c: &mut Tensor,
        m: usize,
        k: usize,
        n: usize,
    ) -> Result<()> {
        if c.shape() != (m, n) {
            return Err(Error::ShapeMismatch {
                op,
                detail: format!(
                    "output is {} but the product of {} and {} is {}",
                    c.shape_str(),
                    a.shape_str(),
                    b.shape_str(),
                    shape(m, n)
                ),
            });
        }
        self.expect_on(op, &[a, b, c])?;
        match &self.backing {
            Backing::Cpu => {
                let (av, bv) = (cpu_values(op, a)?, cpu_values(op, b)?);
                let out = match &mut c.storage {
                    Storage::Cpu(v) => v,
                    Storage::Gpu { .. } => return Err(self.mismatch(op, c)),
                };
                if transpose_lhs {
                    cpu::matmul_tn_into(av, bv, out, k, m, n);
                } else {
                    cpu::matmul_into(av, bv, out, m, k, n);
                }
                Ok(())
            }
            Backing::Gpu(ctx) => {
                let tile = MATMUL_TILE as usize;
                let (gx, gy) = (n.div_ceil(tile), m.div_ceil(tile));
                let max = ctx.limits.max_compute_workgroups_per_dimension as usize;
                if gx > max || gy > max {
                    return Err(Error::Unsupported {
                        op,
                        detail: format!(
                            "a {} output needs {gx}x{gy} workgroups, over the device limit of {max} per dimension",
                            shape(m, n)
                        ),
                    });
                }
                let pipeline = if transpose_lhs {
                    &ctx.kernels.matmul_tn
                } else {
                    &ctx.kernels.matmul
                };
                let params = ctx.uniform(op, Params::new(m as u32, n as u32, k as u32, 0));
                let bind_group = ctx.bind(
                    op,
                    pipeline,
                    &[
                        gpu_buffer(op, ctx, a)?,
                        gpu_buffer(op, ctx, b)?,
                        gpu_buffer(op, ctx, c)?,
                        &params,
                    ],
                );
                ctx.submit(&[Dispatch {
                    pipeline,
                    bind_group,
                    groups: [gx as u32, gy as u32, 1],
                }]);
                ctx.check(op)
            }
        }
    }

    fn mismatch(&self, op: &'static str, t: &Tensor) -> Error {
        Error::DeviceMismatch {
            op,
            tensor: t.location(),
            device: self.describe(),
        }
    }

    /// `x + bias` with the 1 x cols row vector `bias` added to every row.
    pub fn add_bias(&self, x: &Tensor, bias: &Tensor) -> Result<Tensor> {
        const OP: &str = "add_bias";
        if bias.shape() != (1, x.cols) {
            return Err(Error::ShapeMismatch {
                op: OP,
                detail: format!(
                    "input is {} but bias is {} (bias must be 1x{})",
                    x.shape_str(),
                    bias.shape_str(),
                    x.cols
                ),
            });
        }
        self.expect_on(OP, &[x, bias])?;
        match &self.backing {
            Backing::Cpu => {
                let mut out = cpu_values(OP, x)?.to_vec();
                cpu::add_bias_inplace(&mut out, cpu_values(OP, bias)?);
                Ok(Self::cpu_tensor(x.rows, x.cols, out))
            }
            Backing::Gpu(ctx) => {
                let out = self.zeros(x.rows, x.cols)?;
                let params = ctx.uniform(
                    OP,
                    Params::new(x.rows as u32, x.cols as u32, x.len() as u32, 0),
                );
                let pipeline = &ctx.kernels.add_bias;
                let bind_group = ctx.bind(
                    OP,
                    pipeline,
                    &[
                        gpu_buffer(OP, ctx, x)?,
                        gpu_buffer(OP, ctx, bias)?,
                        gpu_buffer(OP, ctx, &out)?,
                        &params,
                    ],
                );
                ctx.submit(&[Dispatch {
                    pipeline,
                    bind_group,
                    groups: [ctx.groups_for(x.len(), ELEMENTWISE_WG), 1, 1],
                }]);
                ctx.check(OP)?;
                Ok(out)
            }
        }
    }

    /// Row-wise numerically stable softmax.
    pub fn softmax(&self, x: &Tensor) -> Result<Tensor> {
        const OP: &str = "softmax";
        self.expect_on(OP, &[x])?;
        match &self.backing {
            Backing::Cpu => Ok(Self::cpu_tensor(
                x.rows,
                x.cols,
                cpu::softmax_rows(cpu_values(OP, x)?, x.cols),
            )),
            Backing::Gpu(ctx) => {
                let out = self.zeros(x.rows, x.cols)?;
                let params = ctx.uniform(OP, Params::new(x.rows as u32, x.cols as u32, 0, 0));
                let pipeline = &ctx.kernels.softmax;
                let bind_group = ctx.bind(
                    OP,
                    pipeline,
                    &[gpu_buffer(OP, ctx, x)?, gpu_buffer(OP, ctx, &out)?, &params],
                );
                ctx.submit(&[Dispatch {
                    pipeline,
                    bind_group,
                    groups: [ctx.groups_for(x.rows, 1), 1, 1],
                }]);
                ctx.check(OP)?;
                Ok(out)
            }
        }
    }

    /// Softmax, per-row cross-entropy loss and the softmax-minus-one-hot gradient divided by the
    /// batch size, in one pass over each row. `labels` has one entry per row, each below
    /// `logits.cols()`.
    pub fn softmax_cross_entropy(
        &self,
        logits: &Tensor,
        labels: &[u8],
    ) -> Result<SoftmaxCrossEntropy> {
        const OP: &str = "softmax_cross_entropy";
        if labels.len() != logits.rows {
            return Err(Error::ShapeMismatch {
                op: OP,
                detail: format!(
                    "logits are {} but {} labels were given (one label per row)",
                    logits.shape_str(),
                    labels.len()
                ),
            });
        }
        check_labels(OP, labels, logits.cols)?;
        self.expect_on(OP, &[logits])?;
        let (rows, cols) = logits.shape();
        match &self.backing {
            Backing::Cpu => {
                let out = cpu::softmax_xent(cpu_values(OP, logits)?, labels, cols);
                Ok(SoftmaxCrossEntropy {
                    probs: Self::cpu_tensor(rows, cols, out.probs),
                    row_loss: Self::cpu_tensor(rows, 1, out.row_loss),
                    dlogits: Self::cpu_tensor(rows, cols, out.dlogits),
                })
            }
            Backing::Gpu(ctx) => {
                let labels32: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
                let label_buf = ctx.storage_init("ray-gpu labels", bytemuck::cast_slice(&labels32));
                let probs = self.zeros(rows, cols)?;
                let dlogits = self.zeros(rows, cols)?;
                let row_loss = self.zeros(rows, 1)?;
                let params = ctx.uniform(
                    OP,
                    Params::new(rows as u32, cols as u32, 0, 0).with_scale(1.0 / rows as f32),
                );
                let pipeline = &ctx.kernels.softmax_xent;
                let bind_group = ctx.bind(
                    OP,
                    pipeline,
                    &[
                        gpu_buffer(OP, ctx, logits)?,
                        &label_buf,
                        gpu_buffer(OP, ctx, &probs)?,
                        gpu_buffer(OP, ctx, &dlogits)?,
                        gpu_buffer(OP, ctx, &row_loss)?,
                        &params,
                    ],
                );
                ctx.submit(&[Dispatch {
                    pipeline,
                    bind_group,
                    groups: [ctx.groups_for(rows, 1), 1, 1],
                }]);
                ctx.check(OP)?;
                Ok(SoftmaxCrossEntropy {
                    probs,
                    row_loss,
                    dlogits,
                })
            }
        }
    }

    /// Mean cross-entropy loss of `softmax(logits)` against `labels` (reads the per-row losses
    /// back and averages them in f64).
    pub fn cross_entropy(&self, logits: &Tensor, labels: &[u8]) -> Result<f32> {
        let out = self.softmax_cross_entropy(logits, labels)?;
        let losses = out.row_loss.read()?;
        Ok((losses.iter().map(|&l| l as f64).sum::<f64>() / losses.len() as f64) as f32)
    }

    /// Column sums of `g` (rows x cols) as a 1 x cols tensor: the bias gradient.
    pub fn bias_grad(&self, g: &Tensor) -> Result<Tensor> {
        const OP: &str = "bias_grad";
        self.expect_on(OP, &[g])?;
        match &self.backing {
            Backing::Cpu => Ok(Self::cpu_tensor(
                1,
                g.cols,
                cpu::bias_grad(cpu_values(OP, g)?, g.cols),
            )),
            Backing::Gpu(ctx) => {
                let out = self.zeros(1, g.cols)?;
                let params = ctx.uniform(OP, Params::new(g.rows as u32, g.cols as u32, 0, 0));
                let pipeline = &ctx.kernels.bias_grad;
                let bind_group = ctx.bind(
                    OP,
                    pipeline,
                    &[gpu_buffer(OP, ctx, g)?, gpu_buffer(OP, ctx, &out)?, &params],
                );
                ctx.submit(&[Dispatch {
                    pipeline,
                    bind_group,
                    groups: [ctx.groups_for(g.cols, ELEMENTWISE_WG), 1, 1],
                }]);
                ctx.check(OP)?;
                Ok(out)
            }
        }
    }

    /// The SGD update `w -= lr * g`, in place.
    pub fn sgd_update(&self, w: &mut Tensor, g: &Tensor, lr: f32) -> Result<()> {
        const OP: &str = "sgd_update";
        if w.shape() != g.shape() {
            return Err(Error::ShapeMismatch {
                op: OP,
                detail: format!(
                    "weights are {} but gradient is {} (shapes must be equal)",
                    w.shape_str(),
                    g.shape_str()
                ),
            });
        }
        self.expect_on(OP, &[w, g])?;
        match &self.backing {
            Backing::Cpu => {
                let gv = cpu_values(OP, g)?;
                match &mut w.storage {
                    Storage::Cpu(wv) => cpu::sgd(wv, gv, lr),
                    Storage::Gpu { .. } => return Err(self.mismatch(OP, w)),
                }
                Ok(())
            }
            Backing::Gpu(ctx) => {
                let params = ctx.uniform(OP, Params::new(0, 0, w.len() as u32, 0).with_lr(lr));
                let pipeline = &ctx.kernels.sgd;
                let bind_group = ctx.bind(
                    OP,
                    pipeline,
                    &[gpu_buffer(OP, ctx, w)?, gpu_buffer(OP, ctx, g)?, &params],
                );
                ctx.submit(&[Dispatch {
                    pipeline,
                    bind_group,
                    groups: [ctx.groups_for(w.len(), ELEMENTWISE_WG), 1, 1],
                }]);
                ctx.check(OP)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_errors_name_both_shapes() {
        let d = Device::cpu();
        let a = d.upload(3, 4, &[0.0; 12]).unwrap();
        let b = d.upload(5, 2, &[0.0; 10]).unwrap();
        let err = d.matmul(&a, &b).unwrap_err().to_string();
        assert_eq!(
            err,
            "matmul: left is 3x4 but right is 5x2 (inner dimensions 4 and 5 must match)"
        );
        let err = d.matmul_tn(&a, &b).unwrap_err().to_string();
        assert_eq!(
            err,
            "matmul_tn: left is 3x4 (transposed 4x3) but right is 5x2 (inner dimensions 3 and 5 must match)"
        );
        let bias = d.upload(1, 3, &[0.0; 3]).unwrap();
        let err = d.add_bias(&a, &bias).unwrap_err().to_string();
        assert_eq!(
            err,
            "add_bias: input is 3x4 but bias is 1x3 (bias must be 1x4)"
        );
        let mut w = d.upload(3, 4, &[0.0; 12]).unwrap();
        let err = d.sgd_update(&mut w, &b, 0.1).unwrap_err().to_string();
        assert_eq!(
            err,
            "sgd_update: weights are 3x4 but gradient is 5x2 (shapes must be equal)"
        );
        let err = d
            .softmax_cross_entropy(&a, &[0, 1])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "softmax_cross_entropy: logits are 3x4 but 2 labels were given (one label per row)"
        );
        let err = d
            .softmax_cross_entropy(&a, &[0, 4, 1])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "softmax_cross_entropy: label 4 at row 1 is out of range for 4 classes"
        );
        let sq = d.upload(4, 4, &[0.0; 16]).unwrap();
        let mut out = d.zeros(3, 3).unwrap();
        let err = d.matmul_into(&a, &sq, &mut out).unwrap_err().to_string();
        assert_eq!(
            err,
            "matmul: output is 3x3 but the product of 3x4 and 4x4 is 3x4"
        );
    }

    #[test]
    fn upload_checks_length_and_emptiness() {
        let d = Device::cpu();
        let err = d.upload(2, 3, &[1.0; 5]).unwrap_err().to_string();
        assert_eq!(err, "upload: shape 2x3 needs 6 values but 5 were given");
        let err = d.zeros(0, 3).unwrap_err().to_string();
        assert_eq!(
            err,
            "zeros: shape 0x3 is empty; both dimensions must be at least 1"
        );
    }
}
