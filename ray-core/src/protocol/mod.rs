//! The messages between processes.
//!
//! - [`worker`]: a worker process and its node manager, over the socket the node manager
//!   handed the worker when it started it. The driver's own API calls the node manager
//!   in-process with the same requests ([`crate::context::Client`]).
//! - [`node`]: node managers (and later drivers and tools) across machines, versioned with a
//!   handshake.
//!
//! Every frame is a `u32` little-endian length followed by one bincode-encoded message
//! ([`crate::codec`]); [`crate::transport`] reads and writes them.

// Used by the cluster transport; today only its handshake and tests exist.
#[allow(dead_code)]
pub(crate) mod node;
pub(crate) mod worker;

use crate::codec::Value;
use crate::error::Error;
use crate::ids::{ActorId, JobId, ObjectId, PlacementGroupId};
use crate::resources::ResourceRequest;
use serde::{Deserialize, Serialize};

/// Version of the wire protocol. Both handshakes carry it; a peer with another version is
/// refused with a message naming both. 4: a data session's reply is a header frame followed by
/// the raw bytes (`node::DataReply`), no longer one frame holding them. 5: a node may refuse a
/// hello with `NodeRefusal::NotRegistered`, which its sender answers by asking again. 6: direct
/// actor calls (`NodeMessage::DirectHello`, `FromWorker::DirectTicket|DirectCall|DirectDone`).
pub(crate) const PROTOCOL_VERSION: u32 = 6;

/// 256 random bits a driver makes to open a direct session to the node of an actor it calls
/// (`docs/direct-actor-calls.md`): its home node passes them to that node, and the driver's
/// hello there must carry them. Good for one use. Never shown: its `Debug` hides the bits.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Ticket(pub [u8; 32]);

impl Ticket {
    /// Compares in time independent of where the two differ.
    pub(crate) fn matches(&self, other: &Ticket) -> bool {
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ticket(..)")
    }
}

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
    /// The job whose code runs it (the submitter's).
    pub job: JobId,
    pub function: String,
    pub args: Vec<Arg>,
    pub resources: ResourceRequest,
    pub max_retries: u32,
    /// What issue 12 added: returns, retries of panics, worker reuse.
    pub ext: TaskExt,
}

impl TaskSpec {
    /// A task with one return value and no stream: the only kind whose lost result is made
    /// again by running it again (lineage keeps no spec for the other kinds).
    pub(crate) fn single_return(&self) -> bool {
        self.ext.returns.extra == 0 && self.ext.returns.stream.is_none()
    }
}

/// How a call returns its values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Returns {
    /// Return values beyond the first (`num_returns - 1`): objects `task + 1 ..= task + extra`
    /// (see [`ObjectId::nth_return`]), made by the caller with the task's id.
    pub extra: u32,
    /// A streaming call (Ray's generators): its items are objects of their own, handed to the
    /// caller as they are produced; `Some(n)`: at most `n` items produced and not yet taken
    /// (backpressure, 0 for none).
    pub stream: Option<u32>,
}

/// Options of a normal task beyond resources and `max_retries`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct TaskExt {
    pub returns: Returns,
    /// A panic is retried like a crash, within `max_retries`.
    pub retry_exceptions: bool,
    /// A worker runs this function at most this many times, then is replaced (0: no limit).
    pub max_calls: u32,
}

/// A named actor's name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct ActorName {
    pub namespace: String,
    pub name: String,
}

/// Options of an actor beyond resources, restarts and concurrency.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ActorExt {
    /// Registered under this name (unique in its namespace) while it lives.
    pub name: Option<Box<ActorName>>,
    /// With a name: if an actor of the same class holds it, the creator gets that one.
    pub get_if_exists: bool,
    /// Calls in flight when the actor's process dies are run again on the restarted actor,
    /// this many times each.
    pub max_task_retries: u32,
    /// `Lifetime::Detached`: it outlives its driver's job (in a cluster) until `ray::kill`.
    pub detached: bool,
}

/// A placement group as its creator describes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PlacementGroupSpec {
    pub id: PlacementGroupId,
    /// Resolved when every bundle is reserved (or failed when it never can be).
    pub ready: ObjectId,
    pub bundles: Vec<ResourceRequest>,
    pub strategy: crate::placement::PlacementStrategy,
    pub name: String,
}

/// Creation of an actor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ActorSpec {
    pub actor: ActorId,
    /// The job whose code runs it (the creator's).
    pub job: JobId,
    pub class: String,
    pub args: Vec<Arg>,
    pub resources: ResourceRequest,
    pub max_concurrency: u32,
    pub max_restarts: u32,
    /// Set when the options or arguments were invalid: the actor is dead on arrival.
    pub invalid: Option<Error>,
    pub ext: ActorExt,
}

/// A method call on an actor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ActorTaskSpec {
    pub actor: ActorId,
    pub task: ObjectId,
    pub method: String,
    pub args: Vec<Arg>,
    pub returns: Returns,
}
