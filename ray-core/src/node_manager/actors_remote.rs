//! Actors on other nodes, seen from one node: an entry for an actor another node made
//! (located by asking its creator), calls forwarded to the actor's node in order, pending
//! actors placed on a peer with room, and what happens when that peer goes away (a restart
//! elsewhere within `max_restarts`, or `ActorDied`).

use super::*;

impl NodeState {
    /// Makes sure this node has an entry for `actor`: one that asks its creator's node where it
    /// runs, if another node made it and this node has not met it yet.
    pub(in crate::node_manager) fn know_actor(&mut self, actor: ActorId) {
        let owner = actor.node();
        if self.actors.contains(actor)
            || owner == self.node
            || actor.is_null()
            || !self.cluster.knows(owner)
        {
            return;
        }
        self.actors.map.insert(
            actor,
            ActorEntry {
                class: format!("actor {actor}"),
                job: JobId::of_driver(ProcId::driver(owner)),
                resources: ResourceRequest::default(),
                max_concurrency: 1,
                ctor_args: None,
                state: ActorState::Locating,
                alloc: None,
                callers: Vec::new(),
                inflight: IdMap::default(),
                holders: Holders::default(),
                pins: 0,
                max_restarts: 0,
                restarts: 0,
                max_task_retries: 0,
                detached: false,
            },
        );
        self.locate_actor(owner, actor);
    }

    /// Where `actor` runs, as this node knows it.
    pub(in crate::node_manager) fn actor_location(&self, actor: ActorId) -> Option<NodeId> {
        match self.actors.get(actor)?.state {
            ActorState::Remote(node) => Some(node),
            ActorState::Dead(_) | ActorState::Locating => None,
            _ => Some(self.node),
        }
    }

    /// The actor's creator answered where it runs.
    pub(in crate::node_manager) fn actor_located(&mut self, actor: ActorId, at: Option<NodeId>) {
        let Some(entry) = self.actors.get_mut(actor) else {
            return;
        };
        if !matches!(entry.state, ActorState::Locating) {
            return;
        }
        match at {
            Some(node) if node != self.node => {
                entry.state = ActorState::Remote(node);
                // This node's handles count at the actor's node while it has any.
                self.send_node(node, FromWorker::AddRef(RefId::Actor(actor)));
                self.pump_actor(actor);
                self.check_actor_scope(actor);
            }
            _ => {
                let err = actor_died(&format!("actor {actor}"), "it is gone");
                self.actor_dead(actor, err);
            }
        }
    }

    /// Sends the queued calls of an actor that runs on `node` there, in order.
    pub(super) fn forward_calls(&mut self, actor: ActorId, node: NodeId) {
        let Some(entry) = self.actors.get_mut(actor) else {
            return;
        };
        let entry_class = entry.class.clone();
        let mut calls = Vec::new();
        for (_, queue) in entry.callers.iter_mut() {
            calls.extend(queue.drain(..));
        }
        for call in calls {
            let extra = call.returns.extra;
            let streaming = call.returns.stream.is_some();
            // A stream is passed on once, and only before it gave out items: a stream that
            // items were taken from here, or one a peer's call asked of this node, cannot go
            // on there (its caller's next index, or its items' node, would be wrong).
            let passed_on = streaming
                && self
                    .stream_owner(call.task)
                    .is_some_and(|o| self.is_peer_session(o));
            if passed_on || self.stream_started_here(call.task) {
                self.unpin_args(&call.args);
                let class = crate::node_manager::short_name(&entry_class).to_string();
                let err = Error::ActorDied {
                    actor: class,
                    restarting: true,
                    cause: format!(
                        "the actor of streaming call `{}` is now on {node}, and a stream that \
                         already gave out items, or was sent here by another node, cannot go \
                         on there; call it again",
                        call.method
                    ),
                };
                self.complete_object(call.task, Err(err));
                continue;
            }
            let spec = ActorTaskSpec {
                actor,
                task: call.task,
                method: call.method,
                args: call.args.clone(),
                returns: call.returns,
            };
            self.send_node(node, FromWorker::SubmitActorTask(spec));
            self.await_result(node, call.task, call.args, Some(actor), extra);
            if streaming {
                self.stream_sent(call.task, node);
            }
        }
    }

