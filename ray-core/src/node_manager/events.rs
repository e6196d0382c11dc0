//! What the state API and the timeline read: a bounded ring of finished tasks and actor calls
//! (and of actors that left the table), and the rows built from the live tables on request.
//!
//! Recording costs no allocation per task: a finished task's record takes the function name
//! out of its entry (which is dropped anyway), times are the `now_us` the runtime sets before
//! each handler, and the oldest record leaves when the ring is full. Only failures format
//! their error. No I/O here, like the rest of the state machine.

use super::actors::ActorState;
use super::objects::ObjState;
use super::state::NodeState;
use super::tasks::TaskState;
use super::workers::WorkerState;
use crate::codec::Data;
use crate::error::Error;
use crate::ids::{ActorId, ObjectId, ProcId};
use crate::state::{
    ActorRow, Fields, NodeRow, ObjectRow, StateKind, StateQuery, StateRows, TaskRow, TaskStatus,
    WorkerRow,
};
use std::collections::{BTreeMap, VecDeque};

/// A task or actor call that ended.
pub(crate) struct FinishedTask {
    pub task: ObjectId,
    /// The function's full path, or the method's name (with `actor`).
    pub name: String,
    pub actor: Option<ActorId>,
    pub error: Option<String>,
    pub submitted_us: u64,
    /// 0: never started.
    pub started_us: u64,
    pub ended_us: u64,
    pub pid: u32,
    pub attempts: u32,
    /// The peer it was sent to, for a task that ran on another node.
    pub ran_on: Option<crate::ids::NodeId>,
}

/// When a live task or call was submitted and started, and where.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Timing {
    pub submitted_us: u64,
    /// 0: not started.
    pub started_us: u64,
    pub pid: u32,
}

/// Finished tasks and calls, and actors that left the actor table, newest last.
pub(crate) struct TaskEvents {
    finished: VecDeque<FinishedTask>,
    capacity: usize,
    dead_actors: VecDeque<ActorRow>,
    /// Classes of actors, kept after they leave (for naming their calls).
    classes: BTreeMap<ActorId, String>,
    /// Counts since the node started, by outcome (for metrics).
    pub finished_total: u64,
    pub failed_total: u64,
}

impl Default for TaskEvents {
    fn default() -> Self {
        TaskEvents::new(crate::state::DEFAULT_TASK_EVENTS_MAX)
    }
}

impl TaskEvents {
    pub(crate) fn new(capacity: usize) -> Self {
        TaskEvents {
            finished: VecDeque::new(),
            capacity,
            dead_actors: VecDeque::new(),
            classes: BTreeMap::new(),
            finished_total: 0,
            failed_total: 0,
        }
    }

    pub(crate) fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
        while self.finished.len() > capacity {
            self.finished.pop_front();
        }
    }

    pub(crate) fn push(&mut self, t: FinishedTask) {
        match t.error {
            Some(_) => self.failed_total += 1,
            None => self.finished_total += 1,
        }
        if self.capacity == 0 {
            return;
        }
        if self.finished.len() >= self.capacity {
            self.finished.pop_front();
        }
        self.finished.push_back(t);
    }

    /// An actor left the table: its last row is kept (as many as finished tasks, at most
    /// 1000).
    pub(crate) fn actor_gone(&mut self, row: ActorRow, id: ActorId) {
        if self.dead_actors.len() >= self.capacity.min(1000) {
            if let Some(old) = self.dead_actors.pop_front() {
                let _ = old;
            }
        }
        self.classes.insert(id, row.class_name.clone());
        if self.classes.len() > 4 * self.capacity.clamp(1, 1000) {
            // Forget the oldest ids' classes (their calls then show the method alone).
            let first = *self.classes.keys().next().expect("non-empty");
            self.classes.remove(&first);
        }
        self.dead_actors.push_back(row);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.finished.len()
    }
}

fn error_text(e: &Error) -> String {
    e.to_string()
}

fn short(name: &str) -> &str {
    super::short_name(name)
}

/// How a call ended, for [`NodeState::record_finished`].
pub(crate) struct Ended<'a> {
    pub attempts: u32,
    pub error: Option<&'a Error>,
    /// The peer it ran on, for a task sent to another node.
    pub ran_on: Option<crate::ids::NodeId>,
}

