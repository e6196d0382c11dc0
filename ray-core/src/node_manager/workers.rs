//! The worker pool: worker processes, from start to exit.
//!
//! [`Pool`] owns every worker's entry and the lists of idle and prestarted workers. Its
//! invariant — a worker is in the idle list of its GPU set exactly while it is `Idle`, and in
//! the prestarted list exactly while it is `Starting(None)` — is kept by [`Pool::set_state`],
//! the only way a worker's state changes.
//!
//! A worker's exit arrives twice: its process ends (its monitor reports it) and its socket
//! reaches its end (its reader reports it). The exit is handled at the end of the socket, so
//! that every message the worker sent before dying counts, or after a grace period if the
//! socket never ends.

use super::effects::{Effect, LogTo, Peer, Timer};
use super::state::NodeState;
use crate::error::Error;
use crate::ids::{ActorId, IdMap, JobId, NodeId, ObjectId, ProcId};
use crate::log;
use crate::protocol::worker::{Execute, Refusal, ToWorker};
use crate::protocol::{Arg, PROTOCOL_VERSION};
use crate::resources::Amount;
use std::collections::HashMap;
use std::time::Duration;

/// How long after its process ended a worker's socket may stay open before the exit is
/// handled anyway.
pub(crate) const EXIT_GRACE: Duration = Duration::from_secs(2);

/// What a starting worker will do once it connects.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Assignment {
    Task(ObjectId),
    Actor(ActorId),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum WorkerState {
    /// Started, not connected yet; `None`: prestarted, for whatever comes.
    Starting(Option<Assignment>),
    Idle,
    Busy(ObjectId),
    Actor(ActorId),
    Exiting,
    /// A driver attached over the network: a client that runs nothing.
    Driver,
    /// Another node's session here: a client that runs nothing.
    Peer,
}

pub(crate) struct WorkerEntry {
    pub pid: u32,
    /// The job whose executable it runs.
    pub job: JobId,
    pub gpu_ids: Vec<usize>,
    state: WorkerState,
    /// It said hello and was welcomed.
    pub connected: bool,
    /// It broke the protocol: nothing more it sends is handled.
    pub banned: bool,
    /// It shares no memory with the node (a driver on another machine): values go to it inline.
    pub remote: bool,
    /// CPU held by what the worker runs, lent back to the node while it blocks in `get`.
    pub cpu_held: Amount,
    pub blocked: u32,
    /// Its socket is open: frames it sent may still be unread.
    pub conn_open: bool,
    /// The process ended, but its socket is still being read.
    exit_cause: Option<String>,
    /// Why the node manager stopped it, if it did: the cause its exit is reported with.
    stopped_because: Option<String>,
    /// Arguments of calls that failed while this process was still running them (a killed
    /// actor): they stay pinned until the process is gone, since it may still be reading them.
    pub deferred_unpin: Vec<Arg>,
}

/// Workers are interchangeable when they run the same job's executable with the same GPUs.
pub(crate) type PoolKey = (JobId, Vec<usize>);

pub(crate) struct Pool {
    node: NodeId,
    workers: IdMap<ProcId, WorkerEntry>,
    idle: HashMap<PoolKey, Vec<ProcId>>,
    prestarted: HashMap<PoolKey, Vec<ProcId>>,
    next_index: u32,
    /// Workers that ended before they connected, in a row.
    pub spawn_failures: u32,
    /// Why the last worker was refused at connect, if it was.
    pub last_spawn_error: Option<String>,
}

impl Pool {
    pub(crate) fn new(node: NodeId) -> Self {
        Pool {
            node,
            workers: IdMap::default(),
            idle: HashMap::new(),
            prestarted: HashMap::new(),
            next_index: 1,
            spawn_failures: 0,
            last_spawn_error: None,
        }
    }

