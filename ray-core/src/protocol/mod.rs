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
use crate::ids::{ActorId, JobId, ObjectId};
use crate::resources::ResourceRequest;
use serde::{Deserialize, Serialize};

/// Version of the wire protocol. Both handshakes carry it; a peer with another version is
/// refused with a message naming both.
pub(crate) const PROTOCOL_VERSION: u32 = 2;

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
}

/// A method call on an actor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ActorTaskSpec {
    pub actor: ActorId,
    pub task: ObjectId,
    pub method: String,
    pub args: Vec<Arg>,
}
