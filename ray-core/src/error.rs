//! The one error type of ray for Rust.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `Result<T, ray::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in ray. Failures are values, never hangs: each variant names
/// the task, actor or object concerned and the cause.
///
/// ```
/// # fn demo(err: ray::Error) {
/// match err {
///     ray::Error::TaskFailed { function, message, pid } => {
///         eprintln!("{function} panicked in worker {pid}: {message}")
///     }
///     other => eprintln!("{other}"),
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Error {
    /// The task (or actor method) panicked. `function` is its registered name.
    #[error("task `{function}` failed in worker pid {pid}: {message}")]
    TaskFailed {
        /// Registered name of the function, or `Actor.method`.
        function: String,
        /// The panic message.
        message: String,
        /// Process id of the worker that ran it.
        pid: u32,
    },
    /// The worker process running the task died (abort, segfault, kill) on every attempt.
    #[error(
        "task `{function}` lost its worker (last pid {pid}) {attempts} time(s), giving up: {cause}"
    )]
    WorkerDied {
        /// Registered name of the function.
        function: String,
        /// Process id of the last worker that died running it.
        pid: u32,
        /// How many times the task was started.
        attempts: u32,
        /// How the worker ended, e.g. `killed by signal 6 (SIGABRT)`.
        cause: String,
    },
    /// The actor is dead: its process died, it was killed, or its constructor panicked.
    #[error("actor `{actor}` is dead: {cause}")]
    ActorDied {
        /// The actor's class name.
        actor: String,
        /// Why it died.
        cause: String,
    },
    /// No node can ever satisfy the request (e.g. `num_gpus = 9` on an 8-GPU cluster).
    #[error(
        "`{name}` asks for {requested}, but the cluster only has {available}: it can never run"
    )]
    Infeasible {
        /// Task or actor name.
        name: String,
        /// What was asked, e.g. `GPU: 9`.
        requested: String,
        /// What exists, e.g. `CPU: 2, GPU: 8`.
        available: String,
    },
    /// A `get`/`wait` with a timeout ran out of time.
    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout {
        /// What was being waited for.
        what: String,
        /// The timeout that ran out.
        timeout: Duration,
    },
    /// The object store cannot make room for an object, even by spilling.
    #[error(
        "object store full: cannot store {requested} bytes ({used} of {capacity} bytes in use)"
    )]
    ObjectStoreFull {
        /// Size of the object that did not fit.
        requested: u64,
        /// Bytes in use.
        used: u64,
        /// Configured capacity.
        capacity: u64,
    },
    /// A value could not be encoded or decoded.
    #[error("cannot (de)serialize `{type_name}`: {message}")]
    Serialization {
        /// The Rust type concerned.
        type_name: String,
        /// What the codec said.
        message: String,
    },
    /// A ray function was called before `ray::init` or after `ray::shutdown`.
    #[error("ray is not initialized: call `ray::init(ray::Config::default())` first{detail}")]
    NotInitialized {
        /// Extra context, e.g. that the runtime was shut down.
        detail: String,
    },
    /// `ray::init` was called twice from the same thread without `ray::shutdown` between.
    #[error(
        "ray is already initialized on this thread; call `ray::shutdown()` before initializing again"
    )]
    AlreadyInitialized,
    /// The object is gone: freed, from an earlier runtime, or its owner died.
    #[error("object {id} is lost: {reason}")]
    ObjectLost {
        /// The object id.
        id: String,
        /// Why.
        reason: String,
    },
    /// Worker processes could not be started or were refused at connect.
    #[error("cannot start a worker process: {cause}")]
    WorkerStartFailed {
        /// What went wrong.
        cause: String,
    },
    /// Invalid configuration or options.
    #[error("invalid {what}: {message}")]
    InvalidArgument {
        /// Which setting.
        what: String,
        /// What is wrong and what would be right.
        message: String,
    },
    /// An operating-system error in the runtime itself.
    #[error("I/O error in the ray runtime while {context}: {message}")]
    Io {
        /// What the runtime was doing.
        context: String,
        /// The OS error.
        message: String,
    },
    /// A `#[ray::worker_setup]` function panicked in a worker process: the worker runs no task
    /// or actor, and each one sent to it fails with this error.
    #[error(
        "worker setup `{hook}` panicked in worker pid {pid}: {message}; the worker runs no tasks"
    )]
    WorkerSetupFailed {
        /// Registered name of the setup function.
        hook: String,
        /// The panic message.
        message: String,
        /// Process id of the worker.
        pid: u32,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, err: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            message: err.to_string(),
        }
    }

    pub(crate) fn shut_down() -> Error {
        Error::NotInitialized {
            detail: " (the runtime was shut down)".into(),
        }
    }
}