impl NodeState {
    /// Records a call that ended (its entry already taken out).
    pub(super) fn record_finished(
        &mut self,
        task: ObjectId,
        name: String,
        actor: Option<ActorId>,
        timing: Timing,
        ended: Ended<'_>,
    ) {
        let Ended {
            attempts,
            error,
            ran_on,
        } = ended;
        let t = FinishedTask {
            task,
            name,
            actor,
            error: error.map(error_text),
            submitted_us: timing.submitted_us,
            started_us: timing.started_us,
            ended_us: self.now_us,
            pid: timing.pid,
            attempts,
            ran_on,
        };
        self.events.push(t);
    }

    /// The pid of a worker, 0 if unknown.
    pub(super) fn pid_of(&self, proc: ProcId) -> u32 {
        self.workers.get(proc).map(|w| w.pid).unwrap_or(0)
    }

    fn class_of(&self, actor: ActorId) -> Option<&str> {
        match self.actors.get(actor) {
            Some(e) => Some(short(&e.class)),
            None => self.events.classes.get(&actor).map(|c| short(c)),
        }
    }

    fn actor_row(&self, id: ActorId, names: &BTreeMap<ActorId, String>) -> Option<ActorRow> {
        let e = self.actors.get(id)?;
        let (state, proc, cause) = match &e.state {
            ActorState::Pending if e.restarts() > 0 => ("RESTARTING", None, None),
            ActorState::Pending => ("PENDING_CREATION", None, None),
            ActorState::Starting(p) | ActorState::Creating(p) if e.restarts() > 0 => {
                ("RESTARTING", Some(*p), None)
            }
            ActorState::Starting(p) | ActorState::Creating(p) => {
                ("PENDING_CREATION", Some(*p), None)
            }
            ActorState::Alive(p) => ("ALIVE", Some(*p), None),
            ActorState::Dead(err) => ("DEAD", None, Some(error_text(err))),
            ActorState::Remote(_) | ActorState::Locating => ("REMOTE", None, None),
        };
        let node_id = match &e.state {
            ActorState::Remote(n) => n.as_u32(),
            _ => self.node.as_u32(),
        };
        let pid = proc.map(|p| self.pid_of(p)).filter(|p| *p != 0);
        Some(ActorRow {
            actor_id: id.to_string(),
            class_name: short(&e.class).to_string(),
            state: state.to_string(),
            name: names.get(&id).cloned(),
            node_id,
            pid,
            restarts: e.restarts(),
            max_restarts: e.max_restarts(),
            resources: request_map(&e.resources),
            death_cause: cause,
        })
    }

    /// The row an actor leaving the table leaves behind.
    pub(super) fn remember_actor(&mut self, id: ActorId) {
        let names = BTreeMap::new();
        if let Some(mut row) = self.actor_row(id, &names) {
            if row.state != "DEAD" {
                row.state = "DEAD".into();
                row.death_cause
                    .get_or_insert_with(|| "out of scope: every handle was dropped".into());
            }
            row.pid = None;
            self.events.actor_gone(row, id);
        }
    }

    fn names_by_actor(&self) -> BTreeMap<ActorId, String> {
        let mut out = BTreeMap::new();
        for n in self.names.table.list(None) {
            if let Some((id, _)) = self.names.table.lookup(&n) {
                out.insert(id, n.name);
            }
        }
        out
    }

    /// The rows a state request asks for, filtered and limited.
    pub(crate) fn state_rows(&self, q: &StateQuery) -> StateRows {
        let limit = q.limit();
        let opts = &q.options;
        macro_rules! keep {
            ($rows:expr) => {{
                let mut out = Vec::new();
                for r in $rows {
                    if out.len() >= limit {
                        break;
                    }
                    if opts.matches(|k| r.field(k)) {
                        out.push(r);
                    }
                }
                out
            }};
        }
        match q.kind {
            StateKind::Nodes => StateRows::Nodes(keep!(self.node_rows())),
            StateKind::Actors => {
                let names = self.names_by_actor();
                let mut ids: Vec<ActorId> = self.actors.iter().map(|(id, _)| *id).collect();
                ids.sort();
                let live = ids.into_iter().filter_map(|id| self.actor_row(id, &names));
                let gone = self.events.dead_actors.iter().rev().cloned();
                StateRows::Actors(keep!(live.chain(gone)))
            }
            StateKind::Tasks => StateRows::Tasks(keep!(self.task_rows())),
            StateKind::Objects => StateRows::Objects(keep!(self.object_rows())),
            StateKind::Workers => StateRows::Workers(keep!(self.worker_rows())),
        }
    }

