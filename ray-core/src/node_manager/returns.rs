//! Calls with several return values (`num_returns = n`): return value `i` is object
//! `task + i`, made by the caller with the task's id; the worker sends all values in one
//! `TaskReturns`, and they are completed together with the first (or all fail together).

use super::state::NodeState;
use crate::codec::Value;
use crate::error::{Error, Result};
use crate::ids::{IdMap, ObjectId, ProcId, RefId};
use crate::protocol::Returns;

/// At most this many return values per call (a bound on what a worker may ask to create).
pub(crate) const MAX_RETURNS: u32 = 1 << 16;

/// A call's return values as any sender may ask for them (a peer too, whose ids are not
/// checked one by one): at most [`MAX_RETURNS`], their ids inside the id range of the task's
/// creator (so they are all its ids), and a streaming call has only one.
pub(super) fn check_shape(task: ObjectId, returns: &Returns) -> Result<(), String> {
    if returns.extra >= MAX_RETURNS {
        return Err(format!(
            "a call with {} return values",
            u64::from(returns.extra) + 1
        ));
    }
    if returns.extra > 0 && returns.stream.is_some() {
        return Err("a streaming call with several return values".into());
    }
    if (task.0 as u64)
        .checked_add(u64::from(returns.extra))
        .is_none()
    {
        return Err(format!("return values past the id range of {task}"));
    }
    Ok(())
}

#[derive(Default)]
pub(crate) struct MultiReturns {
    /// Calls with more than one return value: first object → how many follow it.
    extra: IdMap<ObjectId, u32>,
    /// The values after the first, received and waiting for the first to complete.
    stashed: IdMap<ObjectId, Vec<Value>>,
}

impl NodeState {
    /// The ids of a call's other return values must be fresh ids of the caller's, like the
    /// first.
    pub(super) fn fresh_returns(
        &self,
        from: ProcId,
        task: ObjectId,
        returns: &Returns,
    ) -> Result<(), String> {
        check_shape(task, returns)?;
        for i in 1..=returns.extra {
            self.fresh(from, RefId::Object(task.nth_return(i)))?;
        }
        Ok(())
    }

    /// At submission: the other return values' objects, held by the caller.
    pub(super) fn open_returns(&mut self, from: ProcId, task: ObjectId, returns: &Returns) {
        if returns.stream.is_some() {
            self.open_stream(from, task, returns.stream.unwrap_or(0));
        }
        if returns.extra == 0 {
            return;
        }
        for i in 1..=returns.extra {
            self.objects.create_pending(task.nth_return(i), from);
        }
        self.returns.extra.insert(task, returns.extra);
    }

    /// The values after the first of a call that ran on another node, kept until the first
    /// completes (then `on_completed` completes them). Dropped if the call has no other
    /// values waiting here (the reply's length was checked against what was asked).
    pub(super) fn stash_returns(&mut self, task: ObjectId, rest: Vec<Value>) {
        if !rest.is_empty() && self.returns.extra.contains_key(&task) {
            self.returns.stashed.insert(task, rest);
        }
    }

    /// A worker's `TaskReturns`: checked like `TaskDone`, and every value must be there.
    pub(super) fn task_returns(
        &mut self,
        from: ProcId,
        task: ObjectId,
        result: Result<Vec<Value>>,
    ) -> Result<(), String> {
        let mut values = match result {
            Err(e) => return self.task_done(from, task, Err(e)),
            Ok(v) => v,
        };
        let expected = self.returns.extra.get(&task).map(|n| *n as usize + 1);
        if expected != Some(values.len()) || !self.runs(from, task) {
            return Err(format!(
                "{} return values for task {task}, which it was not given or which has {}",
                values.len(),
                expected.unwrap_or(1)
            ));
        }
        let first = values.remove(0);
        for v in &values {
            self.accept_value(from, v)?;
        }
        self.returns.stashed.insert(task, values);
        self.task_done(from, task, Ok(first))
    }

    /// Whether `from` was given `task` to run (a task, or a call of its actor).
    pub(super) fn runs(&self, from: ProcId, task: ObjectId) -> bool {
        use super::workers::WorkerState;
        match self.workers.state(from) {
            Some(WorkerState::Busy(t)) => t == task,
            Some(WorkerState::Actor(a)) => self.actors.is_inflight(a, task),
            _ => false,
        }
    }

    /// An object got its result: for the first of several return values, the others get
    /// theirs (or the same error). Also the end of a stream, and the end of cancel
    /// bookkeeping.
    pub(super) fn on_completed(&mut self, id: ObjectId, result: &Result<Value>) {
        self.cancel_bookkeeping_done(id);
        if result.is_err() {
            self.note_failed(id);
        }
        if !self.generators.is_empty() {
            self.stream_ended(id, result.is_ok());
        }
        if self.returns.extra.is_empty() {
            return;
        }
        let Some(n) = self.returns.extra.remove(&id) else {
            return;
        };
        let stash = self.returns.stashed.remove(&id);
        let rest: Vec<Result<Value>> = match (result, stash) {
            (Ok(_), Some(values)) => values.into_iter().map(Ok).collect(),
            (Ok(_), None) => (1..=n)
                .map(|_| {
                    Err(Error::object_lost(
                        id,
                        format!(
                            "the call sent one value, but it has {} return values",
                            n + 1
                        ),
                    ))
                })
                .collect(),
            (Err(e), stash) => {
                for (i, v) in stash.into_iter().flatten().enumerate() {
                    self.stored(id.nth_return(i as u32 + 1), &v, false);
                }
                (1..=n).map(|_| Err(e.clone())).collect()
            }
        };
        for (i, r) in rest.into_iter().enumerate() {
            self.complete_object(id.nth_return(i as u32 + 1), r);
        }
    }
}
