//! Lineage: how an owner rebuilds an object whose only copy was on a node that died.
//!
//! A task this node owns that ran on a peer and left its (large) result in that peer's store
//! is remembered here with its spec when it finishes: its arguments stay referenced (not "in
//! use": they may still be spilled) for as long as the object lives, and are let go with it.
//! When that peer dies, or copying the value from it fails, the object is pending again and
//! the task runs again (elsewhere) within its `max_retries`; arguments that were lost too are
//! rebuilt the same way first, since every lost object is reset before any task is run again.
//! Objects that cannot be rebuilt (a `put`, an actor call's result, retries used up) fail with
//! `ObjectLost` naming the object and the node; objects borrowed from an owner that died fail
//! the same way unless a copy is on this node.

use super::objects::ObjState;
use super::state::NodeState;
use crate::codec::{Data, Value};
use crate::error::Error;
use crate::ids::{IdMap, NodeId, ObjectId, RefId};
use crate::log;
use crate::protocol::{Arg, TaskSpec};

/// A finished task whose result lives on another node.
pub(crate) struct Recipe {
    spec: TaskSpec,
    /// How often it was started so far.
    attempts: u32,
}

/// The recipes of this node's objects that live on peers.
#[derive(Default)]
pub(crate) struct Lineage {
    recipes: IdMap<ObjectId, Recipe>,
}

impl Lineage {
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.recipes.len()
    }
}

/// What `args` reference (the pins a task holds on them).
fn arg_refs(args: &[Arg]) -> Vec<RefId> {
    let mut refs = Vec::new();
    for arg in args {
        match arg {
            Arg::Ref(id) => refs.push(RefId::Object(*id)),
            Arg::Value(v) => refs.extend(v.contained.iter().copied()),
        }
    }
    refs
}

impl NodeState {
    /// `spec` finished on a peer and its result stays there: keep how to make it again. The
    /// recipe takes over the task's pins on its arguments (no longer in use by a pending task).
    pub(super) fn keep_lineage(&mut self, spec: TaskSpec, attempts: u32) {
        for arg in &spec.args {
            if let Arg::Ref(id) = arg {
                if let Some(e) = self.objects.get_mut(*id) {
                    e.in_use = e.in_use.saturating_sub(1);
                }
            }
        }
        let task = spec.task;
        if let Some(old) = self.lineage.recipes.insert(task, Recipe { spec, attempts }) {
            let refs = arg_refs(&old.spec.args);
            self.release_refs(refs);
        }
    }

    /// Object `id` left the directory: what its recipe kept alive, to be released.
    pub(super) fn lineage_released(&mut self, id: ObjectId) -> Vec<RefId> {
        match self.lineage.recipes.remove(&id) {
            Some(r) => arg_refs(&r.spec.args),
            None => Vec::new(),
        }
    }

    /// Node `dead` is gone: every object of this node whose value was only there is rebuilt
    /// or fails, and borrowed objects whose owner it was fail unless a copy is here.
    pub(super) fn objects_lost_with(&mut self, dead: NodeId, why: &str) {
        let mut lost = Vec::new();
        let mut orphaned = Vec::new();
        for (id, e) in self.objects.iter() {
            let remote_there = matches!(
                &e.state,
                ObjState::Ready(Value { data: Data::Remote { node, .. }, .. }) if *node == dead
            );
            if id.node() == self.node && remote_there {
                lost.push(*id);
            } else if id.node() == dead && (remote_there || !e.is_done()) {
                orphaned.push(*id);
            }
        }
        for id in orphaned {
            let err = Error::object_lost(
                id,
                format!("its owner, {dead}, died ({why}), and no copy of it is on this node"),
            );
            self.fail_object(id, err);
        }
        self.rebuild(lost, dead, why);
    }

    /// The value of `id` (this node's) could not be copied from `from`: rebuilt if it can be.
    /// False if it has no recipe (the caller fails it).
    pub(super) fn rebuild_after_failed_pull(
        &mut self,
        id: ObjectId,
        from: NodeId,
        why: &str,
    ) -> bool {
        if id.node() != self.node || !self.lineage.recipes.contains_key(&id) {
            return false;
        }
        self.rebuild(vec![id], from, why);
        true
    }

    /// Makes `lost` pending again, then runs again the task of each one that has a recipe and
    /// retries left; the others fail with `ObjectLost`.
    fn rebuild(&mut self, lost: Vec<ObjectId>, node: NodeId, why: &str) {
        for id in &lost {
            if let Some(e) = self.objects.get_mut(*id) {
                e.state = ObjState::Pending;
                e.held_at = None;
                e.pulling = false;
            }
        }
        for id in lost {
            let recipe = self.lineage.recipes.remove(&id);
            match recipe {
                Some(r) if r.attempts <= r.spec.max_retries && !self.shutting_down => {
                    log::warn!(
                        "object {id} was lost with {node} ({why}); running `{}` again to rebuild \
                         it (attempt {} of {})",
                        r.spec.function,
                        r.attempts + 1,
                        r.spec.max_retries + 1
                    );
                    self.rerun_task(r.spec, r.attempts);
                }
                other => {
                    let how = match &other {
                        Some(r) => format!(
                            "its task `{}` ran {} time(s), its max_retries allow no more",
                            r.spec.function, r.attempts
                        ),
                        None => "it was made by ray::put or an actor call, which cannot be \
                                 run again"
                            .to_string(),
                    };
                    if let Some(r) = other {
                        let refs = arg_refs(&r.spec.args);
                        self.release_refs(refs);
                    }
                    let err = Error::object_lost(
                        id,
                        format!("its only copy was on {node}, which is gone ({why}); {how}"),
                    );
                    self.fail_object(id, err);
                }
            }
        }
        self.schedule();
    }

    /// `id` fails with `err` (whatever state it was in), and its waiters hear.
    fn fail_object(&mut self, id: ObjectId, err: Error) {
        if let Some(e) = self.objects.get_mut(id) {
            e.state = ObjState::Pending;
            e.pulling = false;
        }
        self.complete_object(id, Err(err));
    }
}