    fn node_rows(&self) -> Vec<NodeRow> {
        let amounts = self.resources.amounts();
        let (spilled, _) = self.spill_stats();
        let mut rows = vec![NodeRow {
            node_id: self.node.as_u32(),
            state: if self.shutting_down { "DEAD" } else { "ALIVE" }.into(),
            is_head: true,
            resources_total: amounts
                .iter()
                .filter(|(_, t, _)| *t > 0.0)
                .map(|(n, t, _)| (n.clone(), *t))
                .collect(),
            resources_available: amounts
                .iter()
                .filter(|(_, t, _)| *t > 0.0)
                .map(|(n, _, f)| (n.clone(), *f))
                .collect(),
            object_store_used_bytes: self.store.used(),
            object_store_capacity_bytes: self.store.capacity(),
            spilled_objects: spilled,
            workers: self.worker_count(),
        }];
        for (node, total, free) in self.cluster.peer_resources() {
            rows.push(NodeRow {
                node_id: node.as_u32(),
                state: "ALIVE".into(),
                is_head: false,
                resources_total: total,
                resources_available: free,
                object_store_used_bytes: 0,
                object_store_capacity_bytes: 0,
                spilled_objects: 0,
                workers: 0,
            });
        }
        rows
    }

    /// Worker processes (not drivers or peer sessions).
    pub(crate) fn worker_count(&self) -> usize {
        self.workers
            .procs()
            .into_iter()
            .filter(|p| {
                !matches!(
                    self.workers.state(*p),
                    Some(WorkerState::Driver | WorkerState::Peer) | None
                )
            })
            .count()
    }

    /// Live tasks and calls (by submission), then finished ones (oldest first).
    fn task_rows(&self) -> Vec<TaskRow> {
        let node = self.node.as_u32();
        let mut live: Vec<TaskRow> = Vec::new();
        for (id, te) in self.tasks.iter() {
            let (state, node_id) = match &te.state {
                TaskState::WaitingDeps => (TaskStatus::PendingArgsAvail, node),
                TaskState::Queued => (TaskStatus::PendingNodeAssignment, node),
                TaskState::Fetching { .. } => (TaskStatus::PendingArgsFetch, node),
                TaskState::Assigned { .. } if te.timing.started_us == 0 => {
                    (TaskStatus::PendingNodeAssignment, node)
                }
                TaskState::Assigned { .. } => (TaskStatus::Running, node),
                TaskState::Forwarded { node } => (TaskStatus::SubmittedToNode, node.as_u32()),
            };
            live.push(TaskRow {
                task_id: id.to_string(),
                name: short(&te.spec.function).to_string(),
                kind: "NORMAL_TASK".into(),
                state,
                node_id,
                worker_pid: Some(te.timing.pid).filter(|p| *p != 0),
                actor_id: None,
                attempts: te.attempts(),
                submitted_us: te.timing.submitted_us,
                start_us: Some(te.timing.started_us).filter(|t| *t != 0),
                end_us: None,
                error: None,
            });
        }
        for (actor, e) in self.actors.iter() {
            let class = short(&e.class);
            let pid = match e.state {
                ActorState::Alive(p) => Some(self.pid_of(p)).filter(|p| *p != 0),
                _ => None,
            };
            for (task, method, timing, running) in e.calls() {
                live.push(TaskRow {
                    task_id: task.to_string(),
                    name: format!("{class}.{method}"),
                    kind: "ACTOR_TASK".into(),
                    state: if running {
                        TaskStatus::Running
                    } else {
                        TaskStatus::PendingActorTaskOrdering
                    },
                    node_id: node,
                    worker_pid: if running { pid } else { None },
                    actor_id: Some(actor.to_string()),
                    attempts: u32::from(running),
                    submitted_us: timing.submitted_us,
                    start_us: Some(timing.started_us).filter(|t| *t != 0),
                    end_us: None,
                    error: None,
                });
            }
        }
        live.sort_by_key(|r| r.submitted_us);
        for f in &self.events.finished {
            let name = match f.actor.and_then(|a| self.class_of(a)) {
                Some(class) => format!("{class}.{}", f.name),
                None => short(&f.name).to_string(),
            };
            live.push(TaskRow {
                task_id: f.task.to_string(),
                name,
                kind: if f.actor.is_some() {
                    "ACTOR_TASK"
                } else {
                    "NORMAL_TASK"
                }
                .into(),
                state: if f.error.is_some() {
                    TaskStatus::Failed
                } else {
                    TaskStatus::Finished
                },
                node_id: f.ran_on.map_or(node, |n| n.as_u32()),
                worker_pid: Some(f.pid).filter(|p| *p != 0),
                actor_id: f.actor.map(|a| a.to_string()),
                attempts: f.attempts,
                submitted_us: f.submitted_us,
                start_us: Some(f.started_us).filter(|t| *t != 0),
                end_us: Some(f.ended_us),
                error: f.error.clone(),
            });
        }
        live
    }