    fn add(&mut self, job: JobId, gpu_ids: Vec<usize>, assignment: Option<Assignment>) -> ProcId {
        let proc = ProcId::new(self.node, self.next_index);
        self.next_index = self.next_index.checked_add(1).expect("2^32 workers");
        self.workers.insert(
            proc,
            WorkerEntry {
                pid: 0,
                job,
                gpu_ids,
                state: WorkerState::Exiting,
                connected: false,
                banned: false,
                remote: false,
                cpu_held: Amount::ZERO,
                blocked: 0,
                conn_open: true,
                exit_cause: None,
                stopped_because: None,
                deferred_unpin: Vec::new(),
            },
        );
        self.set_state(proc, WorkerState::Starting(assignment));
        proc
    }

    /// Another node's session: a connected client of no job.
    pub(crate) fn add_peer(&mut self) -> ProcId {
        let proc = self.add_driver();
        self.set_state(proc, WorkerState::Peer);
        proc
    }

    /// A remote driver: a connected client of its own job.
    fn add_driver(&mut self) -> ProcId {
        let proc = ProcId::new(self.node, self.next_index);
        self.next_index = self.next_index.checked_add(1).expect("2^32 processes");
        self.workers.insert(
            proc,
            WorkerEntry {
                pid: 0,
                job: JobId::of_driver(proc),
                gpu_ids: Vec::new(),
                state: WorkerState::Driver,
                connected: true,
                banned: false,
                remote: true,
                cpu_held: Amount::ZERO,
                blocked: 0,
                conn_open: true,
                exit_cause: None,
                stopped_because: None,
                deferred_unpin: Vec::new(),
            },
        );
        proc
    }

    pub(crate) fn get(&self, proc: ProcId) -> Option<&WorkerEntry> {
        self.workers.get(&proc)
    }

    pub(crate) fn get_mut(&mut self, proc: ProcId) -> Option<&mut WorkerEntry> {
        self.workers.get_mut(&proc)
    }

    pub(crate) fn state(&self, proc: ProcId) -> Option<WorkerState> {
        self.workers.get(&proc).map(|w| w.state)
    }

    /// Changes a worker's state, keeping the idle and prestarted lists in step.
    pub(crate) fn set_state(&mut self, proc: ProcId, state: WorkerState) {
        let Some(w) = self.workers.get_mut(&proc) else {
            return;
        };
        let old = std::mem::replace(&mut w.state, state);
        let key = (w.job, w.gpu_ids.clone());
        let list = |l: &mut HashMap<PoolKey, Vec<ProcId>>, add: bool| {
            let v = l.entry(key.clone()).or_default();
            if add {
                v.push(proc);
            } else {
                v.retain(|p| *p != proc);
            }
        };
        match (old, state) {
            (WorkerState::Idle, WorkerState::Idle) => {}
            (WorkerState::Idle, _) => list(&mut self.idle, false),
            (_, WorkerState::Idle) => list(&mut self.idle, true),
            _ => {}
        }
        match (old, state) {
            (WorkerState::Starting(None), WorkerState::Starting(None)) => {}
            (WorkerState::Starting(None), _) => list(&mut self.prestarted, false),
            (_, WorkerState::Starting(None)) => list(&mut self.prestarted, true),
            _ => {}
        }
    }

    /// An idle worker of this job with these GPUs.
    pub(crate) fn find_idle(&self, key: &PoolKey) -> Option<ProcId> {
        self.idle.get(key).and_then(|v| v.last().copied())
    }

    /// A prestarted worker of this job with these GPUs that is not connected yet.
    pub(crate) fn find_prestarted(&self, key: &PoolKey) -> Option<ProcId> {
        self.prestarted.get(key).and_then(|v| v.last().copied())
    }

    pub(crate) fn idle_count(&self) -> usize {
        self.idle.values().map(|v| v.len()).sum()
    }

    /// Removes a worker; the entry keeps the state it had.
    fn remove(&mut self, proc: ProcId) -> Option<WorkerEntry> {
        let state = self.state(proc)?;
        self.set_state(proc, WorkerState::Exiting);
        let mut w = self.workers.remove(&proc)?;
        w.state = state;
        Some(w)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.workers.len()
    }

    pub(crate) fn procs(&self) -> Vec<ProcId> {
        self.workers.keys().copied().collect()
    }

