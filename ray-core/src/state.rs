//! What the runtime is doing now: its nodes, actors, tasks, objects and worker processes as
//! typed rows (Ray's state API, `ray.util.state.list_*` / `summarize_*`), and the timeline of
//! every task and actor call as Chrome trace events ([`timeline`]).
//!
//! Rows come from the node manager in one answer, read under its lock: live tasks and calls
//! from its tables, finished ones from a ring of the last
//! [`Config::task_events_max`](crate::Config::task_events_max) (default
//! [`DEFAULT_TASK_EVENTS_MAX`]); nothing is written to disk or kept per task beyond that.
//!
//! ```
//! #[ray::remote]
//! fn double(x: u64) -> u64 { x * 2 }
//!
//! #[ray::remote]
//! fn boom() -> u64 { panic!("no luck") }
//!
//! fn main() -> ray::Result<()> {
//!     use ray::state::{ListOptions, TaskStatus};
//!     ray::init(ray::Config::default().num_cpus(1))?;
//!     ray::get(&double::remote(21))?;
//!     let _ = ray::get(&boom::remote());
//!     let failed = ray::state::tasks(&ListOptions::new().filter("state", "FAILED"))?;
//!     assert_eq!(failed.len(), 1);
//!     assert_eq!(failed[0].name, "boom");
//!     assert!(failed[0].error.as_deref().unwrap().contains("no luck"));
//!     let summary = ray::state::summarize_tasks()?;
//!     assert_eq!(summary.by_name["double"][&TaskStatus::Finished], 1);
//!     ray::shutdown();
//!     Ok(())
//! }
//! ```

use crate::context;
use crate::error::{Error, Result};
use crate::protocol::worker::{Control, ControlReply};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// How many finished tasks and actor calls a node keeps for the state API and the timeline,
/// unless [`Config::task_events_max`](crate::Config::task_events_max) says otherwise.
pub const DEFAULT_TASK_EVENTS_MAX: usize = 1_000;

/// Where a task or actor call is in its life (Ray's `TaskStatus` names, in JSON too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum TaskStatus {
    /// Waiting for its `ObjectRef` arguments to be made.
    PendingArgsAvail,
    /// Ready, waiting for resources (CPUs, GPUs...) on a node.
    PendingNodeAssignment,
    /// Resources reserved; its arguments are being copied from another node.
    PendingArgsFetch,
    /// An actor call waiting for its turn (earlier calls of its caller) or for the actor.
    PendingActorTaskOrdering,
    /// Sent to another node of the cluster to run there.
    SubmittedToNode,
    /// Running in a worker process.
    Running,
    /// Done: its result is stored.
    Finished,
    /// Done with an error (panic, dead worker or actor, cancelled...): see the row's `error`.
    Failed,
}

impl TaskStatus {
    /// Its name as Ray writes it: `RUNNING`, `FAILED`...
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::PendingArgsAvail => "PENDING_ARGS_AVAIL",
            TaskStatus::PendingNodeAssignment => "PENDING_NODE_ASSIGNMENT",
            TaskStatus::PendingArgsFetch => "PENDING_ARGS_FETCH",
            TaskStatus::PendingActorTaskOrdering => "PENDING_ACTOR_TASK_ORDERING",
            TaskStatus::SubmittedToNode => "SUBMITTED_TO_NODE",
            TaskStatus::Running => "RUNNING",
            TaskStatus::Finished => "FINISHED",
            TaskStatus::Failed => "FAILED",
        }
    }
}

impl std::fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A task or an actor method call, as [`tasks`] lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TaskRow {
    /// The task's id (that of its result object).
    pub task_id: String,
    /// The function's name (`square`), or `Class.method` for an actor call.
    pub name: String,
    /// `NORMAL_TASK` or `ACTOR_TASK`.
    pub kind: String,
    /// Where it is in its life.
    pub state: TaskStatus,
    /// The node that runs (or ran, or will run) it.
    pub node_id: u32,
    /// The worker process that runs or ran it.
    pub worker_pid: Option<u32>,
    /// The actor, for an actor call.
    pub actor_id: Option<String>,
    /// How many times it was started (more than 1 after retries).
    pub attempts: u32,
    /// When it was submitted, in microseconds since the Unix epoch.
    pub submitted_us: u64,
    /// When it started running (last attempt), in microseconds since the Unix epoch.
    pub start_us: Option<u64>,
    /// When it finished, in microseconds since the Unix epoch.
    pub end_us: Option<u64>,
    /// Why it failed (the panic message, the dead worker...).
    pub error: Option<String>,
}

