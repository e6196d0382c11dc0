//! The state machine driven by hand: fake workers (messages in, effects out) and a fake clock
//! (timers fire when the test advances time). No processes, no sockets, no sleeping.

use super::effects::{Effect, Peer, Timer};
use super::requests::{REPLY_CHUNK, Reply, ReqKind};
use super::state::{NodeState, Settings};
use super::store::{SpillDir, Store};
use crate::codec::{self, Data, Value};
use crate::error::Error;
use crate::ids::{ActorId, JobId, NodeId, ObjectId, ProcId, RefId};
use crate::object_store::{Arena, PAD};
use crate::protocol::worker::{Execute, FromWorker, Refusal, ToWorker};
use crate::protocol::{ActorSpec, ActorTaskSpec, Arg, PROTOCOL_VERSION, TaskSpec};
use crate::resources::{Amount, NodeResources, ResourceRequest};
use crate::slot::Slot;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

const NODE: NodeId = NodeId(1);
const DRIVER: ProcId = ProcId::driver(NODE);
const JOB: JobId = JobId::of_driver(DRIVER);
const FINGERPRINT: u64 = 0xF1F1;

/// A node manager's state with fake peers and a fake clock.
struct Harness {
    st: NodeState,
    now: Duration,
    timers: Vec<(Duration, Timer)>,
    sent: Vec<(ProcId, ToWorker)>,
    started: Vec<ProcId>,
    killed: Vec<ProcId>,
    disconnected: Vec<ProcId>,
    woken: usize,
    next_id: u64,
    /// Requests sent to other nodes, in order.
    to_nodes: Vec<(NodeId, FromWorker)>,
    /// Pulls asked for: (object, from node, length, region).
    pulls: Vec<(ObjectId, NodeId, u64, u64)>,
    /// Sessions with other nodes dropped.
    dropped_nodes: Vec<NodeId>,
    /// Questions to the cluster's name directory, in order.
    name_ops: Vec<(u64, super::name_directory::NameOp)>,
}

fn cpus(n: usize) -> NodeResources {
    NodeResources::new(n, 0, &[])
}

impl Harness {
    fn new(resources: NodeResources) -> Harness {
        Self::with_store(resources, 4 << 20)
    }

    fn with_store(resources: NodeResources, store_bytes: u64) -> Harness {
        let arena = Arc::new(Arena::create(store_bytes).expect("memfd"));
        let spill = SpillDir::new(&std::env::temp_dir()).expect("spill root");
        let settings = Settings {
            max_idle_workers: 8,
            can_detect_gpus: false,
        };
        let mut st = NodeState::new(NODE, settings, resources, Store::new(arena, spill));
        st.add_job(JOB, "/bin/false".into(), FINGERPRINT, Some(DRIVER));
        Harness {
            st,
            now: Duration::ZERO,
            timers: Vec::new(),
            sent: Vec::new(),
            started: Vec::new(),
            killed: Vec::new(),
            disconnected: Vec::new(),
            woken: 0,
            next_id: 1,
            to_nodes: Vec::new(),
            pulls: Vec::new(),
            dropped_nodes: Vec::new(),
            name_ops: Vec::new(),
        }
    }

    /// Moves the effects the last handler pushed into the fakes.
    fn flush(&mut self) {
        for e in std::mem::take(&mut self.st.effects) {
            match e {
                Effect::Send(Peer::Worker(p), m) => self.sent.push((p, m)),
                Effect::StartWorker { proc, .. } => self.started.push(proc),
                Effect::Kill(p) => self.killed.push(p),
                Effect::Disconnect(Peer::Worker(p)) | Effect::Forget(p) => {
                    self.disconnected.push(p)
                }
                Effect::Timer(after, t) => self.timers.push((self.now + after, t)),
                Effect::Wake(slot) => {
                    slot.fill(());
                    self.woken += 1;
                }
                Effect::Resolve(slot, r) => slot.fill(r),
                Effect::SendNode(n, m) => self.to_nodes.push((n, m)),
                Effect::Send(Peer::Node(n), m) => panic!("a reply {m:?} sent to {n} as a node"),
                Effect::Pull {
                    id,
                    from,
                    len,
                    region,
                } => self.pulls.push((id, from, len, region)),
                Effect::Disconnect(Peer::Node(n)) => self.dropped_nodes.push(n),
                Effect::EnsureJob { .. } | Effect::DetectGpus | Effect::WorkersChanged => {}
                Effect::Answer(slot, r) => slot.fill(r),
                Effect::Names(id, op) => self.name_ops.push((id, op)),
            }
        }
    }