    pub(crate) fn pids(&self) -> Vec<u32> {
        self.workers
            .values()
            .map(|w| w.pid)
            .filter(|p| *p != 0)
            .collect()
    }
}

impl NodeState {
    /// Starts a worker process of `job` (for `assignment`, or prestarted for whatever comes).
    /// `None` if the job is not known here.
    pub(super) fn start_worker(
        &mut self,
        job: JobId,
        gpu_ids: Vec<usize>,
        assignment: Option<Assignment>,
    ) -> Option<ProcId> {
        let j = self.jobs.get(job)?;
        let exe = j.exe.clone();
        let log_to = match j.driver {
            Some(d) if self.workers.get(d).is_some_and(|w| w.remote) => LogTo::Driver(d),
            Some(_) => LogTo::Here,
            None => LogTo::Node {
                node: job.node(),
                job,
                tag: self.where_tag(job.node()),
            },
        };
        let proc = self.workers.add(job, gpu_ids.clone(), assignment);
        self.effects.push(Effect::StartWorker {
            proc,
            gpu_ids,
            exe,
            log_to,
        });
        Some(proc)
    }

    /// Starts idle workers of `job` ahead of its first task, as Ray does.
    pub(crate) fn prestart(&mut self, job: JobId, n: usize) {
        for _ in 0..n {
            self.start_worker(job, Vec::new(), None);
        }
    }

    /// A task worker finished its task: keep it for the next one, or let it go.
    pub(super) fn make_idle(&mut self, proc: ProcId) {
        let idle = self.workers.idle_count();
        self.give_back_lent_cpu(proc);
        let Some(w) = self.workers.get_mut(proc) else {
            return;
        };
        w.cpu_held = Amount::ZERO;
        if self.shutting_down || idle >= self.settings.max_idle_workers {
            self.workers.set_state(proc, WorkerState::Exiting);
            self.send(proc, ToWorker::Exit);
        } else {
            self.workers.set_state(proc, WorkerState::Idle);
        }
    }

    /// A worker whose task ended while a `get` it made is still open (a dropped future) takes
    /// its lent CPU back now; the task's own release follows.
    fn give_back_lent_cpu(&mut self, proc: ProcId) {
        let Some(w) = self.workers.get_mut(proc) else {
            return;
        };
        if w.blocked > 0 {
            self.resources.reclaim_cpu(w.cpu_held);
            w.blocked = 0;
            self.requests.forget_blocked(proc);
        }
    }

    /// The worker will not run anything more; it holds no CPU from now on.
    pub(super) fn retire(&mut self, proc: ProcId) {
        self.give_back_lent_cpu(proc);
        if let Some(w) = self.workers.get_mut(proc) {
            w.cpu_held = Amount::ZERO;
        }
        self.workers.set_state(proc, WorkerState::Exiting);
    }

    /// Gives a connected worker its job: what it now runs, the CPU that holds, the message.
    pub(super) fn hand_to_worker(
        &mut self,
        proc: ProcId,
        state: WorkerState,
        cpu: Amount,
        exec: Execute,
    ) {
        self.workers.set_state(proc, state);
        if let Some(w) = self.workers.get_mut(proc) {
            w.cpu_held = cpu;
        }
        self.send(proc, ToWorker::Execute(exec));
    }

    /// A driver on another machine attached: it gets a process id here and its job starts,
    /// running `exe`. `None` while shutting down.
    pub(crate) fn attach_driver(
        &mut self,
        info: &crate::protocol::node::DriverInfo,
        exe: std::path::PathBuf,
        pin: Box<dyn std::any::Any + Send + Sync>,
    ) -> Option<(ProcId, JobId)> {
        if self.shutting_down {
            return None;
        }
        let proc = self.workers.add_driver();
        let job = JobId::of_driver(proc);
        self.add_job(job, exe, info.fingerprint, Some(proc));
        self.jobs.pin(job, pin);
        self.jobs.set_binary(job, info.sha256, info.size);
        self.jobs.show(job, info.shown_name(), info.pid);
        if let Some(ns) = &info.namespace {
            self.set_job_namespace(job, ns);
        }
        Some((proc, job))
    }

