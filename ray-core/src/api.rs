//! The public functions: `init`, `shutdown`, `get`, `put`, `wait`, `kill`, `get_gpu_ids`.

use crate::actor::{ActorHandle, RemoteActor};
use crate::codec::{self, Value};
use crate::config::Config;
use crate::context;
use crate::error::{Error, Result};
use crate::ids::ObjectId;
use crate::object_ref::ObjectRef;
use crate::object_store;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Starts ray in this process: the node manager, its socket, and a pool of worker processes.
/// Call it first thing in `main`; anything before it also runs... nowhere else: workers start
/// from the same executable but never enter `main`.
///
/// Only one runtime is active per process. Calling `init` on another thread while one is active
/// waits until it is shut down (tests of one test binary take turns); calling it twice on the
/// same thread is [`Error::AlreadyInitialized`]. A runtime started on a thread other than
/// `main` is shut down when that thread ends.
///
/// ```no_run
/// ray_core::init(ray_core::Config::default().num_cpus(4))?;
/// # Ok::<(), ray_core::Error>(())
/// ```
pub fn init(config: Config) -> Result<()> {
    crate::driver::init(config)
}

/// Stops the runtime: workers are told to exit (and killed if they do not within a second),
/// objects are freed. Later calls need a new [`init`]. Does nothing if ray is not running.
pub fn shutdown() {
    crate::driver::shutdown()
}

/// Whether ray is running in this process (driver or worker).
pub fn is_initialized() -> bool {
    context::try_client().is_some()
}

pub(crate) fn decode_values<T: DeserializeOwned>(
    ids: &[ObjectId],
    values: Vec<Value>,
) -> Result<Vec<T>> {
    let out: Result<Vec<T>> = values.iter().map(|v| v.decode::<T>()).collect();
    if let Some(c) = context::try_client() {
        c.transfer_done(ids, &values);
    }
    out
}

fn ids_of<T>(refs: &[ObjectRef<T>]) -> Result<Vec<ObjectId>> {
    refs.iter()
        .map(|r| {
            if r.id().is_null() {
                Err(Error::NotInitialized {
                    detail: String::new(),
                })
            } else {
                Ok(r.id())
            }
        })
        .collect()
}

/// Waits for an object's value. A failed task's error comes back as `Err`.
///
/// ```no_run
/// # fn demo(r: ray_core::ObjectRef<i64>) -> ray_core::Result<()> {
/// let v: i64 = ray_core::get(&r)?;
/// # Ok(()) }
/// ```
pub fn get<T: DeserializeOwned>(r: &ObjectRef<T>) -> Result<T> {
    get_inner(std::slice::from_ref(r), None).map(|mut v| v.pop().expect("one value"))
}

/// Like [`get`], but gives up with [`Error::Timeout`] after `timeout`.
pub fn get_with_timeout<T: DeserializeOwned>(r: &ObjectRef<T>, timeout: Duration) -> Result<T> {
    get_inner(std::slice::from_ref(r), Some(timeout)).map(|mut v| v.pop().expect("one value"))
}

/// Waits for every object; values in the order of `refs`. The first failure is returned as
/// soon as it is known.
pub fn get_all<T: DeserializeOwned>(refs: &[ObjectRef<T>]) -> Result<Vec<T>> {
    get_inner(refs, None)
}

fn get_inner<T: DeserializeOwned>(
    refs: &[ObjectRef<T>],
    timeout: Option<Duration>,
) -> Result<Vec<T>> {
    if refs.is_empty() {
        return Ok(Vec::new());
    }
    let ids = ids_of(refs)?;
    let client = context::client()?;
    let values = client.get(&ids, timeout)?;
    decode_values(&ids, values)
}

/// Stores a value in the object store and returns a reference to it, to pass to many tasks
/// without copying it into each call.
pub fn put<T: Serialize>(value: T) -> Result<ObjectRef<T>> {
    let client = context::client()?;
    let encoded = codec::encode(&value)?;
    let stored = object_store::place(&*client, encoded.value)?;
    let id = ObjectId::new();
    client.put(id, Ok(stored));
    drop(encoded.pins);
    drop(value);
    Ok(ObjectRef::adopt(id))
}

/// Waits until `num_returns` of `refs` are ready (done or failed) or `timeout` passes, and
/// returns `(ready, pending)`: `ready` holds at most `num_returns` refs, in the order of
/// `refs`. With `timeout = None` it waits as long as needed.
///
/// # Panics
///
/// If `num_returns > refs.len()` or a ref appears twice (as Ray raises `ValueError`).
pub fn wait<T>(
    refs: &[ObjectRef<T>],
    num_returns: usize,
    timeout: Option<Duration>,
) -> (Vec<ObjectRef<T>>, Vec<ObjectRef<T>>) {
    assert!(
        num_returns <= refs.len(),
        "ray::wait: num_returns ({num_returns}) is larger than the number of refs ({})",
        refs.len()
    );
    let mut seen = std::collections::HashSet::with_capacity(refs.len());
    for r in refs {
        assert!(
            seen.insert(r.id()),
            "ray::wait: {r:?} is given twice; pass each ObjectRef once (as Ray does)"
        );
    }
    let flags = match (ids_of(refs), context::client()) {
        (Ok(ids), Ok(client)) if num_returns > 0 => client.wait(&ids, num_returns, timeout),
        _ => vec![false; refs.len()],
    };
    let mut ready = Vec::new();
    let mut pending = Vec::new();
    for (r, f) in refs.iter().zip(flags) {
        if f && ready.len() < num_returns {
            ready.push(r.clone());
        } else {
            pending.push(r.clone());
        }
    }
    (ready, pending)
}

/// Ends an actor at once: its process is killed, pending and later calls fail with
/// [`Error::ActorDied`].
pub fn kill<A: RemoteActor>(handle: &ActorHandle<A>) {
    if let Ok(c) = context::client() {
        c.kill_actor(handle.actor_id());
    }
}

/// The logical GPU ids given to the current task or actor (empty in the driver and in tasks
/// that asked for no GPU). The worker process also has them in `CUDA_VISIBLE_DEVICES` and in
/// `RAY_RS_GPU_IDS`.
pub fn get_gpu_ids() -> Vec<usize> {
    context::try_client()
        .map(|c| c.gpu_ids())
        .unwrap_or_default()
}
