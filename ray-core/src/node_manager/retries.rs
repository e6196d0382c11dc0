//! Retries beyond worker crashes: panics of tasks with `retry_exceptions`, and workers
//! replaced after `max_calls` calls of a function. (Actor calls in flight when the actor
//! restarts are retried within `max_task_retries` by `actors.rs`.)

use super::state::NodeState;
use crate::codec::Value;
use crate::error::{Error, Result};
use crate::ids::{IdMap, ObjectId, ProcId};
use crate::log;
use crate::protocol::worker::ToWorker;

#[derive(Default)]
pub(crate) struct Retries {
    /// Calls per function run by each task worker, for functions with `max_calls`.
    calls: IdMap<ProcId, Vec<(String, u32)>>,
}

impl NodeState {
    /// A task panicked: with `retry_exceptions` and retries left, it goes back to the queue
    /// (true); otherwise its error stands (false).
    pub(super) fn retry_panic(&mut self, task: ObjectId, result: &Result<Value>) -> bool {
        let Err(Error::TaskFailed { message, .. }) = result else {
            return false;
        };
        let Some(te) = self.tasks.get(task) else {
            return false;
        };
        if !te.spec.ext.retry_exceptions
            || te.attempts() > te.spec.max_retries
            || self.shutting_down
            || self.doomed(task).is_some()
        {
            return false;
        }
        log::warn!(
            "`{}` panicked ({message}); retrying (attempt {} of {}, retry_exceptions)",
            te.spec.function,
            te.attempts() + 1,
            te.spec.max_retries + 1
        );
        self.requeue(task);
        self.schedule();
        true
    }

    /// A task worker finished `task`: it takes the next one, or (`max_calls` reached) exits.
    pub(super) fn task_worker_done(&mut self, proc: ProcId, task: ObjectId) {
        let limit = self
            .tasks
            .get(task)
            .map(|te| (te.spec.ext.max_calls, te.spec.function.clone()));
        let Some((max_calls, function)) = limit.filter(|(n, _)| *n > 0) else {
            return self.make_idle(proc);
        };
        let counts = self.retries.calls.entry(proc).or_default();
        let n = match counts.iter_mut().find(|(f, _)| *f == function) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                counts.push((function, 1));
                1
            }
        };
        if n >= max_calls {
            self.retries.calls.remove(&proc);
            self.retire(proc);
            self.send(proc, ToWorker::Exit);
        } else {
            self.make_idle(proc);
        }
    }

    /// A worker is gone.
    pub(super) fn forget_calls(&mut self, proc: ProcId) {
        if !self.retries.calls.is_empty() {
            self.retries.calls.remove(&proc);
        }
    }
}