    fn object_rows(&self) -> Vec<ObjectRow> {
        let mut rows: Vec<ObjectRow> = self
            .objects
            .iter()
            .map(|(id, e)| {
                let (state, location, size, error) = match &e.state {
                    ObjState::Pending => ("PENDING", "-".to_string(), None, None),
                    ObjState::Ready(v) => {
                        let loc = match &v.data {
                            Data::Inline(_) => "inline".to_string(),
                            Data::Shm { .. } => "store".to_string(),
                            Data::Remote { node, .. } => node.to_string(),
                        };
                        ("READY", loc, Some(v.len()), None)
                    }
                    ObjState::Spilled { len, .. } => {
                        ("SPILLED", "spilled".into(), Some(*len), None)
                    }
                    ObjState::Failed(err) => ("FAILED", "-".into(), None, Some(error_text(err))),
                };
                let holders = e
                    .holders
                    .procs()
                    .map(|p| {
                        if p == self.driver() {
                            "driver".to_string()
                        } else {
                            match self.workers.get(p) {
                                Some(w) if w.pid != 0 => format!("pid {}", w.pid),
                                _ => p.to_string(),
                            }
                        }
                    })
                    .collect();
                ObjectRow {
                    object_id: id.to_string(),
                    state: state.into(),
                    location,
                    size_bytes: size,
                    holders,
                    pins: e.pins,
                    producer: if matches!(e.state, ObjState::Pending) {
                        self.producer_of(*id)
                    } else {
                        None
                    },
                    error,
                }
            })
            .collect();
        rows.sort_by(|a, b| {
            b.size_bytes
                .cmp(&a.size_bytes)
                .then(a.object_id.cmp(&b.object_id))
        });
        rows
    }

    fn worker_rows(&self) -> Vec<WorkerRow> {
        let mut procs = self.workers.procs();
        procs.sort();
        procs
            .into_iter()
            .filter_map(|p| {
                let w = self.workers.get(p)?;
                let st = self.workers.state(p)?;
                let (state, task, actor) = match st {
                    WorkerState::Starting(_) => ("STARTING", None, None),
                    WorkerState::Idle => ("IDLE", None, None),
                    WorkerState::Busy(t) => ("BUSY", Some(t.to_string()), None),
                    WorkerState::Actor(a) => ("ACTOR", None, Some(a.to_string())),
                    WorkerState::Exiting => ("EXITING", None, None),
                    WorkerState::Driver => ("DRIVER", None, None),
                    WorkerState::Peer => ("PEER", None, None),
                };
                Some(WorkerRow {
                    pid: w.pid,
                    state: state.into(),
                    node_id: self.node.as_u32(),
                    job_id: format!("{}.{}", w.job.0.node.0, w.job.0.index),
                    gpu_ids: w.gpu_ids.clone(),
                    task_id: task,
                    actor_id: actor,
                })
            })
            .collect()
    }
}

/// What a request asks for, by resource name.
fn request_map(r: &crate::resources::ResourceRequest) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    if !r.cpu.is_zero() {
        m.insert("CPU".to_string(), r.cpu.as_f64());
    }
    if !r.gpu.is_zero() {
        m.insert("GPU".to_string(), r.gpu.as_f64());
    }
    for (n, a) in &r.custom {
        m.insert(n.clone(), a.as_f64());
    }
    m
}
