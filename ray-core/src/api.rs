//! The public functions: `init`, `shutdown`, `get`, `put`, `wait`, `kill`, `get_gpu_ids`.

use crate::actor::{ActorHandle, RemoteActor};
use crate::codec::{self, Value};
use crate::config::Config;
use crate::context;
use crate::error::Result;
use crate::ids::ObjectId;
use crate::object_ref::{ObjectRef, Waitable};
use crate::object_store;
#[cfg(doc)]
use crate::{error::Error, object_ref::AnyObjectRef};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Starts ray in this process: the node manager, its socket and a pool of worker processes.
/// Call it first thing in `main`: workers start from the same executable but never enter
/// `main` (the crate documentation's "one rule"; `#[ray::worker_setup]` runs code in every
/// worker).
///
/// Only one runtime is active per process. Calling `init` on another thread while one is active
/// waits until it is shut down (tests of one test binary take turns); calling it twice on the
/// same thread is [`Error::AlreadyInitialized`]. A runtime started on a thread other than
/// `main` is shut down when that thread ends.
///
/// When [`Config::num_gpus`] is not set, the node's GPUs are counted the first time a task or
/// actor asks for one (programs that use none never pay for it): with the `gpu` feature, as the
/// machine's wgpu adapters on one backend (Vulkan first); without it, from the kernel's device
/// nodes (NVIDIA GPUs in `/proc/driver/nvidia/gpus`, other GPUs by their DRM render node).
///
/// ```
/// fn main() -> ray::Result<()> {
///     ray::init(ray::Config::default().num_cpus(4))?;
///     // ...
///     ray::shutdown();
///     Ok(())
/// }
/// ```
pub fn init(config: Config) -> Result<()> {
    let config = if config.num_gpus.is_none() && config.gpu_detector.is_none() {
        #[cfg(feature = "gpu")]
        let detect: fn() -> usize = ray_gpu::adapter_count;
        #[cfg(not(feature = "gpu"))]
        let detect: fn() -> usize = crate::gpu_detect::count_from_device_nodes;
        config.gpu_detector(detect)
    } else {
        config
    };
    crate::driver::init(config)
}

/// Stops the runtime: workers are told to exit (and killed if they do not within a second),
/// objects are freed. Later calls need a new [`init`]. Does nothing if ray is not running.
///
/// It works from any context, async code included: inside a tokio runtime (`#[tokio::main]`)
/// the runtime's internal threads are stopped from a helper thread, where blocking is allowed.
pub fn shutdown() {
    // Tokio refuses to stop a runtime (and to block) on a thread that drives an async runtime;
    // ray's own runtime is then stopped from a fresh thread, which this one waits for.
    if tokio::runtime::Handle::try_current().is_ok() {
        let stopped = std::thread::Builder::new()
            .name("ray-shutdown".into())
            .spawn(crate::driver::shutdown)
            .map(|t| t.join());
        match stopped {
            Ok(Ok(())) => return,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            // No thread to be had: stop here, as outside async code.
            Err(_) => {}
        }
    }
    crate::driver::shutdown()
}

/// Whether ray is running in this process (driver or worker).
pub fn is_initialized() -> bool {
    context::try_client().is_some()
}

/// A value [`put`] can store: anything serde can serialize. Implemented for every
/// `T: Serialize`; it exists so that a type without `Serialize` gets an error that says so.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be stored as a ray object: it does not implement `serde::Serialize`",
    label = "values stored with `ray::put` must implement `Serialize`",
    note = "add `#[derive(serde::Serialize, serde::Deserialize)]` to your type (for a container such as `Vec<T>`, to its element type)"
)]
pub trait Storable: Serialize {}

impl<T: Serialize + ?Sized> Storable for T {}

/// A value [`get`] (and `.await`) can read from an object: anything serde can deserialize.
/// Implemented for every `T: DeserializeOwned`; it exists so that a type without
/// `Deserialize` gets an error that says so.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be read from a ray object: it does not implement `serde::Deserialize`",
    label = "the value type of the ObjectRef must implement `Deserialize`",
    note = "add `#[derive(serde::Serialize, serde::Deserialize)]` to your type (for a container such as `Vec<T>`, to its element type)"
)]
pub trait Readable: DeserializeOwned {}

