//! What the state machine asks the outside world to do.
//!
//! Handlers of [`NodeState`](super::state::NodeState) never send, spawn, kill or sleep: they
//! push an [`Effect`], and [`NodeManager`](super::NodeManager) carries the effects out, in the
//! order they were pushed, after the state lock is released. Unit tests read them instead.

use crate::codec::Value;
use crate::error::Result;
use crate::ids::{ProcId, RequestKey};
use crate::protocol::worker::{ControlReply, ToWorker};
use crate::slot::Slot;
use std::sync::Arc;
use std::time::Duration;

/// Someone the node manager talks to over a connection. Today only its own workers; remote
/// nodes become another variant, carried by another transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Peer {
    Worker(ProcId),
    /// Another node of the cluster (this node's session there).
    Node(crate::ids::NodeId),
}

/// Where a worker's output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LogTo {
    /// This process's stdout and stderr (the driver is embedded here).
    Here,
    /// A driver connected to this node from its own process.
    Driver(ProcId),
    /// The node of the job's driver, each line tagged with where it was printed (`ip=..` when
    /// this node's address differs from that node's, else `node=..`).
    Node {
        node: crate::ids::NodeId,
        job: crate::ids::JobId,
        tag: String,
    },
}

/// An event the state machine wants to receive after a delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// A get or wait with a timeout ran out of time.
    RequestTimeout(RequestKey),
    /// A worker's process ended while its socket was still open: handle the exit now even if
    /// the socket never reaches its end.
    ExitGrace(ProcId),
}

/// One thing to do outside the state machine.
pub(crate) enum Effect {
    /// Send a message to a peer.
    Send(Peer, ToWorker),
    /// Send a request to another node (over this node's session there, opened if needed).
    SendNode(crate::ids::NodeId, crate::protocol::worker::FromWorker),
    /// Copy object `id`'s `len` bytes from node `from`'s store into this node's `region`, then
    /// call `pull_done`.
    Pull {
        id: crate::ids::ObjectId,
        from: crate::ids::NodeId,
        len: u64,
        region: u64,
    },
    /// Make sure the executable of `job` (`sha256`, `size`) is in the binary cache, fetching it
    /// from node `from` if not, then call `job_ready`.
    EnsureJob {
        job: crate::ids::JobId,
        from: crate::ids::NodeId,
        sha256: [u8; 32],
        size: u64,
    },
    /// Start a worker process for `proc`, running `exe`; its output goes to `log_to`.
    StartWorker {
        proc: ProcId,
        gpu_ids: Vec<usize>,
        exe: std::path::PathBuf,
        log_to: LogTo,
    },
    /// Kill a worker process (SIGKILL).
    Kill(ProcId),
    /// Stop talking to a peer: it was refused or broke the protocol. Nothing more it sends is
    /// read.
    Disconnect(Peer),
    /// The worker is gone: drop its connection and its process handle.
    Forget(ProcId),
    /// Deliver `Timer` after the delay.
    Timer(Duration, Timer),
    /// Count the node's GPUs in the background, then call `gpus_detected`.
    DetectGpus,
    /// Wake a driver thread blocked in `get`/`wait`.
    Wake(Arc<Slot<()>>),
    /// Complete a driver future.
    Resolve(Arc<Slot<Result<Value>>>, Result<Value>),
    /// A worker process is gone (for a shutdown waiting for all of them).
    WorkersChanged,
    /// Ask the cluster's name directory (op id, question), then call `name_answer`.
    Names(u64, super::name_directory::NameOp),
    /// Answer a control request of a driver thread.
    Answer(Arc<Slot<Result<ControlReply>>>, Result<ControlReply>),
}

impl Effect {
    /// Effects on connections and processes: they must happen in the order pushed.
    pub(crate) fn is_ordered(&self) -> bool {
        matches!(
            self,
            Effect::Send(..)
                | Effect::SendNode(..)
                | Effect::StartWorker { .. }
                | Effect::Kill(_)
                | Effect::Disconnect(_)
                | Effect::Forget(_)
        )
    }
}

impl std::fmt::Debug for Effect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Effect::Send(p, m) => write!(f, "Send({p:?}, {m:?})"),
            Effect::SendNode(n, m) => write!(f, "SendNode({n:?}, {m:?})"),
            Effect::Pull { id, from, len, .. } => write!(f, "Pull({id:?} from {from:?}, {len})"),
            Effect::StartWorker { proc, gpu_ids, .. } => {
                write!(f, "StartWorker({proc:?}, {gpu_ids:?})")
            }
            Effect::Kill(p) => write!(f, "Kill({p:?})"),
            Effect::EnsureJob { job, from, .. } => write!(f, "EnsureJob({job:?} from {from:?})"),
            Effect::Disconnect(p) => write!(f, "Disconnect({p:?})"),
            Effect::Forget(p) => write!(f, "Forget({p:?})"),
            Effect::Timer(d, t) => write!(f, "Timer({d:?}, {t:?})"),
            Effect::DetectGpus => f.write_str("DetectGpus"),
            Effect::Wake(_) => f.write_str("Wake"),
            Effect::Resolve(_, r) => write!(f, "Resolve({r:?})"),
            Effect::WorkersChanged => f.write_str("WorkersChanged"),
            Effect::Answer(_, r) => write!(f, "Answer({r:?})"),
            Effect::Names(id, op) => write!(f, "Names({id}, {op:?})"),
        }
    }
}