    fn with<R>(&mut self, f: impl FnOnce(&mut NodeState) -> R) -> R {
        self.st.now_us = self.now.as_micros() as u64;
        let r = f(&mut self.st);
        self.flush();
        r
    }

    /// The fake clock moves on: timers that are due fire, in order.
    fn advance(&mut self, by: Duration) {
        self.now += by;
        loop {
            self.timers.sort_by_key(|(at, _)| *at);
            let Some(i) = self.timers.iter().position(|(at, _)| *at <= self.now) else {
                return;
            };
            let (_, t) = self.timers.remove(i);
            self.with(|st| match t {
                Timer::RequestTimeout(k) => st.expire_request(k),
                Timer::ExitGrace(p) => st.exit_grace_over(p),
            });
        }
    }

    fn msg(&mut self, from: ProcId, m: FromWorker) {
        self.with(|st| st.handle(from, m));
    }

    /// A started worker connects and says hello.
    fn connect(&mut self, proc: ProcId) {
        let pid = 1000 + proc.index;
        self.with(|st| st.set_pid(proc, pid));
        self.msg(
            proc,
            FromWorker::Hello {
                version: PROTOCOL_VERSION,
                fingerprint: FINGERPRINT,
                pid,
            },
        );
    }

    /// Every started worker connects.
    fn connect_all(&mut self) -> Vec<ProcId> {
        let procs = std::mem::take(&mut self.started);
        for p in &procs {
            self.connect(*p);
        }
        procs
    }

    /// A worker process dies: its socket ends, then its exit is reported.
    fn die(&mut self, proc: ProcId, cause: &str) {
        self.with(|st| st.connection_closed(proc));
        self.with(|st| st.process_exited(proc, cause.into()));
    }

    fn sent_to(&mut self, proc: ProcId) -> Vec<ToWorker> {
        let (mine, rest) = std::mem::take(&mut self.sent)
            .into_iter()
            .partition(|(p, _)| *p == proc);
        self.sent = rest;
        mine.into_iter().map(|(_, m)| m).collect()
    }

    /// The task or call last handed to `proc`.
    fn executing(&mut self, proc: ProcId) -> Option<Execute> {
        self.sent_to(proc).into_iter().rev().find_map(|m| match m {
            ToWorker::Execute(e) => Some(e),
            _ => None,
        })
    }

    fn id_of(&mut self, proc: ProcId) -> ObjectId {
        self.next_id += 1;
        ObjectId(
            ((proc.node.0 as u128) << 96) | ((proc.index as u128) << 64) | self.next_id as u128,
        )
    }

    fn task(&mut self, from: ProcId, function: &str, args: Vec<Arg>) -> TaskSpec {
        TaskSpec {
            task: self.id_of(from),
            job: JOB,
            function: function.into(),
            args,
            resources: ResourceRequest {
                cpu: Amount::ONE,
                ..Default::default()
            },
            max_retries: 3,
            ext: Default::default(),
        }
    }

    fn submit(&mut self, from: ProcId, spec: TaskSpec) -> ObjectId {
        let id = spec.task;
        if from == DRIVER {
            self.with(|st| st.submit_task(from, spec));
        } else {
            self.msg(from, FromWorker::SubmitTask(spec));
        }
        id
    }

    fn put(&mut self, from: ProcId, v: Value) -> ObjectId {
        let id = self.id_of(from);
        if from == DRIVER {
            self.with(|st| st.put(from, id, Ok(v)));
        } else {
            self.msg(from, FromWorker::Put { id, result: Ok(v) });
        }
        id
    }

    fn state(&self, id: ObjectId) -> Option<&super::objects::ObjState> {
        self.st.objects.get(id).map(|e| &e.state)
    }

    fn failed(&self, id: ObjectId) -> Option<Error> {
        match self.state(id) {
            Some(super::objects::ObjState::Failed(e)) => Some(e.clone()),
            _ => None,
        }
    }

    fn value_of(&self, id: ObjectId) -> Option<u64> {
        match self.state(id) {
            Some(super::objects::ObjState::Ready(v)) => v.decode::<u64>().ok(),
            _ => None,
        }
    }

    /// A driver thread's `get`, waiting with a timeout: returns its slot.
    fn driver_wait(
        &mut self,
        ids: Vec<ObjectId>,
        kind: ReqKind,
        timeout: Duration,
    ) -> Arc<Slot<()>> {
        let slot = Arc::new(Slot::new());
        let reply = Reply::Local(slot.clone());
        self.with(|st| st.add_request(ids, kind, 1, reply, Some(timeout)));
        slot
    }
}