/// An actor, as [`actors`] lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ActorRow {
    /// The actor's id.
    pub actor_id: String,
    /// Its class (the struct's name).
    pub class_name: String,
    /// `PENDING_CREATION`, `ALIVE`, `RESTARTING`, `DEAD`, or `REMOTE` (on another node).
    pub state: String,
    /// Its name, for a named actor.
    pub name: Option<String>,
    /// The node it runs on.
    pub node_id: u32,
    /// Its worker process.
    pub pid: Option<u32>,
    /// How often it was restarted after its process died.
    pub restarts: u32,
    /// How often it may be.
    pub max_restarts: u32,
    /// What it asked for: `{"CPU": 1.0, "GPU": 1.0}`.
    pub resources: BTreeMap<String, f64>,
    /// Why it died.
    pub death_cause: Option<String>,
}

/// An object of the node's directory, as [`objects`] lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ObjectRow {
    /// The object's id.
    pub object_id: String,
    /// `PENDING` (not made yet), `READY`, `SPILLED` (on disk) or `FAILED`.
    pub state: String,
    /// Where its bytes are: `inline` (in messages), `store` (shared memory), `spilled`, or
    /// `node N` (another node's store).
    pub location: String,
    /// Its size in bytes, once made.
    pub size_bytes: Option<u64>,
    /// Processes holding a reference to it: `driver`, `pid 1234`, or another node's session.
    pub holders: Vec<String>,
    /// Pins: pending tasks taking it as an argument, objects containing it, values in flight.
    pub pins: u32,
    /// The task or call making it, while pending.
    pub producer: Option<String>,
    /// Its error, for a failed object.
    pub error: Option<String>,
}

/// A worker process (or an attached driver or peer session), as [`workers`] lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WorkerRow {
    /// Its process id (0 until it started).
    pub pid: u32,
    /// `STARTING`, `IDLE`, `BUSY` (running a task), `ACTOR`, `EXITING`, `DRIVER`, `PEER`.
    pub state: String,
    /// The node it runs on.
    pub node_id: u32,
    /// The job whose code it runs (`node.index`).
    pub job_id: String,
    /// The logical GPUs it was given.
    pub gpu_ids: Vec<usize>,
    /// The task it runs, when busy.
    pub task_id: Option<String>,
    /// Its actor, for an actor's worker.
    pub actor_id: Option<String>,
}

/// A node, as [`nodes`] lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NodeRow {
    /// The node's id.
    pub node_id: u32,
    /// `ALIVE` or `DEAD`.
    pub state: String,
    /// Whether it is the node that answered (the driver's own in single-node mode).
    pub is_head: bool,
    /// Its resources in all.
    pub resources_total: BTreeMap<String, f64>,
    /// What is free now.
    pub resources_available: BTreeMap<String, f64>,
    /// Bytes of its shared-memory object store in use.
    pub object_store_used_bytes: u64,
    /// The store's capacity.
    pub object_store_capacity_bytes: u64,
    /// Objects written to its spill directory so far.
    pub spilled_objects: u64,
    /// Its worker processes now.
    pub workers: usize,
}

/// Which rows, how many: [`tasks`] and the other lists take one.
///
/// A filter is `key = value` ([`filter`](Self::filter)) or `key != value`
/// ([`filter_not`](Self::filter_not)) on one of the row's fields (its name in the row's
/// struct, e.g. `state`, `name`, `worker_pid`, `actor_id`); values compare as text, without
/// regard to case. Without a limit, at most [`DEFAULT_LIMIT`](Self::DEFAULT_LIMIT) rows come
/// back, as Ray's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ListOptions {
    pub(crate) filters: Vec<Filter>,
    pub(crate) limit: Option<usize>,
}

/// One filter of a [`ListOptions`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Filter {
    pub key: String,
    pub equal: bool,
    pub value: String,
}

