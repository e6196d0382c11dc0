//! [`Tensor`]: a row-major `f32` matrix living on a [`crate::Device`].

use std::fmt;
use std::sync::Arc;

use crate::device::{Backing, GpuContext};
use crate::error::Result;

/// A `rows x cols` row-major `f32` matrix. On a GPU device it is a wgpu storage buffer, on the
/// CPU device a `Vec<f32>`. Create one with [`crate::Device::upload`] or
/// [`crate::Device::zeros`]; read it back with [`Tensor::read`].
pub struct Tensor {
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) storage: Storage,
}

pub(crate) enum Storage {
    Cpu(Vec<f32>),
    Gpu {
        ctx: Arc<GpuContext>,
        buffer: wgpu::Buffer,
    },
}

impl Tensor {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// `(rows, cols)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// `rows * cols`.
    pub fn len(&self) -> usize {
        self.rows * self.cols
    }

    /// Always false: tensors have at least one row and one column.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when the tensor lives in GPU memory.
    pub fn is_gpu(&self) -> bool {
        matches!(self.storage, Storage::Gpu { .. })
    }

    /// Where the tensor lives, as [`crate::Device::describe`] says it.
    pub fn location(&self) -> String {
        match &self.storage {
            Storage::Cpu(_) => "cpu".to_string(),
            Storage::Gpu { ctx, .. } => ctx.describe(),
        }
    }

    /// Copies the values back to the host (row-major). On a GPU this waits for every operation
    /// submitted before and reports any GPU error that happened meanwhile.
    pub fn read(&self) -> Result<Vec<f32>> {
        match &self.storage {
            Storage::Cpu(v) => Ok(v.clone()),
            Storage::Gpu { ctx, buffer } => ctx.read_f32("Tensor::read", buffer, self.len()),
        }
    }

    pub(crate) fn backing(&self) -> Backing {
        match &self.storage {
            Storage::Cpu(_) => Backing::Cpu,
            Storage::Gpu { ctx, .. } => Backing::Gpu(Arc::clone(ctx)),
        }
    }

    pub(crate) fn shape_str(&self) -> String {
        format!("{}x{}", self.rows, self.cols)
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Tensor({}x{} on {})",
            self.rows,
            self.cols,
            self.location()
        )
    }
}
