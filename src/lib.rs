//! ray for Rust: Ray's programming model — tasks, actors, `ObjectRef`s and resource-aware
//! scheduling — as a Rust library driven by one attribute macro.
//!
//! (The crate-level guide is written out in full by the macros-and-docs issue.)

pub use ray_core::*;
pub use ray_macros::remote;

#[doc(hidden)]
pub use ray_core::__private;
