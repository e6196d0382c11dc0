//! ray for Rust: Ray's programming model — tasks, actors, `ObjectRef`s and resource-aware
//! scheduling — as a Rust library driven by one attribute macro.
//!
//! (The crate-level guide is written out in full by the macros-and-docs issue.)

pub use ray_core::*;
pub use ray_macros::remote;

/// The GPU kernels (wgpu compute shaders) and MNIST loader, for GPU tasks and actors.
#[cfg(feature = "gpu")]
pub use ray_gpu as gpu;

/// Starts ray in this process; see [`ray_core::init`]. When `num_gpus` is not set, the node's
/// GPUs are its wgpu adapters (counted on one backend, Vulkan first), detected in the background
/// the first time a task or actor asks for a GPU.
pub fn init(config: Config) -> Result<()> {
    #[cfg(feature = "gpu")]
    let config = if config.gpus().is_none() { config.gpu_detector(ray_gpu::adapter_count) } else { config };
    ray_core::init(config)
}

#[doc(hidden)]
pub use ray_core::__private;
