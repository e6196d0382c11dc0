//! Normal tasks: submission, dispatch to a worker, completion, retries.
//!
//! [`Tasks`] owns the tasks this node runs, from submission until their result is stored. A
//! task is `WaitingDeps` until its `ObjectRef` arguments are done (wherever their bytes are),
//! then `Queued` in the ready queue ([`super::scheduler`]) — or `Forwarded` at once to the
//! peer that holds most of its arguments' bytes, if that peer has room. A task the scheduler
//! picks here is `Fetching` (holding its resources) while arguments on other nodes are copied
//! here, then `Assigned` to a worker. Only the worker a task was given may report its result.

use super::events::Timing;
use super::objects::Waiter;
use super::state::NodeState;
use super::workers::{Assignment, WorkerState};
use crate::codec::Value;
use crate::error::{Error, Result};
use crate::ids::{IdMap, ObjectId, ProcId};
use crate::log;
use crate::protocol::TaskSpec;
use crate::protocol::worker::Execute;
use crate::resources::Allocation;

pub(crate) struct TaskEntry {
    pub spec: TaskSpec,
    missing_deps: usize,
    attempts: u32,
    pub state: TaskState,
    /// When it was submitted and started, and by which process (state API, timeline).
    pub timing: Timing,
}

impl TaskEntry {
    /// How many times it was started.
    pub(crate) fn attempts(&self) -> u32 {
        self.attempts
    }
}

pub(crate) enum TaskState {
    WaitingDeps,
    Queued,
    /// Picked to run here; arguments on other nodes are being copied here.
    Fetching {
        alloc: Allocation,
    },
    Assigned {
        alloc: Allocation,
    },
    /// Sent to another node to run there.
    Forwarded {
        node: crate::ids::NodeId,
    },
}

#[derive(Default)]
pub(crate) struct Tasks {
    map: IdMap<ObjectId, TaskEntry>,
}

impl Tasks {
    pub(crate) fn get(&self, id: ObjectId) -> Option<&TaskEntry> {
        self.map.get(&id)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&ObjectId, &TaskEntry)> {
        self.map.iter()
    }

    pub(crate) fn contains(&self, id: ObjectId) -> bool {
        self.map.contains_key(&id)
    }

    pub(crate) fn set_state(&mut self, id: ObjectId, state: TaskState) {
        if let Some(t) = self.map.get_mut(&id) {
            t.state = state;
        }
    }

    /// The task was started once more (here, or sent to a peer).
    pub(crate) fn count_attempt(&mut self, id: ObjectId) {
        if let Some(t) = self.map.get_mut(&id) {
            t.attempts += 1;
        }
    }

