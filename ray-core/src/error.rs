//! The one error type of ray for Rust.

use crate::ids::{ActorId, ObjectId, PlacementGroupId};
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
    /// The node running the task went away (killed, cut off, stopped) on every attempt.
    #[error(
        "task `{function}` was lost with its node ({node}) {attempts} time(s), giving up: {cause}"
    )]
    NodeDied {
        /// Registered name of the function.
        function: String,
        /// The node it ran on last.
        node: String,
        /// How many times the task was started.
        attempts: u32,
        /// How the node was lost.
        cause: String,
    },
    /// The actor is dead: its process died, it was killed, or its constructor panicked. With
    /// `restarting`, the call failed because the actor's process died while running it, and
    /// the actor is starting again (later calls go to the new instance).
    #[error("actor `{actor}` is dead: {cause}")]
    ActorDied {
        /// The actor's class name.
        actor: String,
        /// Why it died.
        cause: String,
        /// The actor is being restarted (`max_restarts`): only this call is lost.
        restarting: bool,
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
    /// A ray function was called before `ray::init`.
    #[error("ray is not initialized: call `ray::init(ray::Config::default())` first{detail}")]
    NotInitialized {
        /// Extra context.
        detail: String,
    },
    /// The runtime this call or reference belongs to was shut down (`ray::shutdown`), or is
    /// shutting down.
    #[error(
        "the ray runtime was shut down{detail}; references from before `ray::shutdown` cannot be \
         read after it"
    )]
    ShutDown {
        /// Extra context, e.g. what was being waited for.
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
        /// The object's id.
        id: ObjectId,
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
        /// The OS error, with a hint where one helps (e.g. the open-files limit).
        message: String,
        /// The kind of the OS error.
        #[serde(with = "io_kind")]
        kind: std::io::ErrorKind,
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
    /// Joining the cluster failed: it cannot be reached, refused this driver (wrong token,
    /// another protocol version...), or the connection to it was lost.
    #[error("cannot use the cluster at {address}: {message}")]
    Cluster {
        /// The address from `RAY_ADDRESS` or `Config::address`.
        address: String,
        /// What went wrong.
        message: String,
    },
    /// The task or actor call was cancelled with `ray::cancel` before it produced its result.
    #[error("task `{function}` (object {task}) was cancelled{how}")]
    TaskCancelled {
        /// The task's (first) return object.
        task: ObjectId,
        /// Registered name of the function, or `Actor.method`.
        function: String,
        /// How: `" before it ran"`, `" while it ran"`, `" by killing its worker (force)"`.
        how: String,
    },
    /// No actor is registered under this name (it never was, or it died).
    #[error(
        "no actor named {name:?} in namespace {namespace:?}: it was never created there or it \
         has died{hint}"
    )]
    ActorNotFound {
        /// The name looked up.
        name: String,
        /// The namespace it was looked up in.
        namespace: String,
        /// What might be meant instead, e.g. the same name in another namespace.
        hint: String,
    },
    /// Another live actor holds the name: names are unique in a namespace.
    #[error(
        "the actor name {name:?} in namespace {namespace:?} is taken by actor {holder}: use \
         another name, get that actor with `ray::get_actor`, or create with \
         `.get_if_exists(true)` to reuse it"
    )]
    ActorNameTaken {
        /// The name.
        name: String,
        /// Its namespace.
        namespace: String,
        /// The actor that holds it.
        holder: ActorId,
    },
    /// The actor registered under the name is of another class than the handle asked for.
    #[error(
        "the actor named {name:?} is a `{found}`, not a `{expected}`: ask for \
         `ray::get_actor::<{}>(..)`",
        short_name(.found)
    )]
    ActorClassMismatch {
        /// The name.
        name: String,
        /// The class asked for (without its module path).
        expected: String,
        /// The class of the actor that has the name (with its module path).
        found: String,
    },
    /// The feature needs a cluster (`ray-rs start`, `RAY_ADDRESS`), and this driver runs on a
    /// single node of its own.
    #[error(
        "{what} needs a cluster to outlive the driver in, and this driver runs single-node: {hint}"
    )]
    NeedsCluster {
        /// What was asked, e.g. "a detached actor (`Lifetime::Detached`)".
        what: String,
        /// What to do instead.
        hint: String,
    },
    /// The placement group was removed (or never existed on this node).
    #[error("placement group {group} was removed (or never existed): {detail}")]
    PlacementGroupRemoved {
        /// The group.
        group: PlacementGroupId,
        /// What was affected, e.g. "task `f` was scheduled into it".
        detail: String,
    },
}