impl ListOptions {
    /// Rows returned when no limit is set (Ray's default too).
    pub const DEFAULT_LIMIT: usize = 100;

    /// All rows, up to [`DEFAULT_LIMIT`](Self::DEFAULT_LIMIT).
    pub fn new() -> Self {
        ListOptions::default()
    }

    /// Only rows whose field `key` equals `value`.
    pub fn filter(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.filters.push(Filter {
            key: key.into(),
            equal: true,
            value: value.into(),
        });
        self
    }

    /// Only rows whose field `key` differs from `value`.
    pub fn filter_not(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.filters.push(Filter {
            key: key.into(),
            equal: false,
            value: value.into(),
        });
        self
    }

    /// At most `n` rows.
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// Parses a filter written `key=value` or `key!=value` (the CLI's `--filter`).
    pub fn parse_filter(self, text: &str) -> Result<Self> {
        if let Some((k, v)) = text.split_once("!=") {
            return Ok(self.filter_not(k.trim(), v.trim()));
        }
        match text.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok(self.filter(k.trim(), v.trim())),
            _ => Err(Error::InvalidArgument {
                what: "filter".into(),
                message: format!("`{text}` is not `key=value` or `key!=value` (e.g. state=FAILED)"),
            }),
        }
    }

    /// The limit in force: the one set, else [`DEFAULT_LIMIT`](Self::DEFAULT_LIMIT).
    pub fn effective_limit(&self) -> usize {
        self.limit.unwrap_or(Self::DEFAULT_LIMIT)
    }

    /// Checks each filter's key against `keys` (the row's fields).
    pub(crate) fn check(&self, kind: StateKind) -> Result<()> {
        let keys = kind.keys();
        for f in &self.filters {
            if !keys.contains(&f.key.as_str()) {
                return Err(Error::InvalidArgument {
                    what: format!("filter key `{}` for {}", f.key, kind.as_str()),
                    message: format!("the keys of {} are: {}", kind.as_str(), keys.join(", ")),
                });
            }
        }
        Ok(())
    }

    /// Whether a row (as JSON-like fields) passes every filter.
    pub(crate) fn matches(&self, field: impl Fn(&str) -> Option<String>) -> bool {
        self.filters.iter().all(|f| {
            let v = field(&f.key).unwrap_or_default();
            v.eq_ignore_ascii_case(&f.value) == f.equal
        })
    }
}

/// What a state request lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StateKind {
    /// [`nodes`]
    Nodes,
    /// [`actors`]
    Actors,
    /// [`tasks`]
    Tasks,
    /// [`objects`]
    Objects,
    /// [`workers`]
    Workers,
}

impl StateKind {
    /// Its name: `nodes`, `actors`...
    pub fn as_str(self) -> &'static str {
        match self {
            StateKind::Nodes => "nodes",
            StateKind::Actors => "actors",
            StateKind::Tasks => "tasks",
            StateKind::Objects => "objects",
            StateKind::Workers => "workers",
        }
    }

    /// Parses `nodes`, `actors`, `tasks`, `objects` or `workers`.
    pub fn parse(text: &str) -> Result<StateKind> {
        Ok(match text {
            "nodes" => StateKind::Nodes,
            "actors" => StateKind::Actors,
            "tasks" => StateKind::Tasks,
            "objects" => StateKind::Objects,
            "workers" => StateKind::Workers,
            other => {
                return Err(Error::InvalidArgument {
                    what: format!("state resource `{other}`"),
                    message: "one of nodes, actors, tasks, objects, workers".into(),
                });
            }
        })
    }

    /// What `ray-rs summary WHAT` / `/api/summary/WHAT` counts: `tasks`, `objects`, else actors.
    #[cfg_attr(not(feature = "dashboard"), allow(dead_code))]
    pub(crate) fn from_summary(what: &str) -> StateKind {
        match what {
            "tasks" => StateKind::Tasks,
            "objects" => StateKind::Objects,
            _ => StateKind::Actors,
        }
    }

    /// The fields its rows can be filtered on.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            StateKind::Nodes => &["node_id", "state", "is_head"],
            StateKind::Actors => &["actor_id", "class_name", "state", "name", "node_id", "pid"],
            StateKind::Tasks => &[
                "task_id",
                "name",
                "kind",
                "state",
                "node_id",
                "worker_pid",
                "actor_id",
            ],
            StateKind::Objects => &["object_id", "state", "location", "producer"],
            StateKind::Workers => &["pid", "state", "node_id", "job_id", "task_id", "actor_id"],
        }
    }
}

