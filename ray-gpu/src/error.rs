//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong in `ray-gpu`: shape checks, data validation, GPU failures and
/// MNIST file problems. Messages name what was expected and what was found.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Two operands of an operation do not fit together. `detail` names both shapes, e.g.
    /// "left is 3x4 but right is 5x2 (inner dimensions 4 and 5 must match)".
    #[error("{op}: {detail}")]
    ShapeMismatch {
        /// The operation that refused its operands (`matmul`, `add_bias`, ...).
        op: &'static str,
        /// Both shapes and the rule they break.
        detail: String,
    },

    /// A host slice does not have the number of elements the stated shape needs.
    #[error("{op}: shape {rows}x{cols} needs {expected} values but {found} were given")]
    DataLength {
        /// The operation (`upload`, `train_step`, ...).
        op: &'static str,
        /// Rows of the stated shape.
        rows: usize,
        /// Columns of the stated shape.
        cols: usize,
        /// `rows * cols`.
        expected: usize,
        /// Length of the slice that was given.
        found: usize,
    },

    /// A tensor with a zero dimension was requested; GPU buffers cannot be empty.
    #[error("{op}: shape {rows}x{cols} is empty; both dimensions must be at least 1")]
    EmptyShape {
        /// The operation.
        op: &'static str,
        /// Requested rows.
        rows: usize,
        /// Requested columns.
        cols: usize,
    },

    /// A class label is not below the number of classes.
    #[error("{op}: label {label} at row {row} is out of range for {classes} classes")]
    LabelOutOfRange {
        /// The operation.
        op: &'static str,
        /// Row index of the bad label.
        row: usize,
        /// The label found.
        label: u8,
        /// Number of classes (valid labels are `0..classes`).
        classes: usize,
    },

    /// A tensor was used with a device it does not live on (a GPU tensor on the CPU device, or
    /// a tensor from another GPU).
    #[error("{op}: tensor lives on {tensor} but the operation runs on {device}")]
    DeviceMismatch {
        /// The operation.
        op: &'static str,
        /// Where the tensor lives.
        tensor: String,
        /// The device the operation was called on.
        device: String,
    },

    /// The request exceeds a limit of the device or of this implementation.
    #[error("{op}: {detail}")]
    Unsupported {
        /// The operation.
        op: &'static str,
        /// The limit and the requested value.
        detail: String,
    },

    /// wgpu reported an error (validation, out of memory, device lost, failed buffer mapping).
    #[error("GPU error on {device}: {detail}")]
    Gpu {
        /// `Device::describe()` of the device.
        device: String,
        /// wgpu's message.
        detail: String,
    },

    /// A file could not be opened or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// An MNIST IDX file is malformed: wrong magic number, wrong image size, truncated, or
    /// images and labels disagree on the count.
    #[error("{}: {detail}", path.display())]
    Idx {
        /// The offending file.
        path: PathBuf,
        /// What was expected and what was found.
        detail: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
