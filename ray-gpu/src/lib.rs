//! GPU kernels (filled by the ray-gpu issue).
