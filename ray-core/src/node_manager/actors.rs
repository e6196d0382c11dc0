//! Actors: creation, method calls in per-caller order, restarts, death.
//!
//! [`Actors`] owns every actor's entry and the queue of actors waiting for resources. An actor
//! is `Pending` until it gets resources and a worker, `Starting` while that worker connects,
//! `Creating` while its constructor runs, then `Alive`; `Dead` keeps the error later calls get.
//! Calls from one caller run in the order they were made; a call whose `ObjectRef` argument is
//! not ready holds back later calls from the same caller only. An actor exits when no process
//! holds its handle and nothing it was asked to do is left (Ray's semantics).

use super::events::Timing;
use super::objects::{Holders, Waiter};
use super::state::NodeState;
use super::workers::WorkerState;
use crate::codec::Value;
use crate::error::{Error, Result};
use crate::ids::{ActorId, IdMap, JobId, NodeId, ObjectId, ProcId, RefId};
use crate::log;
use crate::protocol::worker::{Execute, FromWorker, ToWorker};
use crate::protocol::{ActorSpec, ActorTaskSpec, Arg};
use crate::resources::{Allocation, Amount, ResourceRequest};
use std::collections::VecDeque;

pub(crate) struct ActorCall {
    task: ObjectId,
    method: String,
    pub(super) args: Vec<Arg>,
    /// Who made the call (its queue), and how often it was run again after a restart.
    caller: ProcId,
    retries: u32,
    /// How it returns its values (kept to forward it to the actor's node).
    returns: crate::protocol::Returns,
    /// When it was submitted and sent to the actor (state API, timeline).
    timing: Timing,
}

#[derive(Debug)]
pub(crate) enum ActorState {
    Pending,
    Starting(ProcId),
    Creating(ProcId),
    Alive(ProcId),
    Dead(Error),
    /// It runs on another node: calls go there (this node created it there, or learned
    /// where it is).
    Remote(crate::ids::NodeId),
    /// Created by another node: asking it where the actor runs; calls wait.
    Locating,
}

pub(crate) struct ActorEntry {
    pub class: String,
    /// The job whose executable runs it.
    pub job: JobId,
    pub resources: ResourceRequest,
    max_concurrency: u32,
    pub ctor_args: Option<Vec<Arg>>,
    pub state: ActorState,
    pub alloc: Option<Allocation>,
    pub(super) callers: Vec<(ProcId, VecDeque<ActorCall>)>,
    inflight: IdMap<ObjectId, ActorCall>,
    holders: Holders,
    pins: u32,
    /// Restarts allowed after its process dies, and used so far.
    max_restarts: u32,
    restarts: u32,
    /// Runs of a call after a restart (`max_task_retries`).
    max_task_retries: u32,
    /// `Lifetime::Detached`: kept without handles and beyond its job, until `ray::kill`.
    pub detached: bool,
}

impl ActorEntry {
    /// Restarts so far, and allowed.
    pub(crate) fn restarts(&self) -> u32 {
        self.restarts
    }

    pub(crate) fn max_restarts(&self) -> u32 {
        self.max_restarts
    }

    /// Its calls not done yet: (task, method, timing, whether sent to the actor).
    pub(crate) fn calls(&self) -> impl Iterator<Item = (ObjectId, &str, Timing, bool)> + '_ {
        let running = self
            .inflight
            .values()
            .map(|c| (c.task, c.method.as_str(), c.timing, true));
        let queued = self
            .callers
            .iter()
            .flat_map(|(_, q)| q.iter())
            .map(|c| (c.task, c.method.as_str(), c.timing, false));
        running.chain(queued)
    }

    fn drained(&self) -> bool {
        self.inflight.is_empty() && self.callers.iter().all(|(_, q)| q.is_empty())
    }
}

#[derive(Default)]
pub(crate) struct Actors {
    map: IdMap<ActorId, ActorEntry>,
    /// Actors waiting for resources, in creation order.
    pub pending: VecDeque<ActorId>,
}

