//! Which runtime this process talks to: the driver's in-process node manager, or (inside a
//! worker) the node manager at the other end of the worker's socket.

use crate::codec::Value;
use crate::error::{Error, Result};
use crate::ids::{ActorId, JobId, ObjectId, RefId};
use crate::protocol::worker::{Control, ControlReply};
use crate::protocol::{ActorSpec, ActorTaskSpec, TaskSpec};
use crate::slot::Slot;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// What cancels a `get_async`: the request to forget, if one was opened.
pub(crate) type GetToken = Option<NonZeroU64>;

/// What the public API needs from a runtime. Implemented by the driver (direct calls into the
/// node manager) and by a worker (messages over its socket).
pub(crate) trait Client: Send + Sync + 'static {
    fn submit_task(&self, spec: TaskSpec);
    fn create_actor(&self, spec: ActorSpec);
    fn submit_actor_task(&self, spec: ActorTaskSpec);
    fn put(&self, id: ObjectId, result: Result<Value>);
    /// Blocks until every object is ready; values in the order asked.
    fn get(&self, ids: &[ObjectId], timeout: Option<Duration>) -> Result<Vec<Value>>;
    /// Starts reading one object for a future: its slot, and a token for `cancel_get`.
    fn get_async(&self, id: ObjectId) -> (Arc<Slot<Result<Value>>>, GetToken);
    /// The future was dropped before its value was taken: stop waiting (a worker blocked on
    /// it gets its CPU back). A value that arrives anyway is released.
    fn cancel_get(&self, id: ObjectId, token: GetToken);
    /// After decoding values that came from `get(ids)`: the references inside them are now
    /// counted by this process itself, and values in the store may be spilled again.
    fn transfer_done(&self, ids: &[ObjectId], values: &[Value]);
    /// A region of the object store to write `size` bytes into.
    fn alloc(&self, size: u64) -> Result<u64>;
    /// Done reading these objects from the store (zero-copy views).
    fn release(&self, ids: &[ObjectId]);
    /// Ready flags, one per id.
    fn wait(&self, ids: &[ObjectId], num_returns: usize, timeout: Option<Duration>) -> Vec<bool>;
    /// A reference was created in this process (clone or decode).
    fn add_ref(&self, id: RefId);
    /// A reference was dropped in this process.
    fn del_ref(&self, id: RefId);
    fn kill_actor(&self, id: ActorId);
    fn gpu_ids(&self) -> Vec<usize>;
    /// The job this process runs code of.
    fn job(&self) -> JobId;
    /// A request of the rest of the core API (names, cancel, placement groups, streams,
    /// introspection); blocks until answered. Ids in the answer are counted as held by this
    /// process: take them with [`adopt`](Client::adopt).
    fn control(&self, op: Control) -> Result<ControlReply>;
    /// Takes over a reference the node manager counted for this process in an answer.
    fn adopt(&self, id: RefId);
}

static CURRENT: RwLock<Option<Arc<dyn Client>>> = RwLock::new(None);
/// A runtime ran in this process and was shut down (and none runs now).
static SHUT_DOWN: AtomicBool = AtomicBool::new(false);

/// `ray::shutdown` ran: calls from now on say so, until the next `init`.
pub(crate) fn mark_shut_down() {
    SHUT_DOWN.store(true, Ordering::Relaxed);
}

pub(crate) fn set(client: Option<Arc<dyn Client>>) {
    if client.is_some() {
        SHUT_DOWN.store(false, Ordering::Relaxed);
    }
    *CURRENT.write().unwrap_or_else(|e| e.into_inner()) = client;
}

pub(crate) fn try_client() -> Option<Arc<dyn Client>> {
    CURRENT.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The running runtime's client; `NotInitialized` before `init`, `ShutDown` after `shutdown`.
pub(crate) fn client() -> Result<Arc<dyn Client>> {
    try_client().ok_or_else(not_running)
}

/// The error for a call made while no runtime runs: `ShutDown` after `ray::shutdown`,
/// `NotInitialized` before `ray::init`.
pub(crate) fn not_running() -> Error {
    if SHUT_DOWN.load(Ordering::Relaxed) {
        Error::shut_down()
    } else {
        Error::NotInitialized {
            detail: " (no runtime is running in this process: the call came before `ray::init`)"
                .into(),
        }
    }
}

/// Reading an `ObjectRef` that a `.remote(..)` call returned while ray was not running.
pub(crate) fn never_submitted() -> Error {
    Error::NotInitialized {
        detail: " (this ObjectRef comes from a `.remote(..)` call made while ray was not running, \
                 so nothing was submitted; call `ray::init` before `.remote(..)`)"
            .into(),
    }
}
