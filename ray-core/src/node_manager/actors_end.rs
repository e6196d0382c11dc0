//! The end of an actor on this node: `ray::kill` (its node and its creator's hear), and the
//! last handle going (a live actor finishes what it was asked, then exits; a detached one
//! stays until killed; a dead one is forgotten).

use super::*;

impl NodeState {
    pub(crate) fn kill_actor(&mut self, actor: ActorId, cause: &str) {
        let Some(entry) = self.actors.get(actor) else {
            return;
        };
        if matches!(entry.state, ActorState::Dead(_)) {
            return;
        }
        let err = actor_died(&entry.class, cause);
        let runs_at = match entry.state {
            ActorState::Remote(node) => Some(node),
            _ => None,
        };
        if let Some(node) = runs_at {
            self.send_node(node, FromWorker::KillActor { actor });
        }
        // Its creator's node hears of it too (it holds the actor's name, and forwards the
        // kill where the actor runs if this node did not know yet).
        let owner = actor.node();
        if owner != self.node && runs_at != Some(owner) && self.cluster.knows(owner) {
            self.send_node(owner, FromWorker::KillActor { actor });
        }
        self.actor_dead(actor, err);
    }

    /// Called when an actor may have lost its last handle: a live actor finishes what was
    /// submitted, then exits (Ray's semantics); a dead one is forgotten.
    pub(in crate::node_manager) fn check_actor_scope(&mut self, actor: ActorId) {
        let Some(entry) = self.actors.get_mut(actor) else {
            return;
        };
        if !(entry.holders.is_empty() && entry.pins == 0 && entry.drained()) {
            return;
        }
        if entry.detached && !matches!(entry.state, ActorState::Dead(_)) {
            return; // until ray::kill
        }
        match entry.state {
            ActorState::Dead(_) => {
                self.remember_actor(actor);
                self.actors.map.remove(&actor);
            }
            ActorState::Remote(node) => {
                // This node's handles are gone: it stops counting as a holder there.
                self.actors.map.remove(&actor);
                self.send_node(node, FromWorker::DelRef(RefId::Actor(actor)));
            }
            ActorState::Locating => {
                self.actors.map.remove(&actor);
            }
            ActorState::Pending | ActorState::Starting(_) | ActorState::Creating(_) => {
                let err = actor_died(&entry.class, "all handles were dropped before it started");
                self.actor_dead(actor, err);
            }
            ActorState::Alive(proc) => {
                let alloc = entry.alloc.take();
                if let Some(alloc) = alloc {
                    self.resources.release(&alloc);
                }
                self.remember_actor(actor);
                self.actors.map.remove(&actor);
                self.release_actor_name(actor);
                if self.workers.get(proc).is_some() {
                    self.retire(proc);
                    if let Some(w) = self.workers.get_mut(proc) {
                        w.cpu_held = Amount::ZERO;
                    }
                    self.send(proc, ToWorker::Exit);
                }
                self.schedule();
            }
        }
    }
}
