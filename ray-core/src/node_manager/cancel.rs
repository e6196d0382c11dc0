//! Cancelling tasks and actor calls (`ray::cancel`), and stopping running ones with a given
//! error (placement group removal).
//!
//! [`Cancels`] owns which running tasks are *doomed* (their result, when it comes, is
//! replaced by an error) and which tasks each running task submitted (for recursive
//! cancellation). A task not started yet is failed at once; a running one is told
//! (`ToWorker::Cancel`, so `ray::is_cancelled()` is true in it) or, with `force`, its worker is
//! killed; either way its result reads as the error and it is not retried.

use super::state::NodeState;
use super::tasks::TaskState;
use super::workers::WorkerState;
use crate::codec::Value;
use crate::error::{Error, Result};
use crate::ids::{IdMap, ObjectId, ProcId};
use crate::protocol::worker::{ControlReply, ToWorker};

#[derive(Default)]
pub(crate) struct Cancels {
    /// Running tasks and calls whose result is replaced by this error.
    doomed: IdMap<ObjectId, Error>,
    /// Tasks submitted by a worker while it ran a task: that task → them.
    children: IdMap<ObjectId, Vec<ObjectId>>,
}

fn cancelled(task: ObjectId, function: String, how: &str) -> Error {
    Error::TaskCancelled {
        task,
        function,
        how: how.to_string(),
    }
}

impl NodeState {
    /// Remembers that `task` was submitted by whatever `from` is running (for recursive
    /// cancellation).
    pub(super) fn note_parent(&mut self, from: ProcId, task: ObjectId) {
        if let Some(WorkerState::Busy(parent)) = self.workers.state(from) {
            self.cancels.children.entry(parent).or_default().push(task);
        }
    }

    /// `ray::cancel(task)`.
    pub(super) fn cancel(
        &mut self,
        task: ObjectId,
        force: bool,
        recursive: bool,
    ) -> Result<ControlReply> {
        if force && self.actors.method_of(task).is_some() {
            return Err(Error::InvalidArgument {
                what: "ray::cancel options".into(),
                message: "`force` kills the worker process, which for an actor call would kill \
                          the actor: cancel actor calls without `force`, or use `ray::kill`"
                    .into(),
            });
        }
        if recursive {
            let mut work = vec![task];
            let mut all = Vec::new();
            while let Some(t) = work.pop() {
                if let Some(children) = self.cancels.children.get(&t) {
                    work.extend(children.iter().copied());
                    all.extend(children.iter().copied());
                }
            }
            for child in all {
                self.stop_task(child, force, None);
            }
        }
        self.stop_task(task, force, None);
        Ok(ControlReply::Done)
    }

    /// Stops a task or actor call that has no result yet: one not started never runs, a
    /// running one is told (or its worker killed, with `force`). Its result reads as `error`
    /// (default: `TaskCancelled`).
    pub(super) fn stop_task(&mut self, task: ObjectId, force: bool, error: Option<Error>) {
        let name = self.producer_of(task).unwrap_or_else(|| "?".into());
        let make = |how: &str| {
            error
                .clone()
                .unwrap_or_else(|| cancelled(task, name.clone(), how))
        };
        if let Some(te) = self.tasks.get(task) {
            let started = matches!(te.state, TaskState::Assigned { .. })
                .then(|| self.worker_running(task))
                .flatten();
            match started {
                None => {
                    let NodeState { scheduler, .. } = self;
                    scheduler.queue.retain(|t| *t != task);
                    self.finish_task(task, Err(make(" before it ran")));
                }
                Some(proc) if force => {
                    self.cancels
                        .doomed
                        .insert(task, make(" by killing its worker (force)"));
                    self.stop_worker(proc, "was killed by ray::cancel (force)".into());
                }
                Some(proc) => {
                    self.cancels.doomed.insert(task, make(" while it ran"));
                    self.send(proc, ToWorker::Cancel { task });
                }
            }
            return;
        }
        if let Some(call) = self.actors.take_queued_call(task) {
            self.unpin_args(&call.args);
            self.complete_object(task, Err(make(" before it ran")));
            return;
        }
        if let Some(proc) = self.actors.running_call(task) {
            self.cancels.doomed.insert(task, make(" while it ran"));
            self.send(proc, ToWorker::Cancel { task });
        }
    }

    /// The worker a started task runs on (`None` while its worker is still starting).
    fn worker_running(&self, task: ObjectId) -> Option<ProcId> {
        self.workers
            .procs()
            .into_iter()
            .find(|p| matches!(self.workers.state(*p), Some(WorkerState::Busy(t)) if t == task))
    }

    /// What a task's result becomes: the error it was stopped with, if it was.
    pub(super) fn doomed_result(&mut self, task: ObjectId, result: Result<Value>) -> Result<Value> {
        if self.cancels.doomed.is_empty() {
            return result;
        }
        match self.cancels.doomed.get(&task) {
            Some(e) => Err(e.clone()),
            None => result,
        }
    }

    /// Whether `task` was stopped on purpose (it is then not retried).
    pub(super) fn doomed(&self, task: ObjectId) -> Option<Error> {
        self.cancels.doomed.get(&task).cloned()
    }

    /// A task or call has its result: forget what was kept for cancelling it.
    pub(super) fn cancel_bookkeeping_done(&mut self, task: ObjectId) {
        if !self.cancels.doomed.is_empty() {
            self.cancels.doomed.remove(&task);
        }
        if !self.cancels.children.is_empty() {
            self.cancels.children.remove(&task);
        }
    }
}
