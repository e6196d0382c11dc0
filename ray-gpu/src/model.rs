//! Softmax regression (multinomial logistic regression), the model of TensorFlow's MNIST
//! tutorial: `logits = x·W + b`, loss = mean cross entropy of `softmax(logits)`, plain SGD.
//!
//! On a GPU the class dimension is padded to a multiple of four (zero columns that never
//! change) so the kernels use vec4 loads, and one training step is three kernels recorded into
//! one command encoder and submitted once: `dense_logits` (x·W + b), `dense_loss` (softmax, per-row loss and correctness, and
//! `dlogits` in one pass over each row) and `dense_backward` (the fused weight gradient, bias
//! gradient reduction and SGD update: `W -= lr·Xᵀ·dlogits`, `b -= lr·Σ dlogits`). Nothing is
//! read back per step. On the CPU device the same step runs the `cpu` loops.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::cpu;
use crate::device::{Backing, Device, GpuContext};
use crate::error::{Error, Result};
use crate::kernels::{Dispatch, ELEMENTWISE_WG, Params};
use crate::ops::check_labels;

/// At most this many training steps are queued on the GPU before `train_step` waits for the
/// oldest, so the host cannot run arbitrarily far ahead (and staging memory stays bounded).
const MAX_STEPS_IN_FLIGHT: usize = 8;

/// Invocations per workgroup of `dense_loss` (one per row).
const LOSS_WG: u32 = 64;

/// Loss and accuracy of a model on a labelled set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// Mean cross-entropy loss.
    pub loss: f32,
    /// Fraction of rows whose highest logit is the label (first maximum on ties).
    pub accuracy: f32,
}

/// Softmax regression `inputs -> classes` with zero-initialised weights and bias, trained by SGD.
pub struct SoftmaxRegression {
    device: Device,
    inputs: usize,
    classes: usize,
    lr: f32,
    state: State,
}

enum State {
    Cpu { w: Vec<f32>, b: Vec<f32> },
    Gpu(Box<GpuModel>),
}

struct GpuModel {
    ctx: Arc<GpuContext>,
    /// `classes` rounded up to a multiple of four: the row width of W, b, logits and dlogits.
    width: usize,
    w: wgpu::Buffer,
    b: wgpu::Buffer,
    train: Option<BatchBuffers>,
    in_flight: VecDeque<wgpu::SubmissionIndex>,
}

/// Per-batch buffers and the bind groups of the three kernels over them.
struct BatchBuffers {
    capacity: usize,
    rows: usize,
    x: wgpu::Buffer,
    labels: wgpu::Buffer,
    row_out: wgpu::Buffer,
    params: wgpu::Buffer,
    logits_bg: wgpu::BindGroup,
    loss_bg: wgpu::BindGroup,
    backward_bg: wgpu::BindGroup,
}

impl GpuModel {
    fn batch_buffers(
        &self,
        rows: usize,
        inputs: usize,
        classes: usize,
        lr: f32,
    ) -> Result<BatchBuffers> {
        const OP: &str = "SoftmaxRegression";
        let ctx = &self.ctx;
        let x = ctx.storage("model x", ctx.buffer_bytes(OP, rows, inputs)?);
        let labels = ctx.storage("model labels", ctx.buffer_bytes(OP, rows, 1)?);
        let logits = ctx.storage("model logits", ctx.buffer_bytes(OP, rows, self.width)?);
        let dlogits = ctx.storage("model dlogits", ctx.buffer_bytes(OP, rows, self.width)?);
        let row_out = ctx.storage("model row_out", ctx.buffer_bytes(OP, rows, 2)?);
        let params = ctx.uniform(
            "model params",
            model_params(rows, inputs, classes, self.width, lr),
        );
        let k = &ctx.kernels;
        let logits_bg = ctx.bind(
            "dense_logits",
            &k.dense_logits,
            &[&x, &self.w, &self.b, &logits, &params],
        );
        let loss_bg = ctx.bind(
            "dense_loss",
            &k.dense_loss,
            &[&logits, &labels, &dlogits, &row_out, &params],
        );
        let backward_bg = ctx.bind(
            "dense_backward",
            &k.dense_backward,
            &[&x, &dlogits, &self.w, &self.b, &params],
        );
        ctx.check(OP)?;
        Ok(BatchBuffers {
            capacity: rows,
            rows,
            x,
            labels,
            row_out,
            params,
            logits_bg,
            loss_bg,
            backward_bg,
        })
    }

