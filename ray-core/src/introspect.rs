//! What the running program can ask about itself: the cluster's resources and nodes, and
//! the runtime context of the calling task or actor.

use crate::context;
use crate::error::{Error, Result};
use crate::ids::{ActorId, JobId, NodeId, TaskId};
use crate::protocol::worker::{Control, ControlReply};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Resource names and amounts.
type Amounts = Vec<(String, f64)>;

/// The node's resources: (total, free).
fn resources() -> Result<(Amounts, Amounts)> {
    match context::client()?.control(Control::Resources)? {
        ControlReply::Resources { total, available } => Ok((total, available)),
        other => Err(unexpected(other)),
    }
}

pub(crate) fn unexpected(reply: ControlReply) -> Error {
    Error::InvalidArgument {
        what: "answer of the node manager".into(),
        message: format!("unexpected {reply:?}"),
    }
}

/// Every resource of the cluster and how much of it there is in all: `"CPU"`, `"GPU"` and the
/// custom resources (as Ray's `ray.cluster_resources()`; resources the cluster has none of are
/// left out).
///
/// ```
/// fn main() -> ray::Result<()> {
///     ray::init(ray::Config::default().num_cpus(2).num_gpus(0).resource("disk", 1.0))?;
///     let total = ray::cluster_resources()?;
///     assert_eq!(total["CPU"], 2.0);
///     assert_eq!(total["disk"], 1.0);
///     assert!(!total.contains_key("GPU"));
///     ray::shutdown();
///     Ok(())
/// }
/// ```
pub fn cluster_resources() -> Result<BTreeMap<String, f64>> {
    Ok(resources()?
        .0
        .into_iter()
        .filter(|(_, v)| *v > 0.0)
        .collect())
}

/// What is free now: the cluster's resources less what running tasks, actors and placement
/// groups hold (as Ray's `ray.available_resources()`, resources with nothing free are left
/// out). A worker blocked in `ray::get` lends its CPU back meanwhile, so this may briefly show
/// more free CPU than the tasks' requests suggest.
pub fn available_resources() -> Result<BTreeMap<String, f64>> {
    Ok(resources()?
        .1
        .into_iter()
        .filter(|(_, v)| *v > 0.0)
        .collect())
}

/// A node of the cluster, as [`nodes`] lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NodeInfo {
    /// The node's id.
    pub node_id: NodeId,
    /// Whether it is alive.
    pub alive: bool,
    /// Whether this is the node the driver's job runs its node manager on.
    pub is_head: bool,
    /// Its resources, in all.
    pub resources: BTreeMap<String, f64>,
    /// The worker processes it runs now (counted on the node the caller's job is attached to;
    /// 0 for the other nodes of a cluster, whose counts `ray-rs status` shows).
    pub workers: usize,
}

/// The nodes of the cluster (as Ray's `ray.nodes()`): the one the caller's job is attached to
/// first (`is_head`), then the other live nodes; in single-node mode, the driver's own.
pub fn nodes() -> Result<Vec<NodeInfo>> {
    match context::client()?.control(Control::Nodes)? {
        ControlReply::Nodes(n) => Ok(n),
        other => Err(unexpected(other)),
    }
}

/// Where the calling code runs: [`runtime_context`]'s answer (Ray's
/// `ray.get_runtime_context()`).
#[derive(Debug, Clone)]
pub struct RuntimeContext {
    node_id: NodeId,
    job_id: JobId,
    task_id: Option<TaskId>,
    actor_id: Option<ActorId>,
    worker_pid: u32,
}

impl RuntimeContext {
    /// The node this process runs on.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The job: the driver this process works for.
    pub fn job_id(&self) -> JobId {
        self.job_id
    }

    /// The task or actor call being run, in a worker (`None` in the driver, and in an actor's
    /// constructor).
    pub fn task_id(&self) -> Option<TaskId> {
        self.task_id
    }

    /// The actor, in an actor's worker.
    pub fn actor_id(&self) -> Option<ActorId> {
        self.actor_id
    }

    /// The process id of this worker (or of the driver).
    pub fn worker_pid(&self) -> u32 {
        self.worker_pid
    }

    /// The logical GPU ids given to this worker (as [`get_gpu_ids`](crate::get_gpu_ids)).
    pub fn gpu_ids(&self) -> Vec<usize> {
        crate::get_gpu_ids()
    }

    /// The resources the running task or actor holds, e.g. `{"CPU": 0.5, "GPU": 1.0}` (Ray's
    /// `get_assigned_resources()`); empty in the driver.
    pub fn assigned_resources(&self) -> Result<BTreeMap<String, f64>> {
        if !crate::worker::in_worker() {
            return Ok(BTreeMap::new());
        }
        match context::client()?.control(Control::AssignedResources)? {
            ControlReply::Assigned(a) => Ok(a.into_iter().collect()),
            other => Err(unexpected(other)),
        }
    }
}

/// Where the calling code runs: node, job, task or actor, process.
///
/// ```
/// #[ray::remote]
/// fn whoami() -> (u32, bool) {
///     let ctx = ray::runtime_context().unwrap();
///     (ctx.worker_pid(), ctx.task_id().is_some())
/// }
///
/// fn main() -> ray::Result<()> {
///     ray::init(ray::Config::default().num_cpus(1))?;
///     let driver = ray::runtime_context()?;
///     assert_eq!(driver.worker_pid(), std::process::id());
///     assert!(driver.task_id().is_none());
///     let (pid, in_task) = ray::get(&whoami::remote())?;
///     assert!(pid != std::process::id() && in_task);
///     ray::shutdown();
///     Ok(())
/// }
/// ```
pub fn runtime_context() -> Result<RuntimeContext> {
    let client = context::client()?;
    let proc = crate::ids::this_proc();
    Ok(RuntimeContext {
        node_id: proc.node,
        job_id: client.job(),
        task_id: crate::current::task().map(|t| t.task()),
        actor_id: crate::current::actor(),
        worker_pid: std::process::id(),
    })
}