/// A registered name without its module path.
fn short_name(name: &str) -> &str {
    name.rsplit("::").next().unwrap_or(name)
}

/// `io::ErrorKind` on the wire: the kinds the runtime meets, anything else as `Other`.
mod io_kind {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::io::ErrorKind;

    const KINDS: &[ErrorKind] = &[
        ErrorKind::Other,
        ErrorKind::NotFound,
        ErrorKind::PermissionDenied,
        ErrorKind::ConnectionRefused,
        ErrorKind::ConnectionReset,
        ErrorKind::ConnectionAborted,
        ErrorKind::BrokenPipe,
        ErrorKind::AlreadyExists,
        ErrorKind::WouldBlock,
        ErrorKind::InvalidInput,
        ErrorKind::InvalidData,
        ErrorKind::TimedOut,
        ErrorKind::UnexpectedEof,
        ErrorKind::OutOfMemory,
        ErrorKind::Interrupted,
        ErrorKind::AddrInUse,
        ErrorKind::AddrNotAvailable,
        ErrorKind::StorageFull,
        ErrorKind::QuotaExceeded,
        ErrorKind::FileTooLarge,
        ErrorKind::IsADirectory,
        ErrorKind::NotADirectory,
        ErrorKind::Unsupported,
    ];

    pub(super) fn serialize<S: Serializer>(kind: &ErrorKind, s: S) -> Result<S::Ok, S::Error> {
        let code = KINDS.iter().position(|k| k == kind).unwrap_or(0) as u8;
        code.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ErrorKind, D::Error> {
        let code = u8::deserialize(d)?;
        Ok(KINDS
            .get(code as usize)
            .copied()
            .unwrap_or(ErrorKind::Other))
    }
}

impl Error {
    /// An OS error while the runtime was doing `context`. Running out of file descriptors
    /// says what the limit is and how to raise it.
    pub(crate) fn io(context: impl Into<String>, err: std::io::Error) -> Error {
        let mut message = err.to_string();
        if matches!(err.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) {
            message.push_str(&fd_limit_hint());
        }
        Error::Io {
            context: context.into(),
            message,
            kind: err.kind(),
        }
    }

    pub(crate) fn shut_down() -> Error {
        Error::ShutDown {
            detail: String::new(),
        }
    }

    pub(crate) fn object_lost(id: ObjectId, reason: impl Into<String>) -> Error {
        Error::ObjectLost {
            id,
            reason: reason.into(),
        }
    }
}

/// What to do when the process runs out of file descriptors.
pub(crate) fn fd_limit_hint() -> String {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass, which lives for the call.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    if ok {
        format!(
            " (this process may open {} files at once, at most {}: raise the limit with \
             `ulimit -n` before starting the program)",
            lim.rlim_cur, lim.rlim_max
        )
    } else {
        " (the open-files limit is reached: raise it with `ulimit -n`)".into()
    }
}
#[cfg(test)]
mod tests {
    /// Results travel through every call (`Result<Value, Error>` in messages and effects):
    /// new variants must not make the enum larger (as of issue 12: 80 bytes, set by
    /// `Infeasible`'s three strings).
    #[test]
    fn the_error_stays_small() {
        assert!(std::mem::size_of::<super::Error>() <= 80);
    }
}
