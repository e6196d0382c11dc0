//! The node manager (Ray's raylet) of a single node, with the object directory.
//!
//! It owns the node's resources, the scheduling queue, the worker pool, the actors and the
//! object directory. In single-node mode it runs inside the driver process: the driver's API
//! calls it directly, workers reach it through their socket (`transport`) with the messages in
//! `protocol`. All state sits behind one lock; side effects that leave the process (messages,
//! process spawns, kills, timers) are queued without blocking.

pub(crate) mod objects;
mod scheduler;
pub(crate) mod spawn;
pub(crate) mod store;

use crate::codec::{Data, Value};
use crate::error::{Error, Result};
use crate::ids::{ActorId, DRIVER, IdMap, ObjectId, ProcIndex, RefId};
use crate::protocol::{ActorSpec, ActorTaskSpec, Arg, Execute, TaskSpec, ToHead, ToWorker};
use crate::resources::{Allocation, Amount, NodeResources, ResourceRequest};
use crate::slot::Slot;
use crate::transport::Outbox;
use objects::{Holders, ObjState, ObjectDirectory, ObjectEntry, Waiter};
use scheduler::ReadyQueue;
use spawn::SpawnRequest;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Duration;

/// Settings and channels fixed for the life of a node manager.
pub(crate) struct HeadShared {
    /// Name of the abstract socket workers connect to.
    pub socket: String,
    pub token: u64,
    pub fingerprint: u64,
    pub max_idle_workers: usize,
    /// Counts the GPUs when `Config::num_gpus` was not given.
    pub gpu_detector: Option<fn() -> usize>,
    pub rt: tokio::runtime::Handle,
    pub spawn_tx: Mutex<Option<std::sync::mpsc::Sender<SpawnRequest>>>,
}

pub(crate) struct Head {
    state: Mutex<HeadState>,
    /// Signalled whenever a worker process is gone (for shutdown).
    workers_changed: Condvar,
    pub(crate) shared: Arc<HeadShared>,
}

/// Process indices are never reused within one driver process, even across runtimes, so ids
/// made by workers of an earlier runtime cannot collide with new ones.
static NEXT_PROC: AtomicU32 = AtomicU32::new(1);

struct TaskEntry {
    spec: TaskSpec,
    missing_deps: usize,
    attempts: u32,
    state: TaskState,
}

