//! What a worker is running right now: the task or actor call of the calling thread (or, in an
//! async actor, of the calling future), and which of them were cancelled.
//!
//! Set by the worker around each task and call (`worker.rs`), read by `ray::is_cancelled`,
//! `ray::runtime_context` and the streaming sink.

use crate::ids::{ActorId, ObjectId};
use std::cell::Cell;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

thread_local! {
    static TASK: Cell<Option<ObjectId>> = const { Cell::new(None) };
}

tokio::task_local! {
    /// The call an async actor's future runs (futures interleave on one thread).
    pub(crate) static ASYNC_TASK: ObjectId;
}

static ACTOR: OnceLock<ActorId> = OnceLock::new();
static CANCELLED: Mutex<Option<HashSet<ObjectId>>> = Mutex::new(None);
/// Something was ever cancelled in this process (the per-task paths skip the lock otherwise).
static ANY_CANCELLED: AtomicBool = AtomicBool::new(false);

/// The task or call the caller runs, if any.
pub(crate) fn task() -> Option<ObjectId> {
    ASYNC_TASK.try_with(|t| *t).ok().or_else(|| TASK.get())
}

/// Runs `f` as task `task` on this thread.
pub(crate) fn run_as<R>(task: ObjectId, f: impl FnOnce() -> R) -> R {
    struct Reset(Option<ObjectId>);
    impl Drop for Reset {
        fn drop(&mut self) {
            TASK.set(self.0);
        }
    }
    let _reset = Reset(TASK.replace(Some(task)));
    f()
}

/// The actor this worker is (set once, when it becomes one).
pub(crate) fn set_actor(actor: ActorId) {
    let _ = ACTOR.set(actor);
}

pub(crate) fn actor() -> Option<ActorId> {
    ACTOR.get().copied()
}

fn cancelled() -> std::sync::MutexGuard<'static, Option<HashSet<ObjectId>>> {
    CANCELLED.lock().unwrap_or_else(|e| e.into_inner())
}

/// `ray::cancel` reached `task` while this worker runs it.
pub(crate) fn mark_cancelled(task: ObjectId) {
    ANY_CANCELLED.store(true, Ordering::Relaxed);
    cancelled().get_or_insert_with(HashSet::new).insert(task);
}

/// Whether the caller's task was cancelled.
pub(crate) fn is_cancelled() -> bool {
    // A cancellation reaches a worker running a call only if someone reads its socket.
    crate::worker::reader_needed();
    if !ANY_CANCELLED.load(Ordering::Relaxed) {
        return false;
    }
    let Some(t) = task() else { return false };
    cancelled().as_ref().is_some_and(|s| s.contains(&t))
}

/// Whether `task` was cancelled.
pub(crate) fn was_cancelled(task: ObjectId) -> bool {
    ANY_CANCELLED.load(Ordering::Relaxed) && cancelled().as_ref().is_some_and(|s| s.contains(&task))
}

/// The task ended: forget its cancellation.
pub(crate) fn finished(task: ObjectId) {
    if !ANY_CANCELLED.load(Ordering::Relaxed) {
        return;
    }
    if let Some(s) = cancelled().as_mut() {
        s.remove(&task);
    }
}
