//! Worker ⇄ node manager.
//!
//! A worker's connection is a socket pair the node manager made when it started the worker:
//! the worker inherits one end, so no other process can reach the node manager this way. The
//! worker's first message is [`FromWorker::Hello`]; the node manager answers
//! [`ToWorker::Welcome`] (with the worker's [`ProcId`]) or [`ToWorker::Refused`].

use super::{ActorSpec, ActorTaskSpec, TaskSpec};
use crate::codec::{Data, Value};
use crate::error::Error;
use crate::ids::{ActorId, JobId, NodeId, ObjectId, ProcId, RefId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Worker → node manager.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FromWorker {
    /// First message on a connection.
    Hello {
        version: u32,
        fingerprint: u64,
        pid: u32,
    },
    /// Submissions imply that the sender holds a reference to the new object or actor, whose
    /// id it made ([`ObjectId::creator`] is the sender).
    SubmitTask(TaskSpec),
    CreateActor(ActorSpec),
    SubmitActorTask(ActorTaskSpec),
    /// The task this worker was given finished (normal task or actor method).
    TaskDone {
        task: ObjectId,
        result: Result<Value, Error>,
    },
    /// The actor constructor ran.
    ActorCreated {
        actor: ActorId,
        result: Result<(), Error>,
    },
    /// `ray::put` (also implies the sender holds the object).
    Put {
        id: ObjectId,
        result: Result<Value, Error>,
    },
    /// `ray::get`: answered by `GetReply` (after `GetReplyPart`s for large replies) once every
    /// object is ready (or one failed).
    Get {
        req: u64,
        ids: Vec<ObjectId>,
        timeout_ms: Option<u64>,
    },
    /// `ray::wait`: answered by `WaitReply`.
    Wait {
        req: u64,
        ids: Vec<ObjectId>,
        num_returns: usize,
        timeout_ms: Option<u64>,
    },
    /// The sender's first reference to something / its last one went away.
    AddRef(RefId),
    DelRef(RefId),
    /// `ray::kill`.
    KillActor {
        actor: ActorId,
    },
    /// A region of the object store to write a large object into; answered by `Allocated`.
    /// The object is sealed by the `Put`/`TaskDone` that names the region.
    Alloc {
        req: u64,
        size: u64,
    },
    /// A `Get` nobody waits for any more (a dropped future). Answered by a `GetReply` with an
    /// error if it was still open.
    CancelGet {
        req: u64,
    },
    /// The sender has finished reading these objects from the store (it was handed them by
    /// `GetReply`), so they may be spilled again.
    Release(Vec<ObjectId>),
    /// Node sessions only: a job whose work follows (its executable is fetched from the
    /// sending node by hash if the receiver does not have it).
    Job {
        job: JobId,
        fingerprint: u64,
        sha256: [u8; 32],
        size: u64,
    },
    /// Node sessions only: where an actor this node created runs now (answered by
    /// `ActorLocation`).
    LocateActor {
        req: u64,
        actor: ActorId,
    },
    /// Node sessions only: output lines of a worker of `job`, for that job's driver.
    Log {
        job: JobId,
        stderr: bool,
        line: Vec<u8>,
    },
}

/// What a worker is asked to run.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Execute {
    Task {
        task: ObjectId,
        function: String,
        args: Vec<Data>,
        gpu_ids: Vec<usize>,
    },
    CreateActor {
        actor: ActorId,
        class: String,
        args: Vec<Data>,
        gpu_ids: Vec<usize>,
        max_concurrency: u32,
    },
    ActorTask {
        task: ObjectId,
        method: String,
        args: Vec<Data>,
    },
}

/// Why a worker was refused. Says what failed, never the node's own secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Refusal {
    /// The worker speaks another protocol version.
    WrongVersion { node: u32, worker: u32 },
    /// The worker's remote functions differ from the driver's (another build).
    DifferentBuild,
    /// The first message was not `Hello`.
    NoHello,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::WrongVersion { node, worker } => write!(
                f,
                "the worker speaks protocol version {worker}, the node manager {node}"
            ),
            Refusal::DifferentBuild => f.write_str(
                "the worker runs a different build than the driver (its remote functions \
                 differ): workers must run the same executable as the driver",
            ),
            Refusal::NoHello => f.write_str("the first message was not Hello"),
        }
    }
}

/// Node manager → worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// The worker is registered as `proc`, running code of `job`: it makes its ids under that
    /// process id.
    Welcome {
        proc: ProcId,
        job: JobId,
    },
    Refused {
        reason: Refusal,
    },
    Execute(Execute),
    /// Part of the values of a large `GetReply`, in order; the `GetReply` with the rest
    /// follows.
    GetReplyPart {
        req: u64,
        values: Vec<Value>,
    },
    /// Values in the order asked (after those of any `GetReplyPart`). References inside them
    /// are counted as held by the receiver until it sends one `DelRef` for each, after
    /// decoding; values in the store stay pinned in memory until it sends `Release`.
    GetReply {
        req: u64,
        result: Result<Vec<Value>, Error>,
    },
    /// Indices (into the request's ids) of the ready objects.
    WaitReply {
        req: u64,
        ready: Vec<u32>,
    },
    /// The region for an `Alloc`, or why there is none (`ObjectStoreFull`).
    Allocated {
        req: u64,
        result: Result<u64, Error>,
    },
    /// Finish what was sent before, then exit.
    Exit,
    /// A line a worker of the receiver's job printed (to a driver on another machine), with
    /// its prefix (`(name pid=N) `) and newline.
    Log {
        stderr: bool,
        line: Vec<u8>,
    },
    /// Where the actor asked about runs (`None`: it is gone).
    ActorLocation {
        req: u64,
        node: Option<NodeId>,
    },
}