enum TaskState {
    WaitingDeps,
    Queued,
    Assigned { alloc: Allocation },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Assignment {
    Task(ObjectId),
    Actor(ActorId),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum WorkerState {
    Starting(Option<Assignment>),
    Idle,
    Busy(ObjectId),
    Actor(ActorId),
    Exiting,
}

struct WorkerEntry {
    pid: u32,
    gpu_ids: Vec<usize>,
    conn: Option<Outbox>,
    state: WorkerState,
    killer: Arc<tokio::sync::Notify>,
    /// CPU held by what the worker runs, lent back to the node while it blocks in `get`.
    cpu_held: Amount,
    blocked: u32,
    /// Its socket is open: frames it sent may still be unread.
    conn_open: bool,
    /// The process ended, but its socket is still being read: the exit is handled at EOF so
    /// that everything the worker sent before dying counts.
    exit_cause: Option<String>,
    /// Arguments of calls that failed while this process was still running them (a killed
    /// actor): they stay pinned until the process is gone, since it may still be reading them.
    deferred_unpin: Vec<Arg>,
}

struct ActorCall {
    task: ObjectId,
    method: String,
    args: Vec<Arg>,
}

#[derive(Debug)]
enum ActorState {
    Pending,
    Starting(ProcIndex),
    Creating(ProcIndex),
    Alive(ProcIndex),
    Dead(Error),
}

struct ActorEntry {
    class: String,
    resources: ResourceRequest,
    max_concurrency: u32,
    ctor_args: Option<Vec<Arg>>,
    state: ActorState,
    alloc: Option<Allocation>,
    callers: Vec<(ProcIndex, VecDeque<ActorCall>)>,
    inflight: IdMap<ObjectId, ActorCall>,
    holders: Holders,
    pins: u32,
    out_of_scope: bool,
    /// Restarts allowed after its process dies, and used so far.
    max_restarts: u32,
    restarts: u32,
}

impl ActorEntry {
    fn drained(&self) -> bool {
        self.inflight.is_empty() && self.callers.iter().all(|(_, q)| q.is_empty())
    }
}

pub(crate) enum Reply {
    /// A driver thread blocked in `get`/`wait`: it reads the directory itself once woken.
    Local(Arc<Slot<()>>),
    /// A driver future awaiting one object.
    Async(Arc<Slot<Result<Value>>>),
    /// A worker: answer with a message.
    Remote { proc: ProcIndex, req: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ReqKind {
    Get,
    Wait,
}

struct Request {
    ids: Vec<ObjectId>,
    kind: ReqKind,
    need: usize,
    reply: Reply,
    /// The worker whose CPU is lent while it waits.
    blocked_worker: Option<ProcIndex>,
    timeout: Option<Duration>,
}

pub(crate) struct HeadState {
    objects: ObjectDirectory,
    resources: NodeResources,
    tasks: IdMap<ObjectId, TaskEntry>,
    queue: ReadyQueue,
    workers: IdMap<ProcIndex, WorkerEntry>,
    idle: HashMap<Vec<usize>, Vec<ProcIndex>>,
    prestarted: HashMap<Vec<usize>, Vec<ProcIndex>>,
    actors: IdMap<ActorId, ActorEntry>,
    pending_actors: VecDeque<ActorId>,
    requests: IdMap<u64, Request>,
    next_request: u64,
    shutting_down: bool,
    gpu_detection_started: bool,
    pub(crate) store: store::Store,
    spawn_failures: u32,
    last_spawn_error: Option<String>,
    scheduling: bool,
    reschedule: bool,
    shared: Arc<HeadShared>,
    weak: Weak<Head>,
}

pub(crate) fn short_name(name: &str) -> &str {
    name.rsplit("::").next().unwrap_or(name)
}

fn actor_died(class: &str, cause: impl Into<String>) -> Error {
    Error::ActorDied {
        actor: short_name(class).to_string(),
        cause: cause.into(),
    }
}

impl Head {
    pub(crate) fn new(
        resources: NodeResources,
        store: store::Store,
        shared: Arc<HeadShared>,
    ) -> Arc<Head> {
        Arc::new_cyclic(|weak| Head {
            state: Mutex::new(HeadState {
                objects: ObjectDirectory::default(),
                resources,
                tasks: IdMap::default(),
                queue: ReadyQueue::default(),
                workers: IdMap::default(),
                idle: HashMap::new(),
                prestarted: HashMap::new(),
                actors: IdMap::default(),
                pending_actors: VecDeque::new(),
                requests: IdMap::default(),
                next_request: 1,
                shutting_down: false,
                gpu_detection_started: false,
                store,
                spawn_failures: 0,
                last_spawn_error: None,
                scheduling: false,
                reschedule: false,
                shared: shared.clone(),
                weak: weak.clone(),
            }),
            workers_changed: Condvar::new(),
            shared,
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, HeadState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A message from worker `from`.
    pub(crate) fn handle(&self, from: ProcIndex, msg: ToHead) {
        let mut st = self.lock();
        if !st.workers.contains_key(&from) {
            // The worker is gone and everything it held was released: a message it sent just
            // before dying must not create references nobody will ever drop.
            return;
        }
        match msg {
            ToHead::Register { .. } => tracing::warn!("worker {from} registered twice"),
            ToHead::SubmitTask(spec) => st.submit_task(from, spec),
            ToHead::CreateActor(spec) => st.create_actor(from, spec),
            ToHead::SubmitActorTask(spec) => st.submit_actor_task(from, spec),
            ToHead::TaskDone { task, result } => st.task_done(from, task, result),
            ToHead::ActorCreated { actor, result } => st.actor_created(from, actor, result),
            ToHead::Put { id, result } => st.put(from, id, result),
            ToHead::Get {
                req,
                ids,
                timeout_ms,
            } => {
                st.add_request(
                    ids,
                    ReqKind::Get,
                    0,
                    Reply::Remote { proc: from, req },
                    timeout_ms.map(Duration::from_millis),
                );
            }
            ToHead::Wait {
                req,
                ids,
                num_returns,
                timeout_ms,
            } => {
                st.add_request(
                    ids,
                    ReqKind::Wait,
                    num_returns,
                    Reply::Remote { proc: from, req },
                    timeout_ms.map(Duration::from_millis),
                );
            }
            ToHead::AddRef(id) => st.add_ref(from, id),
            ToHead::DelRef(id) => st.del_ref(from, id),
            ToHead::KillActor { actor } => st.kill_actor(actor, "killed by ray::kill"),
            ToHead::Alloc { req, size } => {
                let result = st.alloc(from, size);
                if let Some(conn) = st.workers.get(&from).and_then(|w| w.conn.as_ref()) {
                    conn.send(&ToWorker::Allocated { req, result });
                }
            }
            ToHead::Release(ids) => st.release_mapped(from, &ids),
            ToHead::CancelGet { req } => {
                let key = st.requests.iter().find_map(|(k, r)| match r.reply {
                    Reply::Remote { proc, req: q } if proc == from && q == req => Some(*k),
                    _ => None,
                });
                if let Some(k) = key {
                    st.remove_request(k);
                    let reply = ToWorker::GetReply {
                        req,
                        result: Err(Error::shut_down()),
                    };
                    if let Some(conn) = st.workers.get(&from).and_then(|w| w.conn.as_ref()) {
                        conn.send(&reply);
                    }
                }
            }
        }
    }

    /// First message of a connection. Returns false if the worker was refused.
    pub(crate) fn register(
        &self,
        proc: ProcIndex,
        pid: u32,
        token: u64,
        fingerprint: u64,
        conn: Outbox,
    ) -> bool {
        let mut st = self.lock();
        st.register(proc, pid, token, fingerprint, conn)
    }

    /// A worker's connection closed, after every frame it sent was handled. If its process has
    /// already exited, handle that now; otherwise make sure it goes (its monitor reports it).
    pub(crate) fn disconnected(&self, proc: ProcIndex) {
        let mut st = self.lock();
        let Some(w) = st.workers.get_mut(&proc) else {
            return;
        };
        w.conn_open = false;
        match w.exit_cause.take() {
            Some(cause) => {
                st.worker_exited(proc, cause);
                drop(st);
                self.workers_changed.notify_all();
            }
            None => w.killer.notify_one(),
        }
    }

    pub(crate) fn set_pid(&self, proc: ProcIndex, pid: u32) {
        if let Some(w) = self.lock().workers.get_mut(&proc) {
            w.pid = pid;
        }
    }

    /// A worker process ended. Its exit is handled once its socket has been read to the end
    /// (the kernel closes it when the process dies), or after two seconds at the latest.
    pub(crate) fn worker_exited(&self, proc: ProcIndex, cause: String) {
        let mut st = self.lock();
        if let Some(w) = st.workers.get_mut(&proc) {
            if w.conn_open {
                w.exit_cause = Some(cause);
                let weak = st.weak.clone();
                self.shared.rt.spawn(async move {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    if let Some(head) = weak.upgrade() {
                        head.disconnected(proc);
                    }
                });
                return;
            }
        }
        st.worker_exited(proc, cause);
        drop(st);
        self.workers_changed.notify_all();
    }

    pub(crate) fn expire_request(&self, key: u64) {
        self.lock().expire_request(key);
    }

    /// Driver `get`: blocks until every object is done.
    pub(crate) fn get_local(
        &self,
        ids: &[ObjectId],
        timeout: Option<Duration>,
    ) -> Result<Vec<Value>> {
        let collect = |st: &mut HeadState| {
            if st.shutting_down {
                return Some(Err(Error::shut_down()));
            }
            st.collect_values(ids, Some(DRIVER_PROC)).transpose()
        };
        self.block_local(ids, ReqKind::Get, 0, timeout, collect)
            .unwrap_or_else(|| {
                Err(Error::Timeout {
                    what: describe_ids(ids),
                    timeout: timeout.unwrap_or_default(),
                })
            })
    }

    /// Driver `wait`: ready flags once `num_returns` are ready or time is up.
    pub(crate) fn wait_local(
        &self,
        ids: &[ObjectId],
        num_returns: usize,
        timeout: Option<Duration>,
    ) -> Vec<bool> {
        let enough = |st: &mut HeadState| {
            let flags = st.ready_flags(ids);
            (flags.iter().filter(|f| **f).count() >= num_returns || st.shutting_down)
                .then_some(flags)
        };
        self.block_local(ids, ReqKind::Wait, num_returns, timeout, enough)
            .unwrap_or_else(|| self.lock().ready_flags(ids))
    }

    /// Blocks a driver thread until `done` gives an answer: checks at once, else registers a
    /// request on `ids` and checks again when it completes, times out or the node shuts down.
    /// `None` when time ran out.
    fn block_local<R>(
        &self,
        ids: &[ObjectId],
        kind: ReqKind,
        num_returns: usize,
        timeout: Option<Duration>,
        mut done: impl FnMut(&mut HeadState) -> Option<R>,
    ) -> Option<R> {
        let (slot, key) = {
            let mut st = self.lock();
            if let Some(r) = done(&mut st) {
                return Some(r);
            }
            let slot = Arc::new(Slot::new());
            let key = st.add_request(
                ids.to_vec(),
                kind,
                num_returns,
                Reply::Local(slot.clone()),
                None,
            );
            (slot, key)
        };
        let woken = slot.wait(timeout).is_some();
        let mut st = self.lock();
        if !woken {
            if let Some(key) = key {
                st.remove_request(key);
            }
        }
        done(&mut st)
    }

    /// Driver future on one object: its slot, and the request to cancel (0 if none).
    pub(crate) fn get_async(&self, id: ObjectId) -> (Arc<Slot<Result<Value>>>, u64) {
        let mut st = self.lock();
        let slot = Arc::new(Slot::new());
        if st.shutting_down {
            slot.fill(Err(Error::shut_down()));
            return (slot, 0);
        }
        let key = match st.collect_values(&[id], Some(DRIVER_PROC)) {
            Ok(Some(mut v)) => {
                slot.fill(Ok(v.pop().expect("one value")));
                0
            }
            Err(e) => {
                slot.fill(Err(e));
                0
            }
            Ok(None) => st
                .add_request(vec![id], ReqKind::Get, 0, Reply::Async(slot.clone()), None)
                .unwrap_or(0),
        };
        (slot, key)
    }

    /// A driver future was dropped: forget its request.
    pub(crate) fn cancel_local(&self, key: u64) {
        if key != 0 {
            self.lock().remove_request(key);
        }
    }

    /// Starts idle workers ahead of the first task, as Ray does.
    pub(crate) fn prestart(&self, n: usize) {
        let mut st = self.lock();
        for _ in 0..n {
            let proc = st.start_worker(Vec::new(), None);
            st.prestarted.entry(Vec::new()).or_default().push(proc);
        }
    }

    /// Stops everything: tells workers to exit, waits up to `grace`, then kills the rest.
    pub(crate) fn shutdown(&self, grace: Duration) {
        let deadline = std::time::Instant::now() + grace;
        let mut st = self.lock();
        st.begin_shutdown();
        loop {
            if st.workers.is_empty() {
                return;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                break;
            }
            st = self
                .workers_changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        for w in st.workers.values() {
            w.killer.notify_one();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !st.workers.is_empty() {
            let now = std::time::Instant::now();
            if now >= deadline {
                tracing::warn!(
                    "{} worker(s) did not exit after being killed",
                    st.workers.len()
                );
                return;
            }
            st = self
                .workers_changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Live objects and their bytes (for tests and stats).
    pub(crate) fn object_stats(&self) -> (usize, u64) {
        let st = self.lock();
        (st.objects.len(), st.objects.bytes())
    }

    /// The GPU count is known: judge the GPU requests that waited for it.
    pub(crate) fn gpus_detected(&self, n: usize) {
        let mut st = self.lock();
        st.resources.set_gpus(n);
        tracing::info!("detected {n} GPU(s)");
        let waiting: Vec<ObjectId> = st
            .tasks
            .iter()
            .filter(|(_, t)| {
                !matches!(t.state, TaskState::Assigned { .. }) && !t.spec.resources.gpu.is_zero()
            })
            .map(|(id, _)| *id)
            .collect();
        for t in waiting {
            let te = &st.tasks[&t];
            if let Err(missing) = st.resources.check_feasible(&te.spec.resources) {
                let err = Error::Infeasible {
                    name: te.spec.function.clone(),
                    requested: missing,
                    available: st.resources.describe_total(),
                };
                st.finish_task(t, Err(err));
            }
        }
        let HeadState { queue, tasks, .. } = &mut *st;
        queue.retain(|t| tasks.contains_key(t));
        let actors: Vec<ActorId> = st.pending_actors.iter().copied().collect();
        for a in actors {
            let entry = &st.actors[&a];
            if let Err(missing) = st.resources.check_feasible(&entry.resources) {
                let err = Error::Infeasible {
                    name: entry.class.clone(),
                    requested: missing,
                    available: st.resources.describe_total(),
                };
                st.actor_dead(a, err);
            }
        }
        st.schedule();
    }

    pub(crate) fn worker_pids(&self) -> Vec<u32> {
        self.lock()
            .workers
            .values()
            .map(|w| w.pid)
            .filter(|p| *p != 0)
            .collect()
    }
}

fn describe_ids(ids: &[ObjectId]) -> String {
    match ids {
        [one] => format!("object {one}"),
        many => format!("{} objects", many.len()),
    }
}

impl HeadState {
    // ----- submissions -------------------------------------------------------------------

    /// Counts GPUs in the background the first time something asks for one.
    fn need_gpus(&mut self, req: &ResourceRequest) {
        if req.gpu.is_zero() || self.resources.gpus_known() || self.gpu_detection_started {
            return;
        }
        self.gpu_detection_started = true;
        let Some(detect) = self.shared.gpu_detector else {
            self.resources.set_gpus(0);
            return;
        };
        let weak = self.weak.clone();
        let spawned = std::thread::Builder::new()
            .name("ray-gpu-detect".into())
            .spawn(move || {
                let n = detect();
                if let Some(head) = weak.upgrade() {
                    head.gpus_detected(n);
                }
            });
        if spawned.is_err() {
            self.resources.set_gpus(0);
        }
    }

    pub(crate) fn submit_task(&mut self, from: ProcIndex, spec: TaskSpec) {
        let task = spec.task;
        self.objects.create_pending(task, from);
        self.need_gpus(&spec.resources);
        if let Err(missing) = self.resources.check_feasible(&spec.resources) {
            let err = Error::Infeasible {
                name: spec.function.clone(),
                requested: missing,
                available: self.resources.describe_total(),
            };
            self.complete_object(task, Err(err));
            return;
        }
        if let Err(e) = self.pin_args(&spec.args) {
            self.complete_object(task, Err(e));
            return;
        }
        let missing_deps = self.register_deps(&spec.args, Waiter::Task(task));
        let state = if missing_deps == 0 {
            TaskState::Queued
        } else {
            TaskState::WaitingDeps
        };
        if missing_deps == 0 {
            self.queue.push(&spec.resources, task);
        }
        self.tasks.insert(
            task,
            TaskEntry {
                spec,
                missing_deps,
                attempts: 0,
                state,
            },
        );
        if missing_deps == 0 {
            self.schedule();
        }
    }

    pub(crate) fn create_actor(&mut self, from: ProcIndex, spec: ActorSpec) {
        let actor = spec.actor;
        self.need_gpus(&spec.resources);
        let mut entry = ActorEntry {
            class: spec.class,
            resources: spec.resources,
            max_concurrency: spec.max_concurrency,
            ctor_args: None,
            state: ActorState::Pending,
            alloc: None,
            callers: Vec::new(),
            inflight: IdMap::default(),
            holders: Holders::one(from),
            pins: 0,
            out_of_scope: false,
            max_restarts: spec.max_restarts,
            restarts: 0,
        };
        let dead = if let Some(e) = spec.invalid {
            Some(e)
        } else if let Err(missing) = self.resources.check_feasible(&entry.resources) {
            Some(Error::Infeasible {
                name: entry.class.clone(),
                requested: missing,
                available: self.resources.describe_total(),
            })
        } else {
            self.pin_args(&spec.args).err()
        };
        match dead {
            Some(e) => entry.state = ActorState::Dead(e),
            None => {
                entry.ctor_args = Some(spec.args);
                self.pending_actors.push_back(actor);
            }
        }
        self.actors.insert(actor, entry);
        self.schedule();
    }

    pub(crate) fn submit_actor_task(&mut self, from: ProcIndex, spec: ActorTaskSpec) {
        let task = spec.task;
        self.objects.create_pending(task, from);
        let dead = match self.actors.get(&spec.actor) {
            None => Some(Error::ActorDied {
                actor: format!("actor {}", spec.actor),
                cause: "no such actor: it exited or belongs to an earlier ray runtime".into(),
            }),
            Some(a) => match &a.state {
                ActorState::Dead(e) => Some(e.clone()),
                _ => None,
            },
        };
        if let Some(e) = dead {
            self.complete_object(task, Err(e));
            return;
        }
        if let Err(e) = self.pin_args(&spec.args) {
            self.complete_object(task, Err(e));
            return;
        }
        let call = ActorCall {
            task,
            method: spec.method,
            args: spec.args,
        };
        let entry = self.actors.get_mut(&spec.actor).expect("checked above");
        match entry.callers.iter_mut().find(|(p, _)| *p == from) {
            Some((_, q)) => q.push_back(call),
            None => entry.callers.push((from, VecDeque::from([call]))),
        }
        self.pump_actor(spec.actor);
    }

    pub(crate) fn put(&mut self, from: ProcIndex, id: ObjectId, result: Result<Value>) {
        self.objects.create_pending(id, from);
        self.complete_object(id, result);
    }

    // ----- references --------------------------------------------------------------------

    pub(crate) fn add_ref(&mut self, from: ProcIndex, id: RefId) {
        match id {
            RefId::Object(o) => {
                self.objects.add_holder(o, from);
            }
            RefId::Actor(a) => {
                if let Some(e) = self.actors.get_mut(&a) {
                    e.holders.add(from);
                }
            }
        }
    }

    pub(crate) fn del_ref(&mut self, from: ProcIndex, id: RefId) {
        match id {
            RefId::Object(o) => {
                if let Some(freed) = self.objects.remove_holder(o, from) {
                    self.object_freed(o, freed);
                }
            }
            RefId::Actor(a) => {
                if let Some(e) = self.actors.get_mut(&a) {
                    e.holders.remove(from);
                    self.check_actor_scope(a);
                }
            }
        }
    }

    fn pin_ref(&mut self, id: RefId) -> bool {
        match id {
            RefId::Object(o) => self.objects.pin(o),
            RefId::Actor(a) => match self.actors.get_mut(&a) {
                Some(e) => {
                    e.pins += 1;
                    true
                }
                None => false,
            },
        }
    }

    fn unpin_ref(&mut self, id: RefId) {
        match id {
            RefId::Object(o) => {
                if let Some(freed) = self.objects.unpin(o) {
                    self.object_freed(o, freed);
                }
            }
            RefId::Actor(a) => {
                if let Some(e) = self.actors.get_mut(&a) {
                    e.pins = e.pins.saturating_sub(1);
                    self.check_actor_scope(a);
                }
            }
        }
    }

    fn object_freed(&mut self, id: ObjectId, entry: ObjectEntry) {
        self.release_storage(id, &entry.state);
        let contained = match entry.state {
            ObjState::Ready(v) => v.contained,
            ObjState::Spilled { contained, .. } => contained,
            _ => Vec::new(),
        };
        for c in contained {
            self.unpin_ref(c);
        }
    }

    /// Pins what task arguments refer to, until the task is done; referenced objects are also
    /// kept in memory (not spilled) meanwhile. On error nothing stays pinned.
    fn pin_args(&mut self, args: &[Arg]) -> Result<()> {
        let mut pinned: Vec<RefId> = Vec::new();
        let mut in_use: Vec<ObjectId> = Vec::new();
        let mut lost = None;
        'args: for arg in args {
            let ids: Vec<RefId> = match arg {
                Arg::Ref(id) => vec![RefId::Object(*id)],
                Arg::Value(v) => v.contained.clone(),
            };
            for id in ids {
                if self.pin_ref(id) {
                    pinned.push(id);
                } else if let RefId::Object(o) = id {
                    lost = Some(o);
                    break 'args;
                }
            }
            if let Arg::Ref(id) = arg {
                if let Some(e) = self.objects.get_mut(*id) {
                    e.in_use += 1;
                    in_use.push(*id);
                }
            }
        }
        let Some(o) = lost else { return Ok(()) };
        for id in in_use {
            if let Some(e) = self.objects.get_mut(id) {
                e.in_use -= 1;
            }
        }
        for p in pinned {
            self.unpin_ref(p);
        }
        Err(Error::ObjectLost {
            id: o.to_string(),
            reason: "an argument refers to an object that was freed or belongs to an earlier ray runtime".into(),
        })
    }

    fn unpin_args(&mut self, args: &[Arg]) {
        for arg in args {
            match arg {
                Arg::Ref(id) => {
                    if let Some(e) = self.objects.get_mut(*id) {
                        e.in_use = e.in_use.saturating_sub(1);
                    }
                    self.unpin_ref(RefId::Object(*id))
                }
                Arg::Value(v) => {
                    for c in &v.contained {
                        self.unpin_ref(*c);
                    }
                }
            }
        }
    }

    /// Registers `waiter` on every argument not yet done; returns how many.
    fn register_deps(&mut self, args: &[Arg], waiter: Waiter) -> usize {
        let mut missing = 0;
        for arg in args {
            if let Arg::Ref(id) = arg {
                if let Some(e) = self.objects.get_mut(*id) {
                    if !e.is_done() {
                        e.waiters.push(waiter);
                        missing += 1;
                    }
                }
            }
        }
        missing
    }

    /// Argument data in order (restored from disk if spilled), or the error of a failed
    /// argument. Objects in the store stay there while the task is pending (`in_use`).
    fn resolve_args(&mut self, args: &[Arg]) -> Result<Vec<Data>> {
        let mut out = Vec::with_capacity(args.len());
        for arg in args {
            match arg {
                Arg::Value(v) => out.push(v.data.clone()),
                Arg::Ref(id) => match self.load(*id, None)? {
                    Some(v) => out.push(v.data),
                    None => unreachable!("dispatched before its arguments were ready"),
                },
            }
        }
        Ok(out)
    }

    // ----- completion --------------------------------------------------------------------

    fn complete_object(&mut self, id: ObjectId, result: Result<Value>) {
        let result = match result {
            Ok(v) => self.seal(&v).map(|_| v),
            Err(e) => Err(e),
        };
        let (contained, data) = match &result {
            Ok(v) => (v.contained.clone(), Some(v.clone())),
            Err(_) => (Vec::new(), None),
        };
        let waiters = self.objects.complete(id, result);
        if let Some(v) = &data {
            self.stored(id, v, waiters.is_some());
        }
        if let Some(waiters) = waiters {
            for c in contained {
                self.pin_ref(c);
            }
            self.notify(id, waiters);
        }
    }

    fn notify(&mut self, id: ObjectId, waiters: Vec<Waiter>) {
        let mut sched = false;
        let failed = matches!(
            self.objects.get(id).map(|e| &e.state),
            Some(ObjState::Failed(_))
        );
        for w in waiters {
            match w {
                Waiter::Task(t) => {
                    if let Some(te) = self.tasks.get_mut(&t) {
                        te.missing_deps = te.missing_deps.saturating_sub(1);
                        if te.missing_deps == 0 && matches!(te.state, TaskState::WaitingDeps) {
                            te.state = TaskState::Queued;
                            self.queue.push(&te.spec.resources, t);
                            sched = true;
                        }
                    }
                }
                Waiter::Actor(a) => {
                    if matches!(
                        self.actors.get(&a).map(|e| &e.state),
                        Some(ActorState::Pending)
                    ) {
                        sched = true;
                    } else {
                        self.pump_actor(a);
                    }
                }
                Waiter::Request(k) => {
                    if let Some(r) = self.requests.get_mut(&k) {
                        r.need = r.need.saturating_sub(1);
                        if r.need == 0 || (failed && r.kind == ReqKind::Get) {
                            self.complete_request(k);
                        }
                    }
                }
            }
        }
        if sched {
            self.schedule();
        }
    }

    // ----- scheduling ----------------------------------------------------------------------

    fn schedule(&mut self) {
        if self.scheduling {
            self.reschedule = true;
            return;
        }
        self.scheduling = true;
        loop {
            self.reschedule = false;
            if !self.shutting_down {
                self.schedule_actors();
                for (task, alloc) in self.queue.take_fitting(&mut self.resources) {
                    self.assign_task(task, alloc);
                }
            }
            if !self.reschedule {
                break;
            }
        }
        self.scheduling = false;
    }

    fn schedule_actors(&mut self) {
        let mut still_pending = VecDeque::new();
        while let Some(a) = self.pending_actors.pop_front() {
            let Some(entry) = self.actors.get(&a) else {
                continue;
            };
            if !matches!(entry.state, ActorState::Pending) {
                continue;
            }
            let args = entry.ctor_args.clone().unwrap_or_default();
            let req = entry.resources.clone();
            if self.register_deps_once(&args, Waiter::Actor(a)) > 0 {
                still_pending.push_back(a);
                continue;
            }
            match self.resources.try_acquire(&req) {
                Some(alloc) => {
                    let key = alloc.gpu_ids();
                    let proc = self.start_worker(key, Some(Assignment::Actor(a)));
                    let entry = self.actors.get_mut(&a).expect("present");
                    entry.alloc = Some(alloc);
                    entry.state = ActorState::Starting(proc);
                }
                None => still_pending.push_back(a),
            }
        }
        self.pending_actors = still_pending;
    }

    /// Like `register_deps` but does not add the same waiter twice.
    fn register_deps_once(&mut self, args: &[Arg], waiter: Waiter) -> usize {
        let mut missing = 0;
        for arg in args {
            if let Arg::Ref(id) = arg {
                if let Some(e) = self.objects.get_mut(*id) {
                    if !e.is_done() {
                        if !e.waiters.contains(&waiter) {
                            e.waiters.push(waiter);
                        }
                        missing += 1;
                    }
                }
            }
        }
        missing
    }

    fn assign_task(&mut self, task: ObjectId, alloc: Allocation) {
        let Some(te) = self.tasks.get_mut(&task) else {
            self.resources.release(&alloc);
            return;
        };
        let key = alloc.gpu_ids();
        if let Some(proc) = self.idle.get_mut(&key).and_then(|v| v.pop()) {
            te.state = TaskState::Assigned { alloc };
            self.start_task_on(proc, task);
        } else if let Some(proc) = self.prestarted.get_mut(&key).and_then(|v| v.pop()) {
            te.state = TaskState::Assigned { alloc };
            if let Some(w) = self.workers.get_mut(&proc) {
                w.state = WorkerState::Starting(Some(Assignment::Task(task)));
            }
        } else {
            self.start_worker(key, Some(Assignment::Task(task)));
            let te = self.tasks.get_mut(&task).expect("present");
            te.state = TaskState::Assigned { alloc };
        }
    }

    /// Sends an assigned task to its (registered) worker.
    fn start_task_on(&mut self, proc: ProcIndex, task: ObjectId) {
        let spec_args = self
            .tasks
            .get(&task)
            .expect("assigned task exists")
            .spec
            .args
            .clone();
        let args = match self.resolve_args(&spec_args) {
            Ok(a) => a,
            Err(e) => {
                self.make_idle(proc);
                self.finish_task(task, Err(e));
                return;
            }
        };
        let te = self.tasks.get_mut(&task).expect("present");
        te.attempts += 1;
        let TaskState::Assigned { alloc, .. } = &te.state else {
            unreachable!("task not assigned")
        };
        let (gpu_ids, cpu) = (alloc.gpu_ids(), alloc.cpu);
        let function = te.spec.function.clone();
        let exec = Execute::Task {
            task,
            function,
            args,
            gpu_ids,
        };
        self.hand_to_worker(proc, WorkerState::Busy(task), cpu, exec);
    }

    /// Gives a registered worker its job: what it now runs, the CPU that holds, the message.
    fn hand_to_worker(&mut self, proc: ProcIndex, state: WorkerState, cpu: Amount, exec: Execute) {
        let w = self.workers.get_mut(&proc).expect("worker exists");
        w.state = state;
        w.cpu_held = cpu;
        if let Some(conn) = &w.conn {
            conn.send(&ToWorker::Execute(exec));
        }
    }

    /// Ends a task for good: releases its resources and argument pins, stores its result.
    fn finish_task(&mut self, task: ObjectId, result: Result<Value>) {
        let Some(te) = self.tasks.remove(&task) else {
            return;
        };
        if let TaskState::Assigned { alloc, .. } = &te.state {
            self.resources.release(alloc);
        }
        self.unpin_args(&te.spec.args);
        self.complete_object(task, result);
        self.schedule();
    }

    fn start_worker(&mut self, gpu_ids: Vec<usize>, assignment: Option<Assignment>) -> ProcIndex {
        let proc = NEXT_PROC.fetch_add(1, Ordering::Relaxed);
        let killer = Arc::new(tokio::sync::Notify::new());
        self.workers.insert(
            proc,
            WorkerEntry {
                pid: 0,
                gpu_ids: gpu_ids.clone(),
                conn: None,
                state: WorkerState::Starting(assignment),
                killer: killer.clone(),
                cpu_held: Amount::ZERO,
                blocked: 0,
                conn_open: false,
                exit_cause: None,
                deferred_unpin: Vec::new(),
            },
        );
        let request = SpawnRequest {
            proc,
            gpu_ids,
            killer,
        };
        let sent = match &*self
            .shared
            .spawn_tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
        {
            Some(tx) => tx.send(request).is_ok(),
            None => false,
        };
        if !sent {
            tracing::error!("the worker spawner is gone");
        }
        proc
    }

    fn make_idle(&mut self, proc: ProcIndex) {
        let idle_count: usize = self.idle.values().map(|v| v.len()).sum();
        let Some(w) = self.workers.get_mut(&proc) else {
            return;
        };
        if w.blocked > 0 {
            // Its task ended while a `get` it made is still open (a dropped future): take the
            // lent CPU back now, the task's own release follows.
            self.resources.reclaim_cpu(w.cpu_held);
            w.blocked = 0;
            for r in self.requests.values_mut() {
                if r.blocked_worker == Some(proc) {
                    r.blocked_worker = None;
                }
            }
        }
        let Some(w) = self.workers.get_mut(&proc) else {
            return;
        };
        w.cpu_held = Amount::ZERO;
        if self.shutting_down || idle_count >= self.shared.max_idle_workers {
            w.state = WorkerState::Exiting;
            if let Some(c) = &w.conn {
                c.send(&ToWorker::Exit);
            }
        } else {
            w.state = WorkerState::Idle;
            self.idle.entry(w.gpu_ids.clone()).or_default().push(proc);
        }
    }

    // ----- worker events -----------------------------------------------------------------

    fn register(
        &mut self,
        proc: ProcIndex,
        pid: u32,
        token: u64,
        fingerprint: u64,
        conn: Outbox,
    ) -> bool {
        if token != self.shared.token {
            tracing::warn!("refused a connection with a wrong token (pid {pid})");
            conn.send(&ToWorker::Refused {
                reason: "wrong token".into(),
            });
            conn.close();
            return false;
        }
        if fingerprint != self.shared.fingerprint {
            let reason = format!(
                "worker pid {pid} runs a different build (fingerprint {fingerprint:016x}, driver \
                 {:016x}): workers must run the same executable as the driver",
                self.shared.fingerprint
            );
            tracing::error!("{reason}");
            if self.workers.contains_key(&proc) {
                self.last_spawn_error = Some(reason.clone());
            }
            conn.send(&ToWorker::Refused { reason });
            conn.close();
            return false;
        }
        let Some(w) = self.workers.get_mut(&proc) else {
            conn.send(&ToWorker::Refused {
                reason: format!("unknown worker index {proc}"),
            });
            conn.close();
            return false;
        };
        w.pid = pid;
        conn.send(&ToWorker::Registered);
        w.conn = Some(conn);
        w.conn_open = true;
        self.spawn_failures = 0;
        let WorkerState::Starting(assignment) = w.state else {
            return true;
        };
        match assignment {
            Some(Assignment::Task(t)) => self.start_task_on(proc, t),
            Some(Assignment::Actor(a)) => self.start_actor_on(proc, a),
            None => {
                if let Some(list) = self.prestarted.get_mut(&w.gpu_ids) {
                    list.retain(|p| *p != proc);
                }
                self.make_idle(proc);
                self.schedule();
            }
        }
        true
    }

    pub(crate) fn task_done(&mut self, from: ProcIndex, task: ObjectId, result: Result<Value>) {
        let Some(w) = self.workers.get(&from) else {
            return;
        };
        match w.state {
            WorkerState::Busy(t) if t == task => {
                self.make_idle(from);
                self.finish_task(task, result);
            }
            WorkerState::Actor(a) => {
                let Some(entry) = self.actors.get_mut(&a) else {
                    return;
                };
                let Some(call) = entry.inflight.remove(&task) else {
                    return;
                };
                self.unpin_args(&call.args);
                self.complete_object(task, result);
                self.check_actor_scope(a);
            }
            other => tracing::warn!("worker {from} reported task {task:?} while {other:?}"),
        }
    }

    fn worker_exited(&mut self, proc: ProcIndex, cause: String) {
        let Some(w) = self.workers.remove(&proc) else {
            return;
        };
        if let Some(c) = &w.conn {
            c.close();
        }
        if let Some(v) = self.idle.get_mut(&w.gpu_ids) {
            v.retain(|p| *p != proc);
        }
        if let Some(v) = self.prestarted.get_mut(&w.gpu_ids) {
            v.retain(|p| *p != proc);
        }
        if w.blocked > 0 {
            self.resources.reclaim_cpu(w.cpu_held);
        }
        self.unpin_args(&w.deferred_unpin);
        match w.state {
            WorkerState::Starting(assignment) => {
                self.spawn_failures += 1;
                let reason = self
                    .last_spawn_error
                    .clone()
                    .unwrap_or_else(|| format!("the worker {cause} before it connected"));
                let fatal = self.spawn_failures >= 3 || self.last_spawn_error.is_some();
                match assignment {
                    Some(Assignment::Task(t)) if fatal => {
                        self.finish_task(t, Err(Error::WorkerStartFailed { cause: reason }));
                    }
                    Some(Assignment::Task(t)) => self.requeue(t),
                    Some(Assignment::Actor(a)) => {
                        let err = Error::WorkerStartFailed { cause: reason };
                        self.actor_dead(a, err);
                    }
                    None => {}
                }
            }
            WorkerState::Busy(t) => self.retry_or_fail(t, w.pid, &cause),
            WorkerState::Actor(a) => self.actor_process_died(a, w.pid, &cause),
            WorkerState::Idle | WorkerState::Exiting => {}
        }
        self.store.free_proc(proc);
        for (id, freed) in self.objects.remove_proc(proc) {
            self.object_freed(id, freed);
        }
        let actors: Vec<ActorId> = self
            .actors
            .iter_mut()
            .filter_map(|(id, e)| e.holders.remove_all(proc).then_some(*id))
            .collect();
        for a in actors {
            self.check_actor_scope(a);
        }
        let stale: Vec<u64> = self
            .requests
            .iter()
            .filter_map(|(k, r)| {
                matches!(r.reply, Reply::Remote { proc: p, .. } if p == proc).then_some(*k)
            })
            .collect();
        for k in stale {
            self.requests.remove(&k);
        }
        self.schedule();
    }

    fn requeue(&mut self, task: ObjectId) {
        let Some(te) = self.tasks.get_mut(&task) else {
            return;
        };
        if let TaskState::Assigned { alloc, .. } =
            std::mem::replace(&mut te.state, TaskState::Queued)
        {
            self.resources.release(&alloc);
        }
        self.queue.push(&te.spec.resources, task);
    }

    fn retry_or_fail(&mut self, task: ObjectId, pid: u32, cause: &str) {
        let Some(te) = self.tasks.get(&task) else {
            return;
        };
        if te.attempts <= te.spec.max_retries && !self.shutting_down {
            tracing::warn!(
                "worker pid {pid} running `{}` {cause}; retrying (attempt {} of {})",
                te.spec.function,
                te.attempts + 1,
                te.spec.max_retries + 1
            );
            self.requeue(task);
            self.schedule();
        } else {
            let err = Error::WorkerDied {
                function: te.spec.function.clone(),
                pid,
                attempts: te.attempts,
                cause: cause.to_string(),
            };
            self.finish_task(task, Err(err));
        }
    }

    // ----- actors --------------------------------------------------------------------------

    fn start_actor_on(&mut self, proc: ProcIndex, actor: ActorId) {
        let Some(entry) = self.actors.get(&actor) else {
            self.make_idle(proc);
            return;
        };
        let (ctor_args, class) = (
            entry.ctor_args.clone().unwrap_or_default(),
            entry.class.clone(),
        );
        let args = match self.resolve_args(&ctor_args) {
            Ok(a) => a,
            Err(e) => {
                self.actor_dead(
                    actor,
                    actor_died(&class, format!("a constructor argument failed: {e}")),
                );
                return;
            }
        };
        let entry = self.actors.get_mut(&actor).expect("present");
        entry.state = ActorState::Creating(proc);
        let gpu_ids = entry
            .alloc
            .as_ref()
            .map(|a| a.gpu_ids())
            .unwrap_or_default();
        let cpu = entry.alloc.as_ref().map(|a| a.cpu).unwrap_or_default();
        let class = entry.class.clone();
        let max_concurrency = entry.max_concurrency;
        let exec = Execute::CreateActor {
            actor,
            class,
            args,
            gpu_ids,
            max_concurrency,
        };
        self.hand_to_worker(proc, WorkerState::Actor(actor), cpu, exec);
    }

    pub(crate) fn actor_created(&mut self, from: ProcIndex, actor: ActorId, result: Result<()>) {
        let Some(entry) = self.actors.get_mut(&actor) else {
            return;
        };
        if !matches!(entry.state, ActorState::Creating(p) if p == from) {
            return;
        }
        // The constructor's arguments stay pinned while a restart may need them.
        if result.is_err() || entry.restarts >= entry.max_restarts {
            if let Some(args) = entry.ctor_args.take() {
                self.unpin_args(&args);
            }
        }
        let Some(entry) = self.actors.get_mut(&actor) else {
            return;
        };
        match result {
            Ok(()) => {
                entry.state = ActorState::Alive(from);
                self.pump_actor(actor);
                self.check_actor_scope(actor);
            }
            Err(e) => {
                let cause = match e {
                    Error::TaskFailed { message, .. } => {
                        format!("its constructor panicked: {message}")
                    }
                    other => format!("its constructor failed: {other}"),
                };
                let err = actor_died(&entry.class, cause);
                self.actor_dead(actor, err);
            }
        }
    }

    /// Sends every call whose turn has come and whose arguments are ready.
    fn pump_actor(&mut self, actor: ActorId) {
        let Some(entry) = self.actors.get(&actor) else {
            return;
        };
        let ActorState::Alive(proc) = entry.state else {
            return;
        };
        let mut sendable: Vec<ActorCall> = Vec::new();
        let mut failed: Vec<(ActorCall, Error)> = Vec::new();
        let mut wait_on: Vec<ObjectId> = Vec::new();
        {
            let HeadState {
                actors, objects, ..
            } = self;
            let entry = actors.get_mut(&actor).expect("present");
            for (_, queue) in entry.callers.iter_mut() {
                while let Some(call) = queue.front() {
                    let pending = call.args.iter().find_map(|a| match a {
                        Arg::Ref(id) if objects.get(*id).is_some_and(|e| !e.is_done()) => Some(*id),
                        _ => None,
                    });
                    if let Some(id) = pending {
                        wait_on.push(id);
                        break;
                    }
                    sendable.push(queue.pop_front().expect("front exists"));
                }
            }
        }
        for id in wait_on {
            if let Some(e) = self.objects.get_mut(id) {
                if !e.waiters.contains(&Waiter::Actor(actor)) {
                    e.waiters.push(Waiter::Actor(actor));
                }
            }
        }
        let mut to_send = Vec::new();
        for call in sendable {
            match self.resolve_args(&call.args) {
                Ok(args) => to_send.push((call, args)),
                Err(e) => failed.push((call, e)),
            }
        }
        if let Some(conn) = self.workers.get(&proc).and_then(|w| w.conn.clone()) {
            let entry = self.actors.get_mut(&actor).expect("present");
            for (call, args) in to_send {
                conn.send(&ToWorker::Execute(Execute::ActorTask {
                    task: call.task,
                    method: call.method.clone(),
                    args,
                }));
                entry.inflight.insert(call.task, call);
            }
        }
        for (call, e) in failed {
            self.unpin_args(&call.args);
            self.complete_object(call.task, Err(e));
        }
    }

    /// The actor is dead: fail everything queued or running, free its resources and worker.
    fn actor_dead(&mut self, actor: ActorId, err: Error) {
        let Some(entry) = self.actors.get_mut(&actor) else {
            return;
        };
        let old = std::mem::replace(&mut entry.state, ActorState::Dead(err.clone()));
        let alloc = entry.alloc.take();
        let ctor_args = entry.ctor_args.take().unwrap_or_default();
        let inflight: Vec<ActorCall> = entry.inflight.drain().map(|(_, c)| c).collect();
        let mut queued: Vec<ActorCall> = Vec::new();
        for (_, q) in entry.callers.iter_mut() {
            queued.extend(q.drain(..));
        }
        if let Some(alloc) = alloc {
            self.resources.release(&alloc);
        }
        self.pending_actors.retain(|a| *a != actor);
        // A process that is still running may be reading the arguments of its current calls
        // (and of its constructor): keep them pinned until it is gone.
        let mut to_unpin: Vec<Arg> = queued.iter().flat_map(|c| c.args.iter().cloned()).collect();
        let mut deferred: Vec<Arg> = inflight
            .iter()
            .flat_map(|c| c.args.iter().cloned())
            .collect();
        deferred.extend(ctor_args);
        let worker = match old {
            ActorState::Starting(p) | ActorState::Creating(p) | ActorState::Alive(p) => {
                self.workers.get_mut(&p)
            }
            _ => None,
        };
        match worker {
            Some(w) => {
                w.state = WorkerState::Exiting;
                if w.blocked > 0 {
                    self.resources.reclaim_cpu(w.cpu_held);
                    w.blocked = 0;
                }
                w.cpu_held = Amount::ZERO;
                w.deferred_unpin.extend(deferred);
                w.killer.notify_one();
            }
            None => to_unpin.extend(deferred),
        }
        self.unpin_args(&to_unpin);
        for call in inflight.into_iter().chain(queued) {
            self.complete_object(call.task, Err(err.clone()));
        }
        self.check_actor_scope(actor);
        self.schedule();
    }

    /// The actor's process died. Within `max_restarts` the actor starts again in a new worker
    /// (its constructor runs again): the calls it was running fail, calls not sent yet wait for
    /// the new instance. Beyond that, the actor is dead.
    fn actor_process_died(&mut self, actor: ActorId, pid: u32, cause: &str) {
        let Some(entry) = self.actors.get_mut(&actor) else {
            return;
        };
        if matches!(entry.state, ActorState::Dead(_)) {
            return;
        }
        let class = entry.class.clone();
        if entry.restarts >= entry.max_restarts || entry.ctor_args.is_none() {
            let err = actor_died(&class, format!("its worker process (pid {pid}) {cause}"));
            self.actor_dead(actor, err);
            return;
        }
        entry.restarts += 1;
        tracing::warn!(
            "actor {class}: worker pid {pid} {cause}; restarting ({} of {})",
            entry.restarts,
            entry.max_restarts
        );
        let err = actor_died(
            &class,
            format!(
                "its worker process (pid {pid}) {cause} while running this call; the actor is restarting ({} of {} \
                 restarts)",
                entry.restarts, entry.max_restarts
            ),
        );
        let inflight: Vec<ActorCall> = entry.inflight.drain().map(|(_, c)| c).collect();
        entry.state = ActorState::Pending;
        if let Some(alloc) = entry.alloc.take() {
            self.resources.release(&alloc);
        }
        self.pending_actors.push_back(actor);
        for call in inflight {
            self.unpin_args(&call.args);
            self.complete_object(call.task, Err(err.clone()));
        }
        self.schedule();
    }

    pub(crate) fn kill_actor(&mut self, actor: ActorId, cause: &str) {
        let Some(entry) = self.actors.get(&actor) else {
            return;
        };
        if matches!(entry.state, ActorState::Dead(_)) {
            return;
        }
        let err = actor_died(&entry.class, cause);
        self.actor_dead(actor, err);
    }

    /// Called when an actor may have lost its last handle: a live actor finishes what was
    /// submitted, then exits (Ray's semantics); a dead one is forgotten.
    fn check_actor_scope(&mut self, actor: ActorId) {
        let Some(entry) = self.actors.get_mut(&actor) else {
            return;
        };
        if !(entry.holders.is_empty() && entry.pins == 0) {
            return;
        }
        entry.out_of_scope = true;
        match entry.state {
            ActorState::Dead(_) => {
                if entry.drained() {
                    self.actors.remove(&actor);
                }
            }
            ActorState::Pending | ActorState::Starting(_) | ActorState::Creating(_) => {
                if entry.drained() {
                    let err =
                        actor_died(&entry.class, "all handles were dropped before it started");
                    self.actor_dead(actor, err);
                }
            }
            ActorState::Alive(proc) => {
                if entry.drained() {
                    let err = actor_died(&entry.class, "all handles were dropped");
                    let alloc = entry.alloc.take();
                    entry.state = ActorState::Dead(err);
                    if let Some(alloc) = alloc {
                        self.resources.release(&alloc);
                    }
                    if let Some(w) = self.workers.get_mut(&proc) {
                        w.state = WorkerState::Exiting;
                        w.cpu_held = Amount::ZERO;
                        if let Some(c) = &w.conn {
                            c.send(&ToWorker::Exit);
                        }
                    }
                    self.actors.remove(&actor);
                    self.schedule();
                }
            }
        }
    }

    // ----- get / wait requests -------------------------------------------------------------

    /// Values of `ids` if all are done; `Err` as soon as one failed or is unknown. Values in
    /// the store are pinned in memory for `reader` until it releases them.
    fn collect_values(
        &mut self,
        ids: &[ObjectId],
        reader: Option<ProcIndex>,
    ) -> Result<Option<Vec<Value>>> {
        for id in ids {
            match self.objects.get(*id).map(|e| &e.state) {
                None => {
                    return Err(Error::ObjectLost {
                        id: id.to_string(),
                        reason: "no such object: it was freed or belongs to an earlier ray runtime"
                            .into(),
                    });
                }
                Some(ObjState::Failed(e)) => return Err(e.clone()),
                Some(ObjState::Pending) => return Ok(None),
                Some(ObjState::Ready(_) | ObjState::Spilled { .. }) => {}
            }
        }
        let mut values = Vec::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            match self.load(*id, reader) {
                Ok(Some(v)) => values.push(v),
                Ok(None) => unreachable!("checked done above"),
                Err(e) => {
                    if let Some(p) = reader {
                        let taken: Vec<ObjectId> = ids[..i].to_vec();
                        self.release_mapped(p, &taken);
                    }
                    return Err(e);
                }
            }
        }
        Ok(Some(values))
    }

    fn ready_flags(&self, ids: &[ObjectId]) -> Vec<bool> {
        ids.iter()
            .map(|id| self.objects.get(*id).is_none_or(|e| e.is_done()))
            .collect()
    }

    /// Registers a get/wait; completes it at once if it can. Returns its key if it waits.
    fn add_request(
        &mut self,
        ids: Vec<ObjectId>,
        kind: ReqKind,
        num_returns: usize,
        reply: Reply,
        timeout: Option<Duration>,
    ) -> Option<u64> {
        let key = self.next_request;
        self.next_request += 1;
        let mut distinct = ids.clone();
        distinct.sort();
        distinct.dedup();
        let mut not_done = Vec::new();
        let mut any_failed = false;
        for id in &distinct {
            match self.objects.get(*id).map(|e| &e.state) {
                Some(ObjState::Pending) => not_done.push(*id),
                Some(ObjState::Failed(_)) | None => any_failed = true,
                Some(ObjState::Ready(_) | ObjState::Spilled { .. }) => {}
            }
        }
        let need = match kind {
            ReqKind::Get if any_failed => 0,
            ReqKind::Get => not_done.len(),
            ReqKind::Wait => num_returns
                .min(distinct.len())
                .saturating_sub(distinct.len() - not_done.len()),
        };
        let blocked_worker = match reply {
            Reply::Remote { proc, .. } if need > 0 => Some(proc),
            _ => None,
        };
        self.requests.insert(
            key,
            Request {
                ids,
                kind,
                need,
                reply,
                blocked_worker,
                timeout,
            },
        );
        if need == 0 {
            self.complete_request(key);
            return None;
        }
        for id in not_done {
            if let Some(e) = self.objects.get_mut(id) {
                e.waiters.push(Waiter::Request(key));
            }
        }
        if let Some(proc) = blocked_worker {
            self.block_worker(proc);
        }
        if let Some(t) = timeout {
            let weak = self.weak.clone();
            self.shared.rt.spawn(async move {
                tokio::time::sleep(t).await;
                if let Some(head) = weak.upgrade() {
                    head.expire_request(key);
                }
            });
        }
        Some(key)
    }

    /// A worker waits in `get`: lend its CPU to the node so other tasks can run (this is what
    /// keeps nested tasks from deadlocking when every CPU is held by a waiting task).
    fn block_worker(&mut self, proc: ProcIndex) {
        let Some(w) = self.workers.get_mut(&proc) else {
            return;
        };
        w.blocked += 1;
        if w.blocked == 1 && !w.cpu_held.is_zero() {
            self.resources.lend_cpu(w.cpu_held);
            self.schedule();
        }
    }

    fn unblock_worker(&mut self, proc: ProcIndex) {
        let Some(w) = self.workers.get_mut(&proc) else {
            return;
        };
        if w.blocked == 0 {
            return;
        }
        w.blocked -= 1;
        if w.blocked == 0 && !w.cpu_held.is_zero() {
            self.resources.reclaim_cpu(w.cpu_held);
        }
    }

    fn remove_request(&mut self, key: u64) -> Option<Request> {
        let r = self.requests.remove(&key)?;
        if let Some(p) = r.blocked_worker {
            self.unblock_worker(p);
        }
        Some(r)
    }

    fn complete_request(&mut self, key: u64) {
        let Some(r) = self.remove_request(key) else {
            return;
        };
        match r.reply {
            Reply::Local(slot) => slot.fill(()),
            Reply::Async(slot) => {
                let result = self
                    .collect_values(&r.ids, Some(DRIVER_PROC))
                    .and_then(|v| {
                        v.and_then(|mut v| v.pop())
                            .ok_or_else(|| Error::ObjectLost {
                                id: describe_ids(&r.ids),
                                reason: "not ready".into(),
                            })
                    });
                slot.fill(result);
            }
            Reply::Remote { proc, req } => {
                let msg = match r.kind {
                    ReqKind::Get => {
                        let result = self.collect_values(&r.ids, Some(proc)).and_then(|v| {
                            v.ok_or_else(|| Error::ObjectLost {
                                id: describe_ids(&r.ids),
                                reason: "not ready".into(),
                            })
                        });
                        if let Ok(values) = &result {
                            // The receiver decodes references inside these values; count it as
                            // a holder now, it sends one DelRef each once decoded.
                            let inner: Vec<RefId> = values
                                .iter()
                                .flat_map(|v| v.contained.iter().copied())
                                .collect();
                            for id in inner {
                                self.add_ref(proc, id);
                            }
                        }
                        ToWorker::GetReply { req, result }
                    }
                    ReqKind::Wait => {
                        let flags = self.ready_flags(&r.ids);
                        let ready = flags
                            .iter()
                            .enumerate()
                            .filter(|(_, f)| **f)
                            .map(|(i, _)| i as u32)
                            .collect();
                        ToWorker::WaitReply { req, ready }
                    }
                };
                if let Some(conn) = self.workers.get(&proc).and_then(|w| w.conn.as_ref()) {
                    conn.send(&msg);
                }
            }
        }
    }

    fn expire_request(&mut self, key: u64) {
        let Some(r) = self.requests.get(&key) else {
            return;
        };
        match r.kind {
            ReqKind::Wait => self.complete_request(key),
            ReqKind::Get => {
                let Some(r) = self.remove_request(key) else {
                    return;
                };
                if let Reply::Remote { proc, req } = r.reply {
                    let err = Error::Timeout {
                        what: describe_ids(&r.ids),
                        timeout: r.timeout.unwrap_or_default(),
                    };
                    if let Some(conn) = self.workers.get(&proc).and_then(|w| w.conn.as_ref()) {
                        conn.send(&ToWorker::GetReply {
                            req,
                            result: Err(err),
                        });
                    }
                }
            }
        }
    }

    fn begin_shutdown(&mut self) {
        self.shutting_down = true;
        for w in self.workers.values_mut() {
            match &w.conn {
                Some(c) => c.send(&ToWorker::Exit),
                None => w.killer.notify_one(),
            }
            w.state = WorkerState::Exiting;
        }
        let keys: Vec<u64> = self.requests.keys().copied().collect();
        for k in keys {
            if let Some(r) = self.requests.remove(&k) {
                match r.reply {
                    Reply::Local(slot) => slot.fill(()),
                    Reply::Async(slot) => slot.fill(Err(Error::shut_down())),
                    Reply::Remote { .. } => {}
                }
            }
        }
    }
}

/// The driver process as a holder of references.
pub(crate) const DRIVER_PROC: ProcIndex = DRIVER;