    /// Places a pending actor that does not fit here now on a peer with room. True if it went.
    pub(in crate::node_manager) fn place_actor_elsewhere(&mut self, actor: ActorId) -> bool {
        let Some(entry) = self.actors.get(actor) else {
            return false;
        };
        let args = entry.ctor_args.clone().unwrap_or_default();
        let req = entry.resources.clone();
        let Some(node) = self.place_elsewhere(&req, &args, false) else {
            return false;
        };
        let entry = self.actors.get(actor).expect("present");
        let spec = ActorSpec {
            actor,
            job: entry.job,
            class: entry.class.clone(),
            args,
            resources: req.clone(),
            max_concurrency: entry.max_concurrency,
            max_restarts: entry.max_restarts,
            invalid: None,
            // Its name, if any, is held here, by its creator's node.
            ext: crate::protocol::ActorExt {
                name: None,
                get_if_exists: false,
                max_task_retries: entry.max_task_retries,
                detached: entry.detached,
            },
        };
        if !self.forward_actor(node, spec) {
            return false;
        }
        self.actor_sent(node, &req);
        if let Some(entry) = self.actors.get_mut(actor) {
            entry.state = ActorState::Remote(node);
        }
        self.pump_actor(actor);
        true
    }
}

impl NodeState {
    /// The actors this node created that run on `node`.
    pub(in crate::node_manager) fn actors_placed_on(&self, node: NodeId) -> Vec<ActorId> {
        self.actors
            .map
            .iter()
            .filter(|(id, e)| {
                matches!(e.state, ActorState::Remote(n) if n == node) && id.node() == self.node
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// `actor`, which this node placed on `node`, was lost with that node: within
    /// `max_restarts` it is placed again (its constructor runs again, here or on another
    /// node); beyond that it is dead.
    pub(in crate::node_manager) fn actor_node_died(
        &mut self,
        actor: ActorId,
        node: NodeId,
        why: &str,
    ) {
        let Some(entry) = self.actors.get_mut(actor) else {
            return;
        };
        let class = entry.class.clone();
        if entry.restarts >= entry.max_restarts || entry.ctor_args.is_none() {
            let err = actor_died(&class, format!("its node ({node}) is gone: {why}"));
            self.actor_dead(actor, err);
            return;
        }
        entry.restarts += 1;
        log::warn!(
            "actor {class}: its node ({node}) is gone ({why}); restarting ({} of {})",
            entry.restarts,
            entry.max_restarts
        );
        entry.state = ActorState::Pending;
        self.actors.pending.push_back(actor);
    }

    /// The error of a call sent to `node` and lost with it.
    pub(in crate::node_manager) fn call_lost_with_node(
        &self,
        actor: Option<ActorId>,
        node: NodeId,
        why: &str,
    ) -> Error {
        let entry = actor.and_then(|a| self.actors.get(a));
        let name = entry.map_or("actor".to_string(), |e| {
            crate::node_manager::short_name(&e.class).to_string()
        });
        let restarting = entry.is_some_and(|e| {
            let gone_with_it = match e.state {
                ActorState::Dead(_) => true,
                ActorState::Remote(n) => n == node,
                _ => false,
            };
            !gone_with_it && e.restarts > 0
        });
        let cause = match entry {
            Some(e) if restarting => format!(
                "its node ({node}) is gone ({why}) while running this call; the actor is \
                 restarting ({} of {} restarts)",
                e.restarts, e.max_restarts
            ),
            _ => format!("its node ({node}) became unreachable: {why}"),
        };
        Error::ActorDied {
            actor: name,
            cause,
            restarting,
        }
    }
}