    /// Tasks not yet running that ask for a GPU (judged once the GPUs are counted).
    pub(super) fn waiting_for_gpus(&self) -> Vec<ObjectId> {
        self.map
            .iter()
            .filter(|(_, t)| {
                matches!(t.state, TaskState::WaitingDeps | TaskState::Queued)
                    && !t.spec.resources.gpu.is_zero()
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// Tasks (not finished) that run or wait to run in a bundle of `group`.
    pub(super) fn in_group(&self, group: crate::ids::PlacementGroupId) -> Vec<ObjectId> {
        self.map
            .iter()
            .filter(|(_, t)| {
                t.spec
                    .resources
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

impl NodeState {
    pub(crate) fn submit_task(&mut self, from: ProcId, spec: TaskSpec) {
        let task = spec.task;
        if !self.objects.create_pending(task, from) {
            return;
        }
        self.open_returns(from, task, &spec.ext.returns);
        self.note_parent(from, task);
        self.need_gpus(&spec.resources);
        if let Err(e) = self.check_placement(&spec.resources, &spec.function) {
            self.complete_object(task, Err(e));
            return;
        }
        let feasible = self.feasible_in_cluster(&spec.resources);
        if let Err((missing, available)) = feasible {
            let err = Error::Infeasible {
                name: spec.function.clone(),
                requested: missing,
                available,
            };
            self.complete_object(task, Err(err));
            return;
        }
        if let Err(e) = self.pin_args(&spec.args) {
            self.complete_object(task, Err(e));
            return;
        }
        if self.enter_task(spec, 0) {
            self.schedule();
        }
    }

    /// Adds `spec` (its arguments pinned, started `attempts` times before) waiting for its
    /// arguments; true if they are all there and it went on to be placed.
    fn enter_task(&mut self, spec: TaskSpec, attempts: u32) -> bool {
        let task = spec.task;
        let missing_deps = self.register_deps(&spec.args, Waiter::Task(task), false);
        self.tasks.map.insert(
            task,
            TaskEntry {
                spec,
                missing_deps,
                attempts,
                state: TaskState::WaitingDeps,
                timing: Timing {
                    submitted_us: self.now_us,
                    started_us: 0,
                    pid: 0,
                },
            },
        );
        if missing_deps == 0 {
            self.task_ready(task);
        }
        missing_deps == 0
    }

    /// Every argument of `task` is done: it goes to the peer holding most of their bytes if
    /// that peer has room now, else into the ready queue here.
    fn task_ready(&mut self, task: ObjectId) {
        let Some(te) = self.tasks.map.get(&task) else {
            return;
        };
        // A task another node sent runs here: that node placed it (by locality too), and a
        // node may submit only under ids its own processes made.
        let elsewhere = match task.node() != self.node || self.stream_started_here(task) {
            true => None,
            false => self.place_by_locality(&te.spec.resources, &te.spec.args),
        };
        if let Some(node) = elsewhere {
            if self.forward_task(task, node) {
                return;
            }
        }
        let te = self.tasks.map.get_mut(&task).expect("present");
        te.state = TaskState::Queued;
        self.scheduler.queue.push(&te.spec.resources, task);
    }

    /// One of a task's arguments is done (or, while `Fetching`, copied here); true if the
    /// task is now ready to be scheduled.
    pub(super) fn dependency_done(&mut self, task: ObjectId) -> bool {
        let Some(te) = self.tasks.map.get_mut(&task) else {
            return false;
        };
        te.missing_deps = te.missing_deps.saturating_sub(1);
        if te.missing_deps > 0 {
            return false;
        }
        match std::mem::replace(&mut te.state, TaskState::Queued) {
            TaskState::WaitingDeps => {
                te.state = TaskState::WaitingDeps;
                self.task_ready(task);
                true
            }
            TaskState::Fetching { alloc } => {
                self.assign_task(task, alloc);
                false
            }
            other => {
                te.state = other;
                false
            }
        }
    }

    /// The scheduler picked `task` and reserved `alloc` for it: once its arguments are here,
    /// give it a worker.
    pub(super) fn assign_task(&mut self, task: ObjectId, alloc: Allocation) {
        let Some(te) = self.tasks.map.get(&task) else {
            self.resources.release(&alloc);
            return;
        };
        let args = te.spec.args.clone();
        let fetching = self.fetch_args(&args, Waiter::Task(task), false);
        let te = self.tasks.map.get_mut(&task).expect("present");
        if fetching > 0 {
            te.missing_deps = fetching;
            te.state = TaskState::Fetching { alloc };
            return;
        }
        let key = (te.spec.job, alloc.gpu_ids());
        te.state = TaskState::Assigned { alloc };
        if let Some(proc) = self.workers.find_idle(&key) {
            self.start_task_on(proc, task);
        } else if let Some(proc) = self.workers.find_prestarted(&key) {
            self.workers
                .set_state(proc, WorkerState::Starting(Some(Assignment::Task(task))));
        } else if self
            .start_worker(key.0, key.1, Some(Assignment::Task(task)))
            .is_none()
        {
            let err = Error::WorkerStartFailed {
                cause: format!("{} is not running on {}", key.0, self.node),
            };
            self.finish_task(task, Err(err));
        }
    }

    /// Sends an assigned task to its (connected) worker.
    pub(super) fn start_task_on(&mut self, proc: ProcId, task: ObjectId) {
        let spec_args = match self.tasks.map.get(&task) {
            Some(te) => te.spec.args.clone(),
            None => return self.make_idle(proc),
        };
        let args = match self.resolve_args(&spec_args) {
            Ok(a) => a,
            Err(e) => {
                self.make_idle(proc);
                self.finish_task(task, Err(e));
                return;
            }
        };
        let te = self.tasks.map.get_mut(&task).expect("present");
        te.attempts += 1;
        te.timing.started_us = self.now_us;
        te.timing.pid = self.workers.get(proc).map(|w| w.pid).unwrap_or(0);
        let TaskState::Assigned { alloc } = &te.state else {
            unreachable!("a task is assigned before it is started")
        };
        let (gpu_ids, cpu) = (alloc.gpu_ids(), alloc.cpu);
        let exec = Execute::Task {
            task,
            function: te.spec.function.clone(),
            args,
            gpu_ids,
        };
        self.hand_to_worker(proc, WorkerState::Busy(task), cpu, exec);
    }

    /// Ends a task for good: releases its resources and argument pins, stores its result.
    pub(super) fn finish_task(&mut self, task: ObjectId, result: Result<Value>) {
        let Some(te) = self.tasks.map.remove(&task) else {
            return;
        };
        if let TaskState::Assigned { alloc } | TaskState::Fetching { alloc } = &te.state {
            self.resources.release(alloc);
        }
        let attempts = te.attempts;
        let timing = te.timing;
        let ran_on = match te.state {
            TaskState::Forwarded { node } => Some(node),
            _ => None,
        };
        // A result left in a peer's store may have to be made again if that peer dies.
        let stays_there = matches!(
            &result,
            Ok(Value {
                data: crate::codec::Data::Remote { .. },
                ..
            })
        );
        let function = if ran_on.is_some() && stays_there && te.spec.single_return() {
            let function = te.spec.function.clone();
            self.keep_lineage(te.spec, attempts);
            function
        } else {
            self.unpin_args(&te.spec.args);
            te.spec.function
        };
        let ended = super::events::Ended {
            attempts,
            error: result.as_ref().err(),
            ran_on,
        };
        self.record_finished(task, function, None, timing, ended);
        self.complete_object(task, result);
        self.schedule();
    }

    /// A worker reports a result. Only the worker running `task` may, and a value in the
    /// store must be sealed by it; `Err` says what was wrong (the object then fails, so that
    /// nobody waits for it forever, and the worker is stopped).
    pub(super) fn task_done(
        &mut self,
        from: ProcId,
        task: ObjectId,
        result: Result<Value>,
    ) -> Result<(), String> {
        let actor = match self.workers.state(from) {
            Some(WorkerState::Busy(t)) if t == task => None,
            Some(WorkerState::Actor(a)) if self.actors.is_inflight(a, task) => Some(a),
            _ => return Err(format!("a result for task {task}, which it was not given")),
        };
        let checked = match &result {
            Ok(v) => self.accept_value(from, v),
            Err(_) => Ok(()),
        };
        let result = match checked {
            Ok(()) => result,
            Err(_) => Err(Error::object_lost(
                task,
                "the worker that ran its task sent an invalid result and was stopped",
            )),
        };
        let result = self.doomed_result(task, result);
        match actor {
            None if checked.is_ok() => {
                self.task_worker_done(from, task);
                if !self.retry_panic(task, &result) {
                    self.finish_task(task, result);
                }
            }
            None => {
                self.retire(from);
                self.finish_task(task, result);
            }
            Some(a) => self.actor_call_done(a, task, result),
        }
        checked
    }

    /// Runs a finished task again to rebuild its lost result ([`super::lineage`]): its
    /// object is pending again, and its arguments are still referenced by its recipe, whose
    /// pins this entry takes over.
    pub(super) fn rerun_task(&mut self, spec: TaskSpec, attempts: u32) {
        for arg in &spec.args {
            if let crate::protocol::Arg::Ref(id) = arg {
                if let Some(e) = self.objects.get_mut(*id) {
                    e.in_use += 1;
                }
            }
        }
        self.enter_task(spec, attempts);
    }

    /// A task goes back to the ready queue (its worker could not start or died).
    pub(super) fn requeue(&mut self, task: ObjectId) {
        let Some(te) = self.tasks.map.get_mut(&task) else {
            return;
        };
        if let TaskState::Assigned { alloc } | TaskState::Fetching { alloc } =
            std::mem::replace(&mut te.state, TaskState::Queued)
        {
            self.resources.release(&alloc);
        }
        self.scheduler.queue.push(&te.spec.resources, task);
    }

    /// The worker running `task` died: run it again within `max_retries`, else fail it.
    pub(super) fn retry_or_fail(&mut self, task: ObjectId, pid: u32, cause: &str) {
        if let Some(e) = self.doomed(task) {
            return self.finish_task(task, Err(e));
        }
        let Some(te) = self.tasks.map.get(&task) else {
            return;
        };
        if te.attempts <= te.spec.max_retries && !self.shutting_down {
            log::warn!(
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

    /// The task or actor method that makes object `id`, if it is still running here.
    pub(crate) fn producer_of(&self, id: ObjectId) -> Option<String> {
        if let Some(te) = self.tasks.get(id) {
            return Some(super::short_name(&te.spec.function).to_string());
        }
        self.actors.method_of(id)
    }
}
