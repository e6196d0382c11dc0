//! Runtime of ray for Rust: node manager (scheduler, worker pool, object directory), worker
//! processes, transport, `ObjectRef`s and actor handles. Users depend on the `ray` facade
//! crate, which re-exports this and adds the `#[ray::remote]` macro.

#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod actor;
mod api;
mod client;
#[cfg(feature = "cluster")]
mod cluster_client;
mod codec;
mod config;
mod context;
mod driver;
mod error;
mod gpu_detect;
mod ids;
mod log;
mod node_api;
mod node_manager;
mod object_ref;
mod object_store;
mod options;
mod pod;
mod protocol;
mod refcount;
mod registry;
mod resources;
mod setup_hook;
mod slot;
mod submit;
mod sys;
mod transport;
mod worker;

pub use actor::{ActorClass, ActorHandle, RemoteActor};
pub use api::{
    Readable, Storable, get, get_all, get_gpu_ids, get_with_timeout, init, is_initialized, kill,
    put, shutdown, wait,
};
pub use config::Config;
pub use error::{Error, Result};
pub use ids::{ActorId, JobId, NodeId, ObjectId};
pub use node_manager::spawn::ENV_GPU_IDS;
pub use object_ref::{AnyObjectRef, GetFuture, IntoArg, ObjectRef, Waitable};
pub use options::{ActorOptions, RemoteFunction, ResourceAmount, TaskOptions};
pub use pod::{PodView, get_slice, put_slice};

/// Helpers for the code `#[ray::remote]` generates. Not a public API.
#[doc(hidden)]
#[path = "private/mod.rs"]
pub mod __private;

/// The node manager for the `ray-rs` daemon. Not a public API.
#[doc(hidden)]
pub mod __node {
    pub use crate::node_api::*;
}