    /// A remote driver's connection ended: what it held is released and its job ends.
    pub(crate) fn driver_gone(&mut self, proc: ProcId) {
        self.direct_driver_gone(proc);
        self.worker_gone(proc, "its connection ended".into());
    }

    /// The spawner started `proc` as process `pid`.
    pub(crate) fn set_pid(&mut self, proc: ProcId, pid: u32) {
        if let Some(w) = self.workers.get_mut(proc) {
            if w.pid == 0 {
                w.pid = pid;
            }
        }
    }

    /// A worker's first message. Refused (and disconnected) if it speaks another protocol
    /// version or runs another build; otherwise welcomed and given its job.
    pub(crate) fn worker_hello(
        &mut self,
        proc: ProcId,
        version: u32,
        fingerprint: u64,
        pid: u32,
    ) -> Result<(), String> {
        let Some(w) = self.workers.get(proc) else {
            return Err("a hello from a worker that is gone".into());
        };
        if w.connected {
            return Err("a second hello".into());
        }
        if w.pid != 0 && w.pid != pid {
            return Err(format!(
                "a hello claiming pid {pid}, but the node started pid {}",
                w.pid
            ));
        }
        let job = w.job;
        let expected = self.jobs.get(job).map(|j| j.fingerprint);
        let refusal = if version != PROTOCOL_VERSION {
            Some(Refusal::WrongVersion {
                node: PROTOCOL_VERSION,
                worker: version,
            })
        } else if expected != Some(fingerprint) {
            Some(Refusal::DifferentBuild)
        } else {
            None
        };
        if let Some(reason) = refusal {
            log::error!("worker pid {pid} refused: {reason}");
            self.workers.last_spawn_error = Some(format!("worker pid {pid} was refused: {reason}"));
            self.send(proc, ToWorker::Refused { reason });
            self.effects.push(Effect::Disconnect(Peer::Worker(proc)));
            return Ok(());
        }
        let w = self.workers.get_mut(proc).expect("checked above");
        w.pid = pid;
        w.connected = true;
        let state = w.state;
        self.workers.spawn_failures = 0;
        self.send(proc, ToWorker::Welcome { proc, job });
        match state {
            WorkerState::Starting(Some(Assignment::Task(t))) => self.start_task_on(proc, t),
            WorkerState::Starting(Some(Assignment::Actor(a))) => self.start_actor_on(proc, a),
            WorkerState::Starting(None) => {
                self.make_idle(proc);
                self.schedule();
            }
            // Killed or shut down while starting: it is told to go.
            _ => self.send(proc, ToWorker::Exit),
        }
        Ok(())
    }

    /// `proc` broke the protocol (`what`): nothing more it sends is handled, its connection
    /// is closed and its process killed; what it ran fails or is retried as for a crash.
    pub(crate) fn violation(&mut self, proc: ProcId, what: &str) {
        let Some(w) = self.workers.get_mut(proc) else {
            return;
        };
        if w.banned {
            return;
        }
        w.banned = true;
        w.stopped_because = Some(format!(
            "was stopped by the node manager for breaking the protocol: it sent {what}"
        ));
        log::warn!(
            "worker pid {} ({proc}) sent {what}; closing its connection and stopping it",
            w.pid
        );
        self.effects.push(Effect::Disconnect(Peer::Worker(proc)));
        self.effects.push(Effect::Kill(proc));
    }

    /// Stops a worker on purpose (`why` is how its exit is reported): its process is killed,
    /// what it ran fails or is retried as for a crash.
    pub(crate) fn stop_worker(&mut self, proc: ProcId, why: String) {
        if let Some(w) = self.workers.get_mut(proc) {
            w.stopped_because.get_or_insert(why);
            self.effects.push(Effect::Kill(proc));
        }
    }