fn value(x: u64) -> Value {
    codec::encode(&x).expect("encodes").value
}

fn value_with_refs(x: u64, refs: Vec<RefId>) -> Value {
    Value {
        data: value(x).data,
        contained: refs,
    }
}

// ----- tasks -------------------------------------------------------------------------------

#[test]
fn a_task_runs_on_a_started_worker_and_its_result_is_stored() {
    let mut h = Harness::new(cpus(1));
    let spec = h.task(DRIVER, "m::add", vec![Arg::Value(value(2))]);
    let t = h.submit(DRIVER, spec);
    let [w] = h.started[..] else {
        panic!("one worker started: {:?}", h.started)
    };
    h.connect_all();
    let sent = h.sent_to(w);
    assert!(matches!(sent[0], ToWorker::Welcome { proc, job } if proc == w && job == JOB));
    assert!(matches!(&sent[1], ToWorker::Execute(Execute::Task { task, .. }) if *task == t));
    h.msg(
        w,
        FromWorker::TaskDone {
            task: t,
            result: Ok(value(4)),
        },
    );
    assert_eq!(h.value_of(t), Some(4));
    assert!(h.disconnected.is_empty() && h.killed.is_empty());
    assert_eq!(
        (h.st.tasks.len(), h.st.requests.len()),
        (0, 0),
        "nothing left behind"
    );
}

