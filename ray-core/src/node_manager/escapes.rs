//! References that left ray serialized (serde into a string, a file, another program): while
//! one is away no process holds it, so the object (or actor) is kept until its owner, the
//! process that made it, exits (as Ray does). Reading the serialized reference back in any
//! process of the job then finds it.

use super::state::NodeState;
use crate::ids::{IdMap, ProcId, RefId};
use std::collections::HashSet;

#[derive(Default)]
pub(crate) struct Escapes {
    /// Owner → the references of its making that escaped (each pinned once).
    by_owner: IdMap<ProcId, Vec<RefId>>,
    pinned: HashSet<RefId>,
}

impl NodeState {
    /// `id` escaped: pin it until its owner exits.
    pub(super) fn escape(&mut self, id: RefId) {
        if !self.escapes.pinned.insert(id) || !self.pin_ref(id) {
            return;
        }
        let owner = match id {
            RefId::Object(o) => o.creator(),
            RefId::Actor(a) => a.creator(),
        };
        self.escapes.by_owner.entry(owner).or_default().push(id);
    }

    /// A process exited: what escaped of its making is released.
    pub(super) fn owner_gone(&mut self, proc: ProcId) {
        if self.escapes.by_owner.is_empty() {
            return;
        }
        let Some(ids) = self.escapes.by_owner.remove(&proc) else {
            return;
        };
        for id in &ids {
            self.escapes.pinned.remove(id);
        }
        self.release_refs(ids);
    }
}
