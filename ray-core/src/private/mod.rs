//! Helpers for the code `#[ray::remote]` generates, and for the project's own tests. Not a
//! public API.

pub use crate::actor::{ActorInstance, RawActorHandle};
pub use crate::codec::Encoded;
pub use crate::options::{RawActorOptions, RawTaskOptions};
pub use crate::registry::{ACTORS, ActorEntry, Args, AsyncCall, LocalFuture, TASKS, TaskEntry};
pub use crate::setup_hook::{WORKER_SETUP, WorkerSetup};
pub use crate::submit::{
    ArgsBuilder, adopt_ref, create_actor, encode_return, submit_task, submit_task_returns,
    submit_task_stream,
};
pub use crate::worker::stream;
pub use linkme;

use crate::error::{Error, Result};

/// The error for a method name an actor does not have.
pub fn unknown_method(actor: &str, method: &str) -> Error {
    Error::InvalidArgument {
        what: "actor method".into(),
        message: format!("`{actor}` has no remote method `{method}`"),
    }
}

/// The actor instance as its concrete type.
pub fn downcast_mut<T: 'static>(this: &mut dyn std::any::Any) -> Result<&mut T> {
    this.downcast_mut::<T>()
        .ok_or_else(|| Error::InvalidArgument {
            what: "actor instance".into(),
            message: format!("the actor is not a `{}`", std::any::type_name::<T>()),
        })
}

/// The values of a call with `num_returns > 1`, in order, as one result.
pub fn returns(values: Vec<Encoded>) -> Result<Encoded> {
    let mut it = values.into_iter();
    let mut first = it.next().ok_or_else(|| Error::InvalidArgument {
        what: "return values".into(),
        message: "a call returned no values".into(),
    })?;
    first.rest = it.collect();
    Ok(first)
}

/// An async actor's method call as a boxed future (what `call_async` returns).
pub fn boxed_future(
    f: impl std::future::Future<Output = Result<Encoded>> + 'static,
) -> Result<LocalFuture> {
    Ok(Box::pin(f))
}

/// The actor instance as its concrete type, borrowed for the life of the worker (async
/// actors' futures hold it).
pub fn downcast_static<T: 'static>(this: &'static dyn std::any::Any) -> Result<&'static T> {
    this.downcast_ref::<T>()
        .ok_or_else(|| Error::InvalidArgument {
            what: "actor instance".into(),
            message: format!("the actor is not a `{}`", std::any::type_name::<T>()),
        })
}

/// The actor instance as its concrete type.
pub fn downcast_ref<T: 'static>(this: &dyn std::any::Any) -> Result<&T> {
    this.downcast_ref::<T>()
        .ok_or_else(|| Error::InvalidArgument {
            what: "actor instance".into(),
            message: format!("the actor is not a `{}`", std::any::type_name::<T>()),
        })
}

/// Statistics of the running driver: (live objects, bytes of their values).
pub fn object_stats() -> Option<(usize, u64)> {
    crate::driver::current().and_then(|d| d.node.as_ref().map(|n| n.lock().object_stats()))
}

/// Object store statistics of the running driver: (bytes in use, capacity, objects
/// spilled so far, objects restored so far, spill directory).
pub fn store_stats() -> Option<(u64, u64, u64, u64, std::path::PathBuf)> {
    crate::driver::current()
        .and_then(|d| d.node.clone())
        .map(|n| {
            let st = n.lock();
            let (spilled, restored) = st.spill_stats();
            (
                st.store.used(),
                st.store.capacity(),
                spilled,
                restored,
                st.store.spill_dir().to_path_buf(),
            )
        })
}

/// Process ids of the current workers (driver only).
pub fn worker_pids() -> Vec<u32> {
    crate::driver::current()
        .and_then(|d| d.node.as_ref().map(|n| n.worker_pids()))
        .unwrap_or_default()
}

/// Turns a constructed actor into its running instance. Bounded by `RemoteActor` (not
/// `ActorClass`) so that a missing struct attribute is reported once, at the impl.
pub fn into_instance<A: crate::RemoteActor>(actor: A) -> ActorInstance {
    crate::ActorClass::__into_instance(actor)
}

/// The running instance of an actor with `max_concurrency > 1`: its `&self` methods run
/// on several threads at once, hence `Send + Sync`.
pub fn threaded_instance<A: Send + Sync + 'static>(
    actor: A,
    max_concurrency: u32,
) -> ActorInstance {
    ActorInstance::threaded(actor, max_concurrency)
}

pub mod python;
pub mod wire;
pub use wire::Wire;

#[cfg(feature = "testing")]
pub mod testing;