    /// Writes a batch into `buf` (x, labels, and the row count if it changed).
    fn write_batch(
        &self,
        buf: &mut BatchBuffers,
        x: &[f32],
        labels: &[u8],
        inputs: usize,
        classes: usize,
        lr: f32,
    ) {
        let rows = labels.len();
        let q = &self.ctx.queue;
        q.write_buffer(&buf.x, 0, bytemuck::cast_slice(x));
        let labels32: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
        q.write_buffer(&buf.labels, 0, bytemuck::cast_slice(&labels32));
        if buf.rows != rows {
            let params = model_params(rows, inputs, classes, self.width, lr);
            q.write_buffer(&buf.params, 0, bytemuck::bytes_of(&params));
            buf.rows = rows;
        }
    }

    /// The step's kernels: logits and loss, plus the backward/update pass when training.
    fn dispatches<'a>(
        &'a self,
        buf: &BatchBuffers,
        inputs: usize,
        backward: bool,
    ) -> Vec<Dispatch<'a>> {
        let k = &self.ctx.kernels;
        let quads = self.width / 4;
        let mut d = vec![
            Dispatch {
                pipeline: &k.dense_logits,
                bind_group: buf.logits_bg.clone(),
                groups: [self.ctx.groups_for(buf.rows * quads, ELEMENTWISE_WG), 1, 1],
            },
            Dispatch {
                pipeline: &k.dense_loss,
                bind_group: buf.loss_bg.clone(),
                groups: [self.ctx.groups_for(buf.rows, LOSS_WG), 1, 1],
            },
        ];
        if backward {
            d.push(Dispatch {
                pipeline: &k.dense_backward,
                bind_group: buf.backward_bg.clone(),
                groups: [
                    self.ctx.groups_for((inputs + 1) * quads, ELEMENTWISE_WG),
                    1,
                    1,
                ],
            });
        }
        d
    }
}

fn model_params(rows: usize, inputs: usize, classes: usize, width: usize, lr: f32) -> Params {
    Params::new(rows as u32, inputs as u32, width as u32, classes as u32)
        .with_scale(1.0 / rows as f32)
        .with_lr(lr)
}

impl SoftmaxRegression {
    /// A model `inputs -> classes` on `device`, weights and bias zero, learning rate `lr`.
    pub fn new(device: &Device, inputs: usize, classes: usize, lr: f32) -> Result<Self> {
        const OP: &str = "SoftmaxRegression::new";
        if inputs == 0 || classes == 0 {
            return Err(Error::EmptyShape {
                op: OP,
                rows: inputs,
                cols: classes,
            });
        }
        if classes > u8::MAX as usize + 1 {
            return Err(Error::Unsupported {
                op: OP,
                detail: format!("{classes} classes, but labels are u8 (at most 256 classes)"),
            });
        }
        let state = match &device.backing {
            Backing::Cpu => State::Cpu {
                w: vec![0.0; inputs * classes],
                b: vec![0.0; classes],
            },
            Backing::Gpu(ctx) => {
                let width = classes.div_ceil(4) * 4;
                let w = ctx.storage("model W", ctx.buffer_bytes(OP, inputs, width)?);
                let b = ctx.storage("model b", ctx.buffer_bytes(OP, 1, width)?);
                // Fresh wgpu buffers read as zero: the zero initialisation of the model.
                ctx.check(OP)?;
                State::Gpu(Box::new(GpuModel {
                    ctx: Arc::clone(ctx),
                    width,
                    w,
                    b,
                    train: None,
                    in_flight: VecDeque::new(),
                }))
            }
        };
        Ok(Self {
            device: device.clone(),
            inputs,
            classes,
            lr,
            state,
        })
    }

    /// The device the model lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Input width.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// SGD learning rate.
    pub fn learning_rate(&self) -> f32 {
        self.lr
    }

    fn check_batch(&self, op: &'static str, x: &[f32], labels: &[u8]) -> Result<()> {
        let rows = labels.len();
        if rows == 0 {
            return Err(Error::EmptyShape {
                op,
                rows,
                cols: self.inputs,
            });
        }
        if x.len() != rows * self.inputs {
            return Err(Error::DataLength {
                op,
                rows,
                cols: self.inputs,
                expected: rows * self.inputs,
                found: x.len(),
            });
        }
        check_labels(op, labels, self.classes)
    }