/// The rows of one state request, as they travel from the node manager.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum StateRows {
    /// Nodes.
    Nodes(Vec<NodeRow>),
    /// Actors.
    Actors(Vec<ActorRow>),
    /// Tasks and actor calls.
    Tasks(Vec<TaskRow>),
    /// Objects.
    Objects(Vec<ObjectRow>),
    /// Worker processes.
    Workers(Vec<WorkerRow>),
}

/// A state request as it travels to the node manager.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StateQuery {
    pub kind: StateKind,
    pub options: ListOptions,
}

impl StateQuery {
    pub(crate) fn limit(&self) -> usize {
        self.options.effective_limit()
    }
}

fn query(kind: StateKind, options: &ListOptions) -> Result<StateRows> {
    options.check(kind)?;
    let q = StateQuery {
        kind,
        options: options.clone(),
    };
    match context::client()?.control(Control::State(Box::new(q)))? {
        ControlReply::State(rows) => Ok(*rows),
        other => Err(crate::introspect::unexpected(other)),
    }
}

macro_rules! list_fn {
    ($(#[$doc:meta])* $name:ident, $kind:ident, $row:ty) => {
        $(#[$doc])*
        pub fn $name(options: &ListOptions) -> Result<Vec<$row>> {
            match query(StateKind::$kind, options)? {
                StateRows::$kind(rows) => Ok(rows),
                other => Err(Error::InvalidArgument {
                    what: "answer of the node manager".into(),
                    message: format!("unexpected {other:?}"),
                }),
            }
        }
    };
}

list_fn!(
    /// The nodes (Ray's `ray list nodes`): resources total and free, object store use.
    nodes, Nodes, NodeRow
);
list_fn!(
    /// The actors, alive and dead (the last ones that died are kept): state, class, node,
    /// pid, restarts, why they died.
    actors, Actors, ActorRow
);
list_fn!(
    /// Tasks and actor calls, oldest first: the live ones, then the last finished ones (a
    /// failed one with its error). `ListOptions::new().filter("state", "FAILED")` lists the
    /// failures.
    tasks, Tasks, TaskRow
);
list_fn!(
    /// The objects in the node's directory: state, size, where the bytes are, who holds them.
    objects, Objects, ObjectRow
);
list_fn!(
    /// The worker processes, and what each runs.
    workers, Workers, WorkerRow
);

// Summaries: rows counted by name and state.
#[path = "state_summary.rs"]
mod summary;
pub use summary::*;

/// Writes every task and actor call the node knows (running ones, and the last finished ones)
/// to `path` as Chrome trace-event JSON, which Perfetto (ui.perfetto.dev) and
/// `chrome://tracing` load: one process per node, one thread per worker process, one complete
/// event (`"ph": "X"`) per call with its state, attempts and error as arguments (Ray's
/// `ray.timeline`).
pub fn timeline(path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let rows = tasks(&ListOptions::new().limit(usize::MAX))?;
    let json = timeline_json(&rows, now_us());
    std::fs::write(path, json)
        .map_err(|e| Error::io(format!("writing the timeline to {}", path.display()), e))
}

/// The URL of the dashboard this process serves (`Config::dashboard` or `RAY_RS_DASHBOARD`),
/// while it runs; `None` without one (or without the `dashboard` feature).
pub fn dashboard_url() -> Option<String> {
    #[cfg(feature = "dashboard")]
    {
        crate::dashboard::url()
    }
    #[cfg(not(feature = "dashboard"))]
    {
        None
    }
}

/// Microseconds since the Unix epoch.
pub(crate) fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Chrome trace-event JSON of `rows`; a call still running ends at `now_us`. Calls that never
/// started (queued) are left out.
pub fn timeline_json(rows: &[TaskRow], now_us: u64) -> String {
    use std::fmt::Write;
    let mut out = String::from("{\"displayTimeUnit\":\"ms\",\"traceEvents\":[");
    let mut first = true;
    let mut sep = |out: &mut String| {
        if !first {
            out.push(',');
        }
        first = false;
    };
    let mut lanes: BTreeMap<(u32, u32), String> = BTreeMap::new();
    let mut nodes: std::collections::BTreeSet<u32> = Default::default();
    for r in rows {
        let Some(start) = r.start_us else { continue };
        let pid = r.worker_pid.unwrap_or(0);
        nodes.insert(r.node_id);
        let lane = lanes
            .entry((r.node_id, pid))
            .or_insert_with(|| match &r.actor_id {
                Some(_) => format!("{} pid={pid}", r.name.split('.').next().unwrap_or("actor")),
                None => format!("worker pid={pid}"),
            });
        let _ = lane;
        let end = r.end_us.unwrap_or(now_us).max(start);
        sep(&mut out);
        let _ = write!(
            out,
            "{{\"name\":{},\"cat\":{},\"ph\":\"X\",\"ts\":{start},\"dur\":{},\"pid\":{},\"tid\":{pid},\"args\":{{\"task_id\":{},\"state\":{},\"attempts\":{}",
            json_str(&r.name),
            json_str(&r.kind),
            end - start,
            r.node_id,
            json_str(&r.task_id),
            json_str(r.state.as_str()),
            r.attempts,
        );
        if let Some(e) = &r.error {
            let _ = write!(out, ",\"error\":{}", json_str(e));
        }
        out.push_str("}}");
    }
    for n in nodes {
        sep(&mut out);
        let _ = write!(
            out,
            "{{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":{n},\"tid\":0,\"args\":{{\"name\":\"node {n}\"}}}}"
        );
    }
    for ((n, pid), lane) in lanes {
        sep(&mut out);
        let _ = write!(
            out,
            "{{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":{n},\"tid\":{pid},\"args\":{{\"name\":{}}}}}",
            json_str(&lane)
        );
    }
    out.push_str("]}");
    out
}

/// `s` as a JSON string literal.
pub(crate) fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A row's fields by name, as text (what filters compare).
pub(crate) trait Fields {
    fn field(&self, key: &str) -> Option<String>;
}

fn opt<T: ToString>(v: &Option<T>) -> Option<String> {
    v.as_ref().map(|x| x.to_string())
}

impl Fields for TaskRow {
    fn field(&self, key: &str) -> Option<String> {
        Some(match key {
            "task_id" => self.task_id.clone(),
            "name" => self.name.clone(),
            "kind" => self.kind.clone(),
            "state" => self.state.as_str().into(),
            "node_id" => self.node_id.to_string(),
            "worker_pid" => return opt(&self.worker_pid),
            "actor_id" => return opt(&self.actor_id),
            _ => return None,
        })
    }
}

impl Fields for ActorRow {
    fn field(&self, key: &str) -> Option<String> {
        Some(match key {
            "actor_id" => self.actor_id.clone(),
            "class_name" => self.class_name.clone(),
            "state" => self.state.clone(),
            "name" => return self.name.clone(),
            "node_id" => self.node_id.to_string(),
            "pid" => return opt(&self.pid),
            _ => return None,
        })
    }
}

impl Fields for ObjectRow {
    fn field(&self, key: &str) -> Option<String> {
        Some(match key {
            "object_id" => self.object_id.clone(),
            "state" => self.state.clone(),
            "location" => self.location.clone(),
            "producer" => return self.producer.clone(),
            _ => return None,
        })
    }
}

impl Fields for WorkerRow {
    fn field(&self, key: &str) -> Option<String> {
        Some(match key {
            "pid" => self.pid.to_string(),
            "state" => self.state.clone(),
            "node_id" => self.node_id.to_string(),
            "job_id" => self.job_id.clone(),
            "task_id" => return self.task_id.clone(),
            "actor_id" => return self.actor_id.clone(),
            _ => return None,
        })
    }
}

impl Fields for NodeRow {
    fn field(&self, key: &str) -> Option<String> {
        Some(match key {
            "node_id" => self.node_id.to_string(),
            "state" => self.state.clone(),
            "is_head" => self.is_head.to_string(),
            _ => return None,
        })
    }
}