    /// A worker's connection reached its end (every frame it sent was handled). If its
    /// process has already exited, handle that now; otherwise make sure it goes.
    pub(crate) fn connection_closed(&mut self, proc: ProcId) {
        log::debug!("connection of {proc} closed");
        let Some(w) = self.workers.get_mut(proc) else {
            return;
        };
        w.conn_open = false;
        match w.exit_cause.take() {
            Some(cause) => self.worker_gone(proc, cause),
            None => self.effects.push(Effect::Kill(proc)),
        }
    }

    /// A worker process ended: handled once its socket has been read to the end (the kernel
    /// closes it when the process dies), or after [`EXIT_GRACE`].
    pub(crate) fn process_exited(&mut self, proc: ProcId, cause: String) {
        log::debug!("process of {proc} exited: {cause}");
        let Some(w) = self.workers.get_mut(proc) else {
            return;
        };
        if w.conn_open {
            w.exit_cause = Some(cause);
            self.effects
                .push(Effect::Timer(EXIT_GRACE, Timer::ExitGrace(proc)));
            return;
        }
        self.worker_gone(proc, cause);
    }

    /// The node could not serve the worker's connection (`why`): the worker is stopped, and
    /// reported with that cause.
    pub(crate) fn connection_failed(&mut self, proc: ProcId, why: String) {
        let Some(w) = self.workers.get_mut(proc) else {
            return;
        };
        w.conn_open = false;
        w.stopped_because = Some(why);
        self.effects.push(Effect::Kill(proc));
    }

    /// The worker's process could not be started at all.
    pub(crate) fn spawn_failed(&mut self, proc: ProcId, cause: &str) {
        if let Some(w) = self.workers.get_mut(proc) {
            w.conn_open = false;
        }
        self.process_exited(proc, cause.to_string());
    }

    /// The grace period after a worker's exit is over.
    pub(crate) fn exit_grace_over(&mut self, proc: ProcId) {
        if self
            .workers
            .get(proc)
            .is_some_and(|w| w.exit_cause.is_some())
        {
            self.connection_closed(proc);
        }
    }

    /// A worker is gone for good: what it ran is retried or fails, what it held is released.
    fn worker_gone(&mut self, proc: ProcId, cause: String) {
        log::debug!("{proc} is gone: {cause}");
        let Some(mut w) = self.workers.remove(proc) else {
            return;
        };
        let cause = w.stopped_because.take().unwrap_or(cause);
        self.effects.push(Effect::Forget(proc));
        self.effects.push(Effect::WorkersChanged);
        if w.blocked > 0 {
            self.resources.reclaim_cpu(w.cpu_held);
        }
        self.unpin_args(&w.deferred_unpin);
        match w.state {
            WorkerState::Starting(assignment) => {
                self.workers.spawn_failures += 1;
                let reason = self
                    .workers
                    .last_spawn_error
                    .clone()
                    .unwrap_or_else(|| format!("the worker {cause} before it connected"));
                let fatal =
                    self.workers.spawn_failures >= 3 || self.workers.last_spawn_error.is_some();
                match assignment {
                    Some(Assignment::Task(t)) if fatal => {
                        self.finish_task(t, Err(Error::WorkerStartFailed { cause: reason }));
                    }
                    Some(Assignment::Task(t)) => self.requeue(t),
                    Some(Assignment::Actor(a)) => {
                        self.actor_dead(a, Error::WorkerStartFailed { cause: reason });
                    }
                    None => {}
                }
            }
            WorkerState::Busy(t) => self.retry_or_fail(t, w.pid, &cause),
            WorkerState::Actor(a) => self.actor_process_died(a, w.pid, &cause),
            WorkerState::Idle | WorkerState::Exiting | WorkerState::Driver | WorkerState::Peer => {}
        }
        self.store.free_proc(proc);
        for (id, freed) in self.objects.remove_proc(proc) {
            self.object_freed(id, freed);
        }
        for a in self.actors.remove_holder_everywhere(proc) {
            self.check_actor_scope(a);
        }
        self.requests.remove_of(proc);
        if w.state == WorkerState::Driver {
            self.end_job(JobId::of_driver(proc));
        }
        self.owner_gone(proc);
        self.forget_calls(proc);
        self.schedule();
    }
}
