//! GPU kernels for ray for Rust: the compute half of a GPU task or actor.
//!
//! A worker process that the runtime gave a GPU opens it with [`Device::from_ray_env`] (the
//! runtime sets [`GPU_IDS_ENV`]); tests and tools can open [`Device::for_gpu`] or ask for
//! [`Device::cpu`]. Kernels are WGSL compute shaders run through wgpu (Vulkan first), so a
//! software Vulkan driver such as lavapipe runs them on machines without a GPU; every kernel also
//! has a CPU implementation ([`cpu`]) that the CPU device runs and the tests compare against.
//!
//! * [`Device`], [`adapter_count`], [`adapters`]: device selection, with a CPU fallback that
//!   logs one warning when it has to fall back.
//! * [`Tensor`] and the shape-checked operations on [`Device`]: tiled matmul (`A·B` and `Aᵀ·B`),
//!   bias add, softmax, fused softmax / cross entropy / gradient, bias gradient, SGD update.
//! * [`SoftmaxRegression`]: the 784 -> 10 softmax-regression model trained with one queue
//!   submission per step.
//! * [`mnist`]: the IDX loader and a `next_batch` iterator.
//!
//! ```no_run
//! use ray::gpu::{Device, SoftmaxRegression, mnist}; // the `ray` crate's `gpu` feature
//!
//! let device = Device::from_ray_env(); // RAY_RS_GPU_IDS, or the CPU with one warning
//! let data = mnist::Mnist::load(mnist::default_dir())?;
//! let mut model = SoftmaxRegression::new(&device, mnist::PIXELS, mnist::CLASSES, 0.5)?;
//! let mut batches = data.train.batches(None);
//! for _ in 0..1000 {
//!     let b = batches.next_batch(100);
//!     model.train_step(&b.images, &b.labels)?; // one queue submission, no read-back
//! }
//! println!("{}", model.accuracy(data.test.images(), data.test.labels())?);
//!
//! // The kernels are also available one by one, shape-checked.
//! let a = device.upload(2, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])?;
//! let b = device.upload(3, 1, &[1.0, 0.0, -1.0])?;
//! assert_eq!(device.matmul(&a, &b)?.read()?, vec![-2.0, -2.0]);
//! assert!(device.matmul(&b, &b).is_err()); // 3x1 · 3x1: inner dimensions 1 and 3
//! # Ok::<(), ray::gpu::Error>(())
//! ```

#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod cpu;
mod device;
mod error;
mod kernels;
pub mod mnist;
mod model;
mod ops;
mod tensor;

pub use device::{
    AdapterKind, AdapterSummary, Device, GPU_IDS_ENV, adapter_count, adapters, parse_gpu_ids,
};
pub use error::{Error, Result};
pub use model::{Evaluation, SoftmaxRegression};
pub use ops::SoftmaxCrossEntropy;
pub use tensor::Tensor;

#[cfg(test)]
mod tests {
    /// Devices, tensors and models are moved into task and actor threads by the runtime.
    #[test]
    fn handles_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<super::Device>();
        assert_send_sync::<super::Tensor>();
        assert_send_sync::<super::SoftmaxRegression>();
        assert_send_sync::<super::Error>();
    }
}