#[test]
fn a_task_whose_worker_dies_is_retried_then_fails_after_max_retries() {
    let mut h = Harness::new(cpus(1));
    let mut spec = h.task(DRIVER, "m::crashy", vec![]);
    spec.max_retries = 1;
    let t = h.submit(DRIVER, spec);
    let w1 = h.connect_all()[0];
    assert!(h.executing(w1).is_some());
    h.die(w1, "was killed by signal 9 (SIGKILL)");
    assert!(h.failed(t).is_none(), "retried, not failed");
    let w2 = h.connect_all()[0];
    assert_ne!(w1, w2, "a new worker runs the retry");
    assert!(matches!(h.executing(w2), Some(Execute::Task { task, .. }) if task == t));
    h.die(w2, "was killed by signal 6 (SIGABRT)");
    match h.failed(t) {
        Some(Error::WorkerDied {
            attempts, cause, ..
        }) => {
            assert_eq!(attempts, 2);
            assert!(cause.contains("SIGABRT"));
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    assert!(
        h.st.resources
            .check_feasible(&ResourceRequest::default())
            .is_ok()
    );
}

#[test]
fn an_infeasible_task_fails_at_once_naming_what_is_missing() {
    let mut h = Harness::new(cpus(2));
    let mut spec = h.task(DRIVER, "m::big", vec![]);
    spec.resources.gpu = Amount::whole(9);
    let t = h.submit(DRIVER, spec);
    match h.failed(t) {
        Some(Error::Infeasible {
            requested,
            available,
            ..
        }) => {
            assert_eq!(requested, "GPU: 9");
            assert!(available.contains("CPU: 2"));
        }
        other => panic!("expected Infeasible, got {other:?}"),
    }
    assert!(h.started.is_empty(), "no worker for an infeasible task");
}

#[test]
fn a_task_waits_for_its_arguments_and_gets_their_values() {
    let mut h = Harness::new(cpus(2));
    let a = {
        let spec = h.task(DRIVER, "m::a", vec![]);
        h.submit(DRIVER, spec)
    };
    let b = {
        let spec = h.task(DRIVER, "m::b", vec![Arg::Ref(a), Arg::Ref(a)]);
        h.submit(DRIVER, spec)
    };
    let procs = h.connect_all();
    let runs_a = procs
        .iter()
        .copied()
        .find(|p| matches!(h.executing(*p), Some(Execute::Task { task, .. }) if task == a))
        .expect("a runs first");
    h.msg(
        runs_a,
        FromWorker::TaskDone {
            task: a,
            result: Ok(value(7)),
        },
    );
    let next = h.connect_all();
    let all: Vec<ProcId> = procs.into_iter().chain(next).collect();
    let got = all.iter().find_map(|p| match h.executing(*p) {
        Some(Execute::Task { task, args, .. }) if task == b => Some(args),
        _ => None,
    });
    let args = got.expect("b runs once a is done (twice the same argument)");
    assert_eq!(args.len(), 2);
    assert_eq!(args[0], value(7).data);
}

// ----- actors ------------------------------------------------------------------------------

fn actor_spec(h: &mut Harness, from: ProcId, max_restarts: u32) -> ActorSpec {
    let id = h.id_of(from);
    ActorSpec {
        actor: ActorId(id.0),
        job: JOB,
        class: "m::Counter".into(),
        args: vec![Arg::Value(value(0))],
        resources: ResourceRequest::default(),
        max_concurrency: 1,
        max_restarts,
        invalid: None,
        ext: Default::default(),
    }
}

fn call(h: &mut Harness, actor: ActorId, method: &str) -> ObjectId {
    let task = h.id_of(DRIVER);
    let spec = ActorTaskSpec {
        actor,
        task,
        method: method.into(),
        args: vec![],
        returns: Default::default(),
    };
    h.with(|st| st.submit_actor_task(DRIVER, spec));
    task
}

/// Creates an actor and runs its constructor; returns it and its worker.
fn live_actor(h: &mut Harness, max_restarts: u32) -> (ActorId, ProcId) {
    let spec = actor_spec(h, DRIVER, max_restarts);
    let a = spec.actor;
    h.with(|st| st.create_actor(DRIVER, spec));
    let w = h.connect_all()[0];
    assert!(matches!(h.executing(w), Some(Execute::CreateActor { actor, .. }) if actor == a));
    h.msg(
        w,
        FromWorker::ActorCreated {
            actor: a,
            result: Ok(()),
        },
    );
    (a, w)
}

#[test]
fn an_actor_restarts_after_its_process_dies_then_dies_for_good() {
    let mut h = Harness::new(cpus(1));
    let (a, w1) = live_actor(&mut h, 1);
    let inflight = call(&mut h, a, "add");
    assert!(matches!(h.executing(w1), Some(Execute::ActorTask { task, .. }) if task == inflight));
    h.die(w1, "was killed by signal 9 (SIGKILL)");
    match h.failed(inflight) {
        Some(Error::ActorDied { restarting, .. }) => assert!(restarting),
        other => panic!("the running call fails with ActorDied, got {other:?}"),
    }
    let later = call(&mut h, a, "get");
    let w2 = h.connect_all()[0];
    assert!(
        matches!(h.executing(w2), Some(Execute::CreateActor { actor, .. }) if actor == a),
        "the constructor runs again"
    );
    h.msg(
        w2,
        FromWorker::ActorCreated {
            actor: a,
            result: Ok(()),
        },
    );
    assert!(
        matches!(h.executing(w2), Some(Execute::ActorTask { task, .. }) if task == later),
        "a call made during the restart goes to the new instance"
    );
    h.msg(
        w2,
        FromWorker::TaskDone {
            task: later,
            result: Ok(value(0)),
        },
    );
    assert_eq!(h.value_of(later), Some(0));
    h.die(w2, "was killed by signal 9 (SIGKILL)");
    let after = call(&mut h, a, "get");
    match h.failed(after) {
        Some(Error::ActorDied {
            restarting, cause, ..
        }) => {
            assert!(!restarting);
            assert!(cause.contains("SIGKILL"), "{cause}");
        }
        other => panic!("no restarts left: ActorDied, got {other:?}"),
    }
    assert!(h.started.is_empty(), "not restarted a second time");
}

#[test]
fn calls_from_one_caller_run_in_order_and_a_killed_actor_fails_the_rest() {
    let mut h = Harness::new(cpus(1));
    let (a, w) = live_actor(&mut h, 0);
    let calls: Vec<ObjectId> = (0..5).map(|_| call(&mut h, a, "add")).collect();
    let order: Vec<ObjectId> = h
        .sent_to(w)
        .into_iter()
        .filter_map(|m| match m {
            ToWorker::Execute(Execute::ActorTask { task, .. }) => Some(task),
            _ => None,
        })
        .collect();
    assert_eq!(order, calls);
    h.msg(
        w,
        FromWorker::TaskDone {
            task: calls[0],
            result: Ok(value(1)),
        },
    );
    h.with(|st| st.kill_actor(a, "killed by ray::kill"));
    assert!(h.killed.contains(&w));
    for c in &calls[1..] {
        assert!(matches!(h.failed(*c), Some(Error::ActorDied { .. })));
    }
    assert_eq!(h.value_of(calls[0]), Some(1));
}

#[test]
fn an_actor_exits_when_its_last_handle_is_dropped() {
    let mut h = Harness::new(cpus(1));
    let (a, w) = live_actor(&mut h, 0);
    h.sent_to(w);
    h.with(|st| st.del_ref(DRIVER, RefId::Actor(a))).unwrap();
    assert!(
        h.sent_to(w).iter().any(|m| matches!(m, ToWorker::Exit)),
        "its worker is told to exit"
    );
    assert!(!h.st.actors.contains(a));
    assert_eq!(h.st.actors.len(), 0);
}

// References, pins and freeing.
#[path = "tests_refs.rs"]
mod refs;

// get/wait requests, timeouts, CPU lending, split replies, shutdown.
#[path = "tests_requests.rs"]
mod requests;

// ----- who may send what ------------------------------------------------------------------------

/// A connected worker running a task, and that task's id.
fn busy_worker(h: &mut Harness) -> (ProcId, ObjectId) {
    let spec = h.task(DRIVER, "m::work", vec![]);
    let t = h.submit(DRIVER, spec);
    let w = h.connect_all()[0];
    h.sent_to(w);
    (w, t)
}

fn assert_stopped(h: &Harness, w: ProcId) {
    assert!(h.disconnected.contains(&w), "{w} disconnected");
    assert!(h.killed.contains(&w), "{w} killed");
}

// Messages a worker may not send: refused, the worker stopped, nothing else touched.
#[path = "tests_violations.rs"]
mod violations;

// The rest of the core API (issue 12): names, cancel, returns, streams, placement groups...
#[path = "tests_core_api.rs"]
mod core_api;

// Peers faked by hand: placement across nodes, objects and results on other nodes, a peer lost.
#[path = "tests_cluster.rs"]
mod cluster;

// Direct actor calls of remote drivers: the home node's records and the actor node's sessions.
#[path = "tests_direct.rs"]
mod direct;

// Names shared through the cluster's directory (faked by hand), detached actors.
#[path = "tests_names.rs"]
mod names_shared;

#[test]
fn finished_tasks_are_recorded_with_the_clock_in_a_bounded_ring() {
    use crate::state::{ListOptions, StateKind, StateQuery, StateRows, TaskStatus};
    let mut h = Harness::new(cpus(1));
    h.st.events.set_capacity(2);
    let mut ids = Vec::new();
    for i in 0..3u64 {
        h.advance(Duration::from_millis(10));
        let spec = h.task(DRIVER, "m::slow", vec![Arg::Value(value(i))]);
        let t = h.submit(DRIVER, spec);
        let w = match h.connect_all().first() {
            Some(w) => *w,
            None => h.st.workers.procs()[0],
        };
        h.advance(Duration::from_millis(5));
        // Started at the submission (the worker was there), ends 5 ms later.
        let rows = |h: &Harness| match h.st.state_rows(&StateQuery {
            kind: StateKind::Tasks,
            options: ListOptions::new(),
        }) {
            StateRows::Tasks(r) => r,
            other => panic!("{other:?}"),
        };
        let running = rows(&h)
            .into_iter()
            .find(|r| r.task_id == t.to_string())
            .unwrap();
        assert_eq!(running.state, TaskStatus::Running);
        assert_eq!(running.worker_pid, Some(1000 + w.index));
        h.msg(
            w,
            FromWorker::TaskDone {
                task: t,
                result: if i == 2 {
                    Err(Error::TaskFailed {
                        function: "m::slow".into(),
                        message: "boom".into(),
                        pid: 1000,
                    })
                } else {
                    Ok(value(i))
                },
            },
        );
        ids.push(t);
        let done = rows(&h);
        let r = done.iter().find(|r| r.task_id == t.to_string()).unwrap();
        assert_eq!(r.name, "slow");
        assert_eq!(r.submitted_us, (i + 1) * 15_000 - 5_000);
        assert_eq!(r.end_us.unwrap() - r.start_us.unwrap(), 5_000);
    }
    let StateRows::Tasks(rows) = h.st.state_rows(&StateQuery {
        kind: StateKind::Tasks,
        options: ListOptions::new(),
    }) else {
        panic!()
    };
    assert_eq!(h.st.events.len(), 2, "the ring keeps the newest two");
    let kept: Vec<String> = rows.iter().map(|r| r.task_id.clone()).collect();
    assert_eq!(kept, [ids[1].to_string(), ids[2].to_string()]);
    assert_eq!(rows[1].state, TaskStatus::Failed);
    assert!(rows[1].error.as_deref().unwrap().contains("boom"));
    assert_eq!(
        (h.st.events.finished_total, h.st.events.failed_total),
        (2, 1)
    );
}
