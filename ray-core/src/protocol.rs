//! The messages between processes.
//!
//! Workers talk to the node manager over a Unix domain socket; the driver's own API calls the
//! node manager in-process with the same requests. Every frame is a `u32` little-endian length
//! followed by one bincode-encoded message (see `codec`). A later multi-node issue carries the
//! same enums over TCP between node managers.

use crate::codec::{Data, Value};
use crate::error::Error;
use crate::ids::{ActorId, ObjectId, ProcIndex, RefId};
use crate::resources::ResourceRequest;
use serde::{Deserialize, Serialize};

/// A task argument: an inline value, or a reference resolved before the task runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Arg {
    Value(Value),
    Ref(ObjectId),
}

/// A normal task. Its id is the id of the object it returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TaskSpec {
    pub task: ObjectId,
    pub function: String,
    pub args: Vec<Arg>,
    pub resources: ResourceRequest,
    pub max_retries: u32,
}

/// Creation of an actor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ActorSpec {
    pub actor: ActorId,
    pub class: String,
    pub args: Vec<Arg>,
    pub resources: ResourceRequest,
    pub max_concurrency: u32,
    pub max_restarts: u32,
    /// Set when the options or arguments were invalid: the actor is dead on arrival.
    pub invalid: Option<Error>,
}

/// A method call on an actor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ActorTaskSpec {
    pub actor: ActorId,
    pub task: ObjectId,
    pub method: String,
    pub args: Vec<Arg>,
}

/// Worker → node manager.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToHead {
    /// First message on a connection.
    Register {
        proc: ProcIndex,
        pid: u32,
        token: u64,
        fingerprint: u64,
    },
    /// Submissions imply that the sender holds a reference to the new object or actor.
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
    /// `ray::get`: answered by `GetReply` once every object is ready (or failed).
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

/// Node manager → worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToWorker {
    Registered,
    Refused {
        reason: String,
    },
    Execute(Execute),
    /// Values in the order asked. References inside them are counted as held by the receiver
    /// until it sends one `DelRef` for each, after decoding; values in the store stay pinned in
    /// memory until it sends `Release`.
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
}