impl Actors {
    pub(crate) fn get(&self, id: ActorId) -> Option<&ActorEntry> {
        self.map.get(&id)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&ActorId, &ActorEntry)> {
        self.map.iter()
    }

    pub(crate) fn get_mut(&mut self, id: ActorId) -> Option<&mut ActorEntry> {
        self.map.get_mut(&id)
    }

    pub(crate) fn contains(&self, id: ActorId) -> bool {
        self.map.contains_key(&id)
    }

    pub(crate) fn add_holder(&mut self, id: ActorId, proc: ProcId) {
        if let Some(e) = self.map.get_mut(&id) {
            e.holders.add(proc);
        }
    }

    /// Removes one reference of `proc`; false if it held none.
    pub(crate) fn remove_holder(&mut self, id: ActorId, proc: ProcId) -> bool {
        self.map
            .get_mut(&id)
            .is_some_and(|e| e.holders.remove(proc))
    }

    pub(crate) fn held_by(&self, id: ActorId, proc: ProcId) -> bool {
        self.map.get(&id).is_some_and(|e| e.holders.contains(proc))
    }

    /// Drops a dead process's handles; returns the actors it held.
    pub(crate) fn remove_holder_everywhere(&mut self, proc: ProcId) -> Vec<ActorId> {
        self.map
            .iter_mut()
            .filter_map(|(id, e)| e.holders.remove_all(proc).then_some(*id))
            .collect()
    }

    pub(crate) fn pin(&mut self, id: ActorId) -> bool {
        match self.map.get_mut(&id) {
            Some(e) => {
                e.pins = e.pins.saturating_add(1);
                true
            }
            None => false,
        }
    }

    pub(crate) fn unpin(&mut self, id: ActorId) {
        if let Some(e) = self.map.get_mut(&id) {
            e.pins = e.pins.saturating_sub(1);
        }
    }

    pub(crate) fn is_pending(&self, id: ActorId) -> bool {
        matches!(
            self.map.get(&id).map(|e| &e.state),
            Some(ActorState::Pending)
        )
    }

    pub(crate) fn is_inflight(&self, id: ActorId, task: ObjectId) -> bool {
        self.map
            .get(&id)
            .is_some_and(|e| e.inflight.contains_key(&task))
    }

    /// `Class.method` of the call that makes `task`, if it is queued or running.
    pub(crate) fn method_of(&self, task: ObjectId) -> Option<String> {
        self.map.values().find_map(|e| {
            let call = e.inflight.get(&task).or_else(|| {
                e.callers
                    .iter()
                    .find_map(|(_, q)| q.iter().find(|c| c.task == task))
            })?;
            Some(format!("{}.{}", super::short_name(&e.class), call.method))
        })
    }

    /// A call that has not been sent to the actor yet, taken out of its queue (cancelled).
    pub(super) fn take_queued_call(&mut self, task: ObjectId) -> Option<ActorCall> {
        self.map.values_mut().find_map(|e| {
            e.callers.iter_mut().find_map(|(_, q)| {
                let i = q.iter().position(|c| c.task == task)?;
                q.remove(i)
            })
        })
    }

    /// The worker running call `task`, if it was sent to its actor.
    pub(super) fn running_call(&self, task: ObjectId) -> Option<ProcId> {
        self.map.values().find_map(|e| match e.state {
            ActorState::Alive(p) if e.inflight.contains_key(&task) => Some(p),
            _ => None,
        })
    }