impl<T: DeserializeOwned> Readable for T {}

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

fn ids_of<R: Waitable>(refs: &[R]) -> Result<Vec<ObjectId>> {
    refs.iter()
        .map(|r| {
            if r.object_id().is_null() {
                Err(context::never_submitted())
            } else {
                Ok(r.object_id())
            }
        })
        .collect()
}

/// Waits for an object's value. A failed task's error comes back as `Err`, also through the
/// tasks that depend on it: a task whose argument failed is not run, and its own result reads as
/// the same error (the panic upstream is what a downstream `get` reports).
///
/// ```
/// #[ray::remote]
/// fn double(x: i64) -> i64 {
///     2 * x
/// }
///
/// fn main() -> ray::Result<()> {
///     ray::init(ray::Config::default().num_cpus(1))?;
///     let r = double::remote(21);
///     let v: i64 = ray::get(&r)?;
///     assert_eq!(v, 42);
///     ray::shutdown();
///     Ok(())
/// }
/// ```
pub fn get<T: Readable>(r: &ObjectRef<T>) -> Result<T> {
    get_inner(std::slice::from_ref(r), None).map(|mut v| v.pop().expect("one value"))
}

/// Like [`get`], but gives up with [`Error::Timeout`] after `timeout`.
pub fn get_with_timeout<T: Readable>(r: &ObjectRef<T>, timeout: Duration) -> Result<T> {
    get_inner(std::slice::from_ref(r), Some(timeout)).map(|mut v| v.pop().expect("one value"))
}

/// Waits for every object; values in the order of `refs`. The first failure is returned as
/// soon as it is known.
pub fn get_all<T: Readable>(refs: &[ObjectRef<T>]) -> Result<Vec<T>> {
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
pub fn put<T: Storable>(value: T) -> Result<ObjectRef<T>> {
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
/// `refs`. With `timeout = None` it waits as long as needed. `wait(&[], ..)` returns two empty
/// lists at once, whatever `num_returns` (as Ray's `ray.wait([])`).
///
/// `refs` are [`ObjectRef`]s of one type, or [`AnyObjectRef`]s to wait on results of
/// different types together (see [`ObjectRef::erase`]).
///
/// ```
/// use std::time::Duration;
///
/// #[ray::remote]
/// fn count(n: u32) -> u32 {
///     n
/// }
///
/// #[ray::remote]
/// fn name(n: u32) -> String {
///     format!("task {n}")
/// }
///
/// fn main() -> ray::Result<()> {
///     ray::init(ray::Config::default().num_cpus(2))?;
///     let (a, b) = (count::remote(7), name::remote(8));
///     let (ready, pending) = ray::wait(&[a.erase(), b.erase()], 2, Some(Duration::from_secs(10)));
///     assert_eq!((ready.len(), pending.len()), (2, 0));
///     let a = ready[0].clone().downcast::<u32>().expect("the first is `count`'s");
///     assert_eq!(ray::get(&a)?, 7);
///     ray::shutdown();
///     Ok(())
/// }
/// ```
///
/// # Panics
///
/// If `num_returns > refs.len()` for a non-empty `refs`, or a ref appears twice (as Ray raises
/// `ValueError`).
pub fn wait<R: Waitable>(
    refs: &[R],
    num_returns: usize,
    timeout: Option<Duration>,
) -> (Vec<R>, Vec<R>) {
    if refs.is_empty() {
        return (Vec::new(), Vec::new());
    }
    assert!(
        num_returns <= refs.len(),
        "ray::wait: num_returns ({num_returns}) is larger than the number of refs ({})",
        refs.len()
    );
    let mut seen = std::collections::HashSet::with_capacity(refs.len());
    for r in refs {
        assert!(
            seen.insert(r.object_id()),
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
