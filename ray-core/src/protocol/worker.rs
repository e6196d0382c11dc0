//! Worker ⇄ node manager.
//!
//! A worker's connection is a socket pair the node manager made when it started the worker:
//! the worker inherits one end, so no other process can reach the node manager this way. The
//! worker's first message is [`FromWorker::Hello`]; the node manager answers
//! [`ToWorker::Welcome`] (with the worker's [`ProcId`]) or [`ToWorker::Refused`].

use super::{ActorName, ActorSpec, ActorTaskSpec, PlacementGroupSpec, TaskSpec};
use crate::codec::{Data, Value};
use crate::error::Error;
use crate::ids::{ActorId, JobId, NodeId, ObjectId, PlacementGroupId, ProcId, RefId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Worker → node manager.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FromWorker {
    /// Node control sessions only: this many of the other end's frames were received
    /// (handled by the session layer, `node_manager/session.rs`).
    SessionAck {
        received: u64,
    },
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
        /// The job's namespace for actor names, if its driver set one.
        namespace: Option<String>,
    },
    /// Node sessions only: where an actor this node created runs now (answered by
    /// `ActorLocation`).
    LocateActor {
        req: u64,
        actor: ActorId,
    },
    /// Node sessions only, from the node of the job's driver: the job ended (its driver
    /// exited, was killed or disconnected); its workers and actors go.
    JobEnded {
        job: JobId,
    },
    /// Node sessions only: output lines of a worker of `job`, for that job's driver.
    Log {
        job: JobId,
        stderr: bool,
        line: Vec<u8>,
    },
    /// A request of the rest of Ray's core API (names, cancel, placement groups, streams,
    /// introspection), answered by `ControlReply`.
    Control {
        req: u64,
        op: Control,
    },
    /// The values of a task or call with several return values (instead of `TaskDone`): one
    /// per return value, in order.
    TaskReturns {
        task: ObjectId,
        result: Result<Vec<Value>, Error>,
    },
    /// The next item of a streaming task or call: `item` is a new object id of the sender's
    /// making. Answered by `ControlReply` once the caller has taken enough items
    /// (backpressure).
    Yield {
        req: u64,
        task: ObjectId,
        index: u64,
        item: ObjectId,
        value: Value,
    },
    /// Node sessions only, from a remote driver's home node: `driver` (of `job`) may open one
    /// direct session here to call `actor`, with this ticket (`docs/direct-actor-calls.md`).
    DirectTicket {
        actor: ActorId,
        driver: ProcId,
        job: JobId,
        ticket: super::Ticket,
    },
    /// Remote drivers only, to their home node: the call `task` of `actor` went straight to
    /// node `at` over a direct session. The home node keeps what it keeps for a call it sends
    /// there itself (`args`: the call's references, pinned until its result), but sends
    /// nothing. Sent before anything else of the driver names the call's objects.
    DirectCall {
        actor: ActorId,
        task: ObjectId,
        returns: super::Returns,
        args: Vec<super::Arg>,
        at: NodeId,
    },
    /// Remote drivers only: the answer node `at` gave the driver's `Get` of a direct call's
    /// return values (once per declared call).
    DirectDone {
        task: ObjectId,
        result: Result<Vec<Value>, Error>,
    },
    /// Remote drivers only: the direct session that carried this declared call ended before
    /// its answer. The home node sends the call again over its own session with node `at`
    /// (which ignores a call it already has) and asks for its values itself.
    DirectLost(ActorTaskSpec),
}

/// What a `FromWorker::Control` asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Control {
    /// Creates a named actor (answered with the actor to hold: the new one, or with
    /// `get_if_exists` the one that has the name).
    CreateNamedActor(Box<ActorSpec>),
    /// The actor registered under `name`, which must be of `class`.
    GetActor {
        name: ActorName,
        class: String,
    },
    /// Names of the named actors (in one namespace, or all).
    ListNamedActors {
        namespace: Option<String>,
    },
    /// `ray::kill` with a choice: `no_restart: false` lets the actor restart.
    KillActor {
        actor: ActorId,
        no_restart: bool,
    },
    /// `ray::cancel`.
    Cancel {
        task: ObjectId,
        force: bool,
        recursive: bool,
    },
    /// The node's resources: total and free.
    Resources,
    /// The nodes of the cluster.
    Nodes,
    /// The resources held by what the sender runs now.
    AssignedResources,
    /// Item `index` of a stream (answered once it is produced or the stream ended).
    StreamNext {
        generator: ObjectId,
        index: u64,
    },
    CreatePlacementGroup(PlacementGroupSpec),
    RemovePlacementGroup(PlacementGroupId),
    /// Rows of the state API (read-only).
    State(Box<crate::state::StateQuery>),
    /// A reference left ray serialized (serde outside ray): keep it alive until its owner
    /// exits.
    Escape(RefId),
    /// The stream's caller dropped its generator: free the items it did not take and let the
    /// producer go on unheld; the call's own object stays (its result is still awaited). Sent
    /// by a node for a stream of a call it sent there (the local caller's drop is its `DelRef`).
    StreamDropped {
        generator: ObjectId,
    },
    /// A remote driver's request to call `actor` directly on its node: the home node passes
    /// `ticket` there (`FromWorker::DirectTicket`) and answers with the node and its address
    /// (`ControlReply::Direct`), or an error when the calls must go through it.
    DirectTicket {
        actor: ActorId,
        ticket: super::Ticket,
    },
}

/// The answer to a `Control`. Ids in it are counted as held by the receiver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum ControlReply {
    Done,
    Actor(ActorId),
    Names(Vec<ActorName>),
    Resources {
        total: Vec<(String, f64)>,
        available: Vec<(String, f64)>,
    },
    Nodes(Vec<crate::introspect::NodeInfo>),
    Assigned(Vec<(String, f64)>),
    Item(StreamItem),
    State(Box<crate::state::StateRows>),
    /// Where to open a direct session (`Control::DirectTicket`).
    Direct {
        node: NodeId,
        address: std::net::SocketAddr,
    },
}

/// The next item of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) enum StreamItem {
    /// The item's object.
    Ref(ObjectId),
    /// The stream ended with an error: the generator's own object holds it.
    Failed,
    /// The stream ended.
    End,
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
    /// Node control sessions only: as `FromWorker::SessionAck`.
    SessionAck {
        received: u64,
    },
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
    /// The answer to a `Control` (or the go-ahead after a `Yield`).
    ControlReply {
        req: u64,
        result: Result<ControlReply, Error>,
    },
    /// `ray::cancel` of a task or call this worker is running: `ray::is_cancelled()` says so
    /// from now on (an async call is stopped at its next `.await`).
    Cancel {
        task: ObjectId,
    },
}