    /// One SGD step on the batch `x` (batch x inputs, row-major) with `labels` (one per row).
    /// On a GPU this is a single queue submission and does not wait for the GPU.
    pub fn train_step(&mut self, x: &[f32], labels: &[u8]) -> Result<()> {
        const OP: &str = "train_step";
        self.check_batch(OP, x, labels)?;
        let (inputs, classes, lr) = (self.inputs, self.classes, self.lr);
        match &mut self.state {
            State::Cpu { w, b } => {
                let rows = labels.len();
                let mut logits = cpu::matmul(x, w, rows, inputs, classes);
                cpu::add_bias_inplace(&mut logits, b);
                let out = cpu::softmax_xent(&logits, labels, classes);
                let gw = cpu::matmul_tn(x, &out.dlogits, rows, inputs, classes);
                let gb = cpu::bias_grad(&out.dlogits, classes);
                cpu::sgd(w, &gw, lr);
                cpu::sgd(b, &gb, lr);
                Ok(())
            }
            State::Gpu(model) => {
                let rows = labels.len();
                let mut buf = match model.train.take() {
                    Some(buf) if buf.capacity >= rows => buf,
                    _ => model.batch_buffers(rows, inputs, classes, lr)?,
                };
                model.write_batch(&mut buf, x, labels, inputs, classes, lr);
                let index = model.ctx.submit(&model.dispatches(&buf, inputs, true));
                model.train = Some(buf);
                model.in_flight.push_back(index);
                if model.in_flight.len() > MAX_STEPS_IN_FLIGHT
                    && let Some(oldest) = model.in_flight.pop_front()
                {
                    model.ctx.wait_for(OP, oldest)?;
                } else {
                    // Non-blocking: lets wgpu recycle finished staging memory.
                    model
                        .ctx
                        .device
                        .poll(wgpu::PollType::Poll)
                        .map_err(|err| model.ctx.gpu_error(OP, &err.to_string()))?;
                }
                model.ctx.check(OP)
            }
        }
    }

    /// Mean cross-entropy loss and accuracy on `x` / `labels` (any number of rows).
    pub fn evaluate(&self, x: &[f32], labels: &[u8]) -> Result<Evaluation> {
        const OP: &str = "evaluate";
        self.check_batch(OP, x, labels)?;
        let rows = labels.len();
        let (loss_sum, correct) = match &self.state {
            State::Cpu { w, b } => {
                let mut logits = cpu::matmul(x, w, rows, self.inputs, self.classes);
                cpu::add_bias_inplace(&mut logits, b);
                let out = cpu::softmax_xent(&logits, labels, self.classes);
                let loss: f64 = out.row_loss.iter().map(|&l| l as f64).sum();
                let correct: f64 = out.correct.iter().map(|&c| c as f64).sum();
                (loss, correct)
            }
            State::Gpu(model) => {
                let mut buf = model.batch_buffers(rows, self.inputs, self.classes, self.lr)?;
                model.write_batch(&mut buf, x, labels, self.inputs, self.classes, self.lr);
                model
                    .ctx
                    .submit(&model.dispatches(&buf, self.inputs, false));
                let out = model.ctx.read_f32(OP, &buf.row_out, rows * 2)?;
                let loss: f64 = out.iter().step_by(2).map(|&l| l as f64).sum();
                let correct: f64 = out.iter().skip(1).step_by(2).map(|&c| c as f64).sum();
                (loss, correct)
            }
        };
        Ok(Evaluation {
            loss: (loss_sum / rows as f64) as f32,
            accuracy: (correct / rows as f64) as f32,
        })
    }

    /// Mean cross-entropy loss on `x` / `labels`.
    pub fn loss(&self, x: &[f32], labels: &[u8]) -> Result<f32> {
        Ok(self.evaluate(x, labels)?.loss)
    }

    /// Fraction of rows of `x` classified as their label.
    pub fn accuracy(&self, x: &[f32], labels: &[u8]) -> Result<f32> {
        Ok(self.evaluate(x, labels)?.accuracy)
    }

    /// Reads back `(W, b)`: W is inputs x classes row-major, b has `classes` values. On a GPU
    /// this waits for every queued training step.
    pub fn weights(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        match &self.state {
            State::Cpu { w, b } => Ok((w.clone(), b.clone())),
            State::Gpu(model) => {
                let padded = model
                    .ctx
                    .read_f32("weights", &model.w, self.inputs * model.width)?;
                let w = padded
                    .chunks_exact(model.width)
                    .flat_map(|row| &row[..self.classes])
                    .copied()
                    .collect();
                let mut b = model.ctx.read_f32("weights", &model.b, model.width)?;
                b.truncate(self.classes);
                Ok((w, b))
            }
        }
    }
}