    /// Actors (not dead) placed in a bundle of `group`.
    pub(super) fn in_group(&self, group: crate::ids::PlacementGroupId) -> Vec<ActorId> {
        self.map
            .iter()
            .filter(|(_, e)| {
                !matches!(e.state, ActorState::Dead(_))
                    && e.resources
                        .bundle
                        .as_ref()
                        .is_some_and(|b| b.group == group)
            })
            .map(|(id, _)| *id)
            .collect()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

impl ActorEntry {
    /// The actor's process died and it restarts: calls it was running that may run again go
    /// back to the front of their callers' queues, in order; the others are returned (they
    /// fail).
    fn requeue_for_retry(&mut self) -> Vec<ActorCall> {
        let mut inflight: Vec<ActorCall> = self.inflight.drain().map(|(_, c)| c).collect();
        inflight.sort_by_key(|c| c.task);
        let mut failed = Vec::new();
        for mut call in inflight.into_iter().rev() {
            if call.retries >= self.max_task_retries {
                failed.push(call);
                continue;
            }
            call.retries += 1;
            let caller = call.caller;
            match self.callers.iter_mut().find(|(p, _)| *p == caller) {
                Some((_, q)) => q.push_front(call),
                None => self.callers.push((caller, VecDeque::from([call]))),
            }
        }
        failed
    }
}

pub(crate) fn actor_died(class: &str, cause: impl Into<String>) -> Error {
    Error::ActorDied {
        actor: super::short_name(class).to_string(),
        cause: cause.into(),
        restarting: false,
    }
}

impl NodeState {
    pub(crate) fn create_actor(&mut self, from: ProcId, spec: ActorSpec) {
        let actor = spec.actor;
        if self.actors.contains(actor) {
            return;
        }
        self.need_gpus(&spec.resources);
        let mut entry = ActorEntry {
            class: spec.class,
            job: spec.job,
            resources: spec.resources,
            max_concurrency: spec.max_concurrency,
            ctor_args: None,
            state: ActorState::Pending,
            alloc: None,
            callers: Vec::new(),
            inflight: IdMap::default(),
            holders: Holders::one(from),
            pins: 0,
            max_restarts: spec.max_restarts,
            restarts: 0,
            max_task_retries: spec.ext.max_task_retries,
            detached: spec.ext.detached,
        };
        let dead = if let Some(e) = spec.invalid {
            Some(e)
        } else if spec.ext.detached && !self.in_cluster() {
            Some(Error::NeedsCluster {
                what: format!(
                    "a detached actor (`{}` with `Lifetime::Detached`)",
                    super::short_name(&entry.class)
                ),
                hint: "start a cluster (`ray-rs start --head`) and run the driver with \
                       RAY_ADDRESS set, or drop `.lifetime(Lifetime::Detached)`: a single-node \
                       actor lives as long as its handles and its driver"
                    .into(),
            })
        } else if let Err(e) = self.check_placement(&entry.resources, &entry.class) {
            Some(e)
        } else if let Err((missing, available)) = self.feasible_in_cluster(&entry.resources) {
            Some(Error::Infeasible {
                name: entry.class.clone(),
                requested: missing,
                available,
            })
        } else {
            self.pin_args(&spec.args).err()
        };
        match dead {
            Some(e) => {
                entry.state = ActorState::Dead(e);
                self.release_actor_name(actor);
            }
            None => {
                entry.ctor_args = Some(spec.args);
                self.actors.pending.push_back(actor);
            }
        }
        self.actors.map.insert(actor, entry);
        self.schedule();
    }

    pub(crate) fn submit_actor_task(&mut self, from: ProcId, spec: ActorTaskSpec) {
        let task = spec.task;
        if !self.objects.create_pending(task, from) {
            return;
        }
        self.know_actor(spec.actor);
        self.open_returns(from, task, &spec.returns);
        let dead = match self.actors.get(spec.actor) {
            None => Some(Error::ActorDied {
                actor: format!("actor {}", spec.actor),
                cause: "no such actor: it exited or belongs to an earlier ray runtime".into(),
                restarting: false,
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
            caller: from,
            retries: 0,
            returns: spec.returns,
            timing: Timing {
                submitted_us: self.now_us,
                started_us: 0,
                pid: 0,
            },
        };
        let entry = self.actors.get_mut(spec.actor).expect("checked above");
        match entry.callers.iter_mut().find(|(p, _)| *p == from) {
            Some((_, q)) => q.push_back(call),
            None => entry.callers.push((from, VecDeque::from([call]))),
        }
        self.pump_actor(spec.actor);
    }

    /// The actor's worker connected: run its constructor there.
    pub(super) fn start_actor_on(&mut self, proc: ProcId, actor: ActorId) {
        let Some(entry) = self.actors.get(actor) else {
            return self.make_idle(proc);
        };
        let (ctor_args, class) = (
            entry.ctor_args.clone().unwrap_or_default(),
            entry.class.clone(),
        );
        let args = match self.resolve_args(&ctor_args) {
            Ok(a) => a,
            Err(e) => {
                let err = actor_died(&class, format!("a constructor argument failed: {e}"));
                self.actor_dead(actor, err);
                return;
            }
        };
        let entry = self.actors.get_mut(actor).expect("present");
        entry.state = ActorState::Creating(proc);
        let gpu_ids = entry
            .alloc
            .as_ref()
            .map(|a| a.gpu_ids())
            .unwrap_or_default();
        let cpu = entry.alloc.as_ref().map(|a| a.cpu).unwrap_or_default();
        let exec = Execute::CreateActor {
            actor,
            class,
            args,
            gpu_ids,
            max_concurrency: entry.max_concurrency,
        };
        self.hand_to_worker(proc, WorkerState::Actor(actor), cpu, exec);
    }

    /// The actor's constructor ran (in worker `from`, which must be the one creating it).
    pub(crate) fn actor_created(
        &mut self,
        from: ProcId,
        actor: ActorId,
        result: Result<()>,
    ) -> Result<(), String> {
        let Some(entry) = self.actors.get_mut(actor) else {
            return Err(format!(
                "ActorCreated for actor {actor}, which does not exist"
            ));
        };
        if !matches!(entry.state, ActorState::Creating(p) if p == from) {
            return Err(format!(
                "ActorCreated for actor {actor}, which it was not creating"
            ));
        }
        // The constructor's arguments stay pinned while a restart may need them.
        let mut unpin = None;
        if result.is_err() || entry.restarts >= entry.max_restarts {
            unpin = entry.ctor_args.take();
        }
        match result {
            Ok(()) => {
                entry.state = ActorState::Alive(from);
                if let Some(args) = unpin {
                    self.unpin_args(&args);
                }
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
                if let Some(args) = unpin {
                    self.unpin_args(&args);
                }
                self.actor_dead(actor, err);
            }
        }
        Ok(())
    }

    /// A method call finished (its worker reported `result`).
    pub(super) fn actor_call_done(
        &mut self,
        actor: ActorId,
        task: ObjectId,
        result: Result<Value>,
    ) {
        let Some(call) = self
            .actors
            .get_mut(actor)
            .and_then(|e| e.inflight.remove(&task))
        else {
            return;
        };
        self.unpin_args(&call.args);
        let attempts = call.retries + 1;
        let ended = super::events::Ended {
            attempts,
            error: result.as_ref().err(),
            ran_on: None,
        };
        self.record_finished(task, call.method, Some(actor), call.timing, ended);
        self.complete_object(task, result);
        self.check_actor_scope(actor);
    }

    /// Sends every call whose turn has come and whose arguments are ready.
    pub(super) fn pump_actor(&mut self, actor: ActorId) {
        let Some(entry) = self.actors.get(actor) else {
            return;
        };
        let proc = match entry.state {
            ActorState::Alive(proc) => proc,
            ActorState::Remote(node) => return self.forward_calls(actor, node),
            _ => return,
        };
        let mut sendable: Vec<ActorCall> = Vec::new();
        let mut wait_on: Vec<ObjectId> = Vec::new();
        {
            let NodeState {
                actors, objects, ..
            } = self;
            let entry = actors.get_mut(actor).expect("present");
            for (_, queue) in entry.callers.iter_mut() {
                while let Some(call) = queue.front() {
                    let pending = call.args.iter().find_map(|a| match a {
                        Arg::Ref(id) if objects.get(*id).is_some_and(|e| !e.is_local()) => {
                            Some(*id)
                        }
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
            self.ensure_local(id);
            if let Some(e) = self.objects.get_mut(id) {
                if !e.waiters.contains(&Waiter::Actor(actor)) {
                    e.waiters.push(Waiter::Actor(actor));
                }
            }
        }
        let pid = self.pid_of(proc);
        for mut call in sendable {
            call.timing.started_us = self.now_us;
            call.timing.pid = pid;
            match self.resolve_args(&call.args) {
                Ok(args) => {
                    self.send(
                        proc,
                        ToWorker::Execute(Execute::ActorTask {
                            task: call.task,
                            method: call.method.clone(),
                            args,
                        }),
                    );
                    if let Some(entry) = self.actors.get_mut(actor) {
                        entry.inflight.insert(call.task, call);
                    }
                }
                Err(e) => {
                    self.unpin_args(&call.args);
                    self.complete_object(call.task, Err(e));
                }
            }
        }
    }

    /// The actor is dead: fail everything queued or running, free its resources and worker.
    pub(super) fn actor_dead(&mut self, actor: ActorId, err: Error) {
        self.release_actor_name(actor);
        let Some(entry) = self.actors.get_mut(actor) else {
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
        self.actors.pending.retain(|a| *a != actor);
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
                self.workers.get(p).is_some().then_some(p)
            }
            _ => None,
        };
        match worker {
            Some(p) => {
                self.retire(p);
                if let Some(w) = self.workers.get_mut(p) {
                    w.deferred_unpin.extend(deferred);
                }
                self.effects.push(super::effects::Effect::Kill(p));
            }
            None => to_unpin.extend(deferred),
        }
        self.unpin_args(&to_unpin);
        for call in inflight.into_iter().chain(queued) {
            let attempts = u32::from(call.timing.started_us != 0) + call.retries;
            let ended = super::events::Ended {
                attempts,
                error: Some(&err),
                ran_on: None,
            };
            self.record_finished(call.task, call.method, Some(actor), call.timing, ended);
            self.complete_object(call.task, Err(err.clone()));
        }
        self.check_actor_scope(actor);
        self.schedule();
    }

    /// The actor's process died. Within `max_restarts` the actor starts again in a new worker
    /// (its constructor runs again): the calls it was running fail, calls not sent yet wait for
    /// the new instance. Beyond that, the actor is dead.
    pub(super) fn actor_process_died(&mut self, actor: ActorId, pid: u32, cause: &str) {
        let Some(entry) = self.actors.get_mut(actor) else {
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
        log::warn!(
            "actor {class}: worker pid {pid} {cause}; restarting ({} of {})",
            entry.restarts,
            entry.max_restarts
        );
        let err = Error::ActorDied {
            actor: super::short_name(&class).to_string(),
            cause: format!(
                "its worker process (pid {pid}) {cause} while running this call; the actor is \
                 restarting ({} of {} restarts)",
                entry.restarts, entry.max_restarts
            ),
            restarting: true,
        };
        let inflight: Vec<ActorCall> = entry.requeue_for_retry();
        entry.state = ActorState::Pending;
        if let Some(alloc) = entry.alloc.take() {
            self.resources.release(&alloc);
        }
        self.actors.pending.push_back(actor);
        for call in inflight {
            self.unpin_args(&call.args);
            self.complete_object(call.task, Err(err.clone()));
        }
        self.schedule();
    }
}

// Actors on other nodes: locating them, forwarding calls, placing them there, and their
// node going away.
#[path = "actors_remote.rs"]
mod remote;

// The end of an actor: killed, or out of scope.
#[path = "actors_end.rs"]
mod end;
