//! Runtime of ray for Rust: node manager (scheduler, worker pool, object directory), worker
//! processes, transport, `ObjectRef`s and actor handles. Users depend on the `ray` facade
//! crate, which re-exports this and adds the `#[ray::remote]` macro.

mod actor;
mod api;
mod codec;
mod config;
mod context;
mod driver;
mod error;
mod head;
mod ids;
mod object_ref;
mod object_store;
mod options;
mod pod;
mod protocol;
mod refcount;
mod registry;
mod resources;
mod slot;
mod submit;
mod transport;
mod worker;

pub use actor::{ActorClass, ActorHandle, RemoteActor};
pub use api::{get, get_all, get_gpu_ids, get_with_timeout, init, is_initialized, kill, put, shutdown, wait};
pub use config::Config;
pub use error::{Error, Result};
pub use head::spawn::ENV_GPU_IDS;
pub use ids::{ActorId, ObjectId};
pub use object_ref::{GetFuture, IntoArg, ObjectRef};
pub use options::{ActorOptions, RemoteFunction, ResourceAmount, TaskOptions};
pub use pod::{PodView, get_slice, put_slice};

/// Helpers for the code `#[ray::remote]` generates. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::actor::{ActorInstance, RawActorHandle};
    pub use crate::codec::Encoded;
    pub use crate::options::{RawActorOptions, RawTaskOptions};
    pub use crate::registry::{ACTORS, ActorEntry, Args, TASKS, TaskEntry};
    pub use crate::submit::{ArgsBuilder, create_actor, encode_return, submit_task};
    pub use linkme;

    use crate::error::{Error, Result};

    /// Checks at compile time that `T` can travel between processes.
    pub fn assert_transferable<T: serde::Serialize + serde::de::DeserializeOwned>() {}

    /// The error for a method name an actor does not have.
    pub fn unknown_method(actor: &str, method: &str) -> Error {
        Error::InvalidArgument { what: "actor method".into(), message: format!("`{actor}` has no remote method `{method}`") }
    }

    /// The actor instance as its concrete type.
    pub fn downcast_mut<T: 'static>(this: &mut dyn std::any::Any) -> Result<&mut T> {
        this.downcast_mut::<T>().ok_or_else(|| Error::InvalidArgument {
            what: "actor instance".into(),
            message: format!("the actor is not a `{}`", std::any::type_name::<T>()),
        })
    }

    /// The actor instance as its concrete type.
    pub fn downcast_ref<T: 'static>(this: &dyn std::any::Any) -> Result<&T> {
        this.downcast_ref::<T>().ok_or_else(|| Error::InvalidArgument {
            what: "actor instance".into(),
            message: format!("the actor is not a `{}`", std::any::type_name::<T>()),
        })
    }

    /// Statistics of the running driver: (live objects, bytes of their values).
    pub fn object_stats() -> Option<(usize, u64)> {
        crate::driver::current().map(|d| d.head.object_stats())
    }

    /// Object store statistics of the running driver: (bytes in use, capacity, objects
    /// spilled so far, objects restored so far, spill directory).
    pub fn store_stats() -> Option<(u64, u64, u64, u64, std::path::PathBuf)> {
        crate::driver::current().map(|d| {
            let st = d.head.lock();
            let (spilled, restored) = st.spill_stats();
            (st.store.used(), st.store.capacity(), spilled, restored, st.store.spill_dir().to_path_buf())
        })
    }

    /// Process ids of the current workers (driver only).
    pub fn worker_pids() -> Vec<u32> {
        crate::driver::current().map(|d| d.head.worker_pids()).unwrap_or_default()
    }
}
