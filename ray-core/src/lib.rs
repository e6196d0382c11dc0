//! Runtime of ray for Rust: node manager (scheduler, worker pool, object directory), worker
//! processes, transport, `ObjectRef`s and actor handles. Users depend on the `ray` facade
//! crate, which re-exports this and adds the `#[ray::remote]` macro.

#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod actor;
mod api;
mod bundles;
mod cancel;
mod client;
#[cfg(feature = "cluster")]
mod cluster_client;
mod codec;
mod config;
mod context;
mod current;
#[cfg(feature = "dashboard")]
mod dashboard;
mod driver;
mod error;
mod generator;
mod gpu_detect;
mod ids;
mod introspect;
mod log;
mod named;
mod node_api;
mod node_manager;
mod object_ref;
mod object_store;
mod options;
mod pending_connections;
mod placement;
mod pod;
mod protocol;
mod refcount;
mod registry;
mod resources;
mod setup_hook;
mod slot;
pub mod state;
mod submit;
mod sys;
mod transport;
mod wakeup;
mod worker;
mod worker_logs;

pub use actor::{ActorClass, ActorHandle, RemoteActor};
pub use api::{
    Readable, Storable, get, get_all, get_gpu_ids, get_with_timeout, init, is_initialized, kill,
    put, shutdown, wait,
};
pub use cancel::{CancelOptions, cancel, cancel_with, is_cancelled};
pub use config::Config;
pub use error::{Error, Result};
pub use generator::ObjectRefGenerator;
pub use ids::{ActorId, JobId, NodeId, ObjectId, PlacementGroupId, TaskId};
pub use introspect::{
    NodeInfo, RuntimeContext, available_resources, cluster_resources, nodes, runtime_context,
};
pub use named::{get_actor, get_actor_in, kill_and_restart, list_named_actors};
pub use node_manager::spawn::ENV_GPU_IDS;
pub use object_ref::{AnyObjectRef, GetFuture, IntoArg, ObjectRef, Waitable};
pub use options::{
    ActorOptions, DEFAULT_STREAM_BACKPRESSURE, Lifetime, RemoteFunction, ResourceAmount,
    TaskOptions,
};
pub use placement::{
    Bundle, PlacementGroup, PlacementStrategy, placement_group, remove_placement_group,
};
pub use pod::{PodView, get_slice, put_slice};
pub use state::{dashboard_url, timeline};

/// Helpers for the code `#[ray::remote]` generates. Not a public API.
#[doc(hidden)]
#[path = "private/mod.rs"]
pub mod __private;

/// The node manager for the `ray-rs` daemon. Not a public API.
#[doc(hidden)]
pub mod __node {
    #[cfg(feature = "dashboard")]
    pub use crate::dashboard::{Mode as DashboardMode, Source as DashboardSource, bind, serve_on};
    pub use crate::node_api::*;
    pub use crate::pending_connections::PendingConnections;
    pub use crate::worker_logs::{
        KEEP_EXITED, LogQuery, LogReply, MAX_CHUNK_BYTES, MAX_FILE_BYTES, StreamChunk,
    };
}
