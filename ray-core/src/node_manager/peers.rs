//! Other nodes as peers: the work this node sends them and what comes back, and the sessions
//! other nodes hold here.
//!
//! This node talks to another over its session there as a client, with the worker protocol's
//! requests: `Job` (the program whose work follows), `SubmitTask`, `CreateActor`,
//! `SubmitActorTask`, `Get` (for results and borrowed values), `AddRef`/`DelRef` (its count as a
//! holder there), `LocateActor`, `StreamNext`/`StreamDropped` (a stream of a call sent there).
//! [`Peers`] owns what it waits for. A session another node holds here is served by
//! `peer_messages.rs`.

use super::state::NodeState;
use super::tasks::TaskState;
use crate::codec::{Data, Value};
use crate::error::{Error, Result};
use crate::ids::{ActorId, IdMap, JobId, NodeId, ObjectId, ProcId, RefId};
use crate::log;
use crate::protocol::Arg;
use crate::protocol::worker::{FromWorker, ToWorker};
use std::collections::{HashMap, HashSet};

/// What a request to another node waits for.
pub(crate) enum PeerWait {
    /// The result of a task or actor call sent there (`args`: an actor call's, pinned here
    /// until then; a task keeps its own; `actor`: the actor called; `extra`: how many return
    /// values follow the first, `task + 1 ..= task + extra`, asked for in the same `Get`).
    Result {
        task: ObjectId,
        args: Vec<Arg>,
        actor: Option<ActorId>,
        extra: u32,
    },
    /// The value of an object this node borrows.
    Value(ObjectId),
    /// Where an actor runs.
    Actor(ActorId),
    /// The next item of a streaming call that runs there, for its caller here (`to`).
    StreamItem {
        generator: ObjectId,
        to: super::control::Answer,
    },
}

#[derive(Default)]
pub(crate) struct Peers {
    next_req: u64,
    waits: HashMap<(NodeId, u64), PeerWait>,
    /// Parts of large replies received so far.
    parts: HashMap<(NodeId, u64), Vec<Value>>,
    /// Jobs announced to each node.
    jobs_sent: HashSet<(NodeId, JobId)>,
    /// Sessions other nodes hold here: the process id each has here, and its node.
    sessions: IdMap<ProcId, NodeId>,
    /// Sessions whose messages wait (in order) for a job's executable to arrive.
    pub(super) blocked: IdMap<ProcId, (JobId, std::collections::VecDeque<FromWorker>)>,
}

#[cfg(test)]
impl Peers {
    /// Values of split replies kept so far (for tests).
    pub(super) fn parts_kept(&self) -> usize {
        self.parts.values().map(Vec::len).sum()
    }
}

impl Peers {
    /// How many return values follow the first in the result awaited under `req` from `node`.
    pub(super) fn extra_of(&self, node: NodeId, req: u64) -> Option<u32> {
        match self.waits.get(&(node, req))? {
            PeerWait::Result { extra, .. } => Some(*extra),
            _ => None,
        }
    }

    /// Records `proc` as a session of `node` here (a direct session acts for its home node).
    pub(super) fn add_session(&mut self, proc: ProcId, node: NodeId) {
        self.sessions.insert(proc, node);
    }
}

impl NodeState {
    pub(super) fn peer_request(&mut self, node: NodeId, wait: PeerWait) -> u64 {
        self.peers.next_req += 1;
        let req = self.peers.next_req;
        self.peers.waits.insert((node, req), wait);
        req
    }

    /// Asks `owner` for the value of `id`, which this node borrows.
    pub(super) fn ask_for_value(&mut self, owner: NodeId, id: ObjectId) {
        let req = self.peer_request(owner, PeerWait::Value(id));
        self.send_node(
            owner,
            FromWorker::Get {
                req,
                ids: vec![id],
                timeout_ms: None,
            },
        );
    }

    /// Announces `job` to `node` before its first work there. False if this node cannot (it
    /// does not know the job's executable by hash).
    fn announce_job(&mut self, node: NodeId, job: JobId) -> bool {
        if self.peers.jobs_sent.contains(&(node, job)) {
            return true;
        }
        let Some((fingerprint, Some((sha256, size)))) =
            self.jobs.get(job).map(|j| (j.fingerprint, j.binary))
        else {
            return false;
        };
        self.peers.jobs_sent.insert((node, job));
        let namespace = self.names.namespace_of(job);
        self.send_node(
            node,
            FromWorker::Job {
                job,
                fingerprint,
                sha256,
                size,
                namespace,
            },
        );
        true
    }

    /// Sends queued task `task` to `node` to run there. False if it cannot go there.
    pub(super) fn forward_task(&mut self, task: ObjectId, node: NodeId) -> bool {
        let Some(spec) = self.tasks.get(task).map(|t| t.spec.clone()) else {
            return false;
        };
        if !self.announce_job(node, spec.job) {
            return false;
        }
        self.tasks.set_state(task, TaskState::Forwarded { node });
        self.tasks.count_attempt(task);
        self.task_sent(node, &spec.resources);
        let extra = spec.ext.returns.extra;
        let streaming = spec.ext.returns.stream.is_some();
        self.send_node(node, FromWorker::SubmitTask(spec));
        self.await_result(node, task, Vec::new(), None, extra);
        if streaming {
            self.stream_sent(task, node);
        }
        true
    }

    /// Asks `node` for the result of `task` (a call of `actor`, if any), which runs there,
    /// and for its `extra` other return values: one `Get` for all of them.
    pub(super) fn await_result(
        &mut self,
        node: NodeId,
        task: ObjectId,
        args: Vec<Arg>,
        actor: Option<ActorId>,
        extra: u32,
    ) {
        let req = self.peer_request(
            node,
            PeerWait::Result {
                task,
                args,
                actor,
                extra,
            },
        );
        self.ask_values(node, task, req, extra);
    }

    /// Asks `node` for the values of call `task` (the first and `extra` more), awaited under
    /// `req`.
    pub(super) fn ask_values(&mut self, node: NodeId, task: ObjectId, req: u64, extra: u32) {
        let ids = (0..=extra).map(|i| task.nth_return(i)).collect();
        let get = FromWorker::Get {
            req,
            ids,
            timeout_ms: None,
        };
        self.send_node(node, get);
    }

    /// Sends an actor's creation to `node`.
    pub(super) fn forward_actor(&mut self, node: NodeId, spec: crate::protocol::ActorSpec) -> bool {
        if !self.announce_job(node, spec.job) {
            return false;
        }
        self.send_node(node, FromWorker::CreateActor(spec));
        true
    }

    /// Asks `owner` where `actor` runs.
    pub(super) fn locate_actor(&mut self, owner: NodeId, actor: ActorId) {
        let req = self.peer_request(owner, PeerWait::Actor(actor));
        self.send_node(owner, FromWorker::LocateActor { req, actor });
    }

    /// A reply from `node` to one of this node's requests.
    pub(crate) fn peer_reply(&mut self, node: NodeId, msg: ToWorker) {
        log::debug!("{node} replied {msg:?}");
        match msg {
            ToWorker::GetReplyPart { req, values } => {
                // Parts of a reply nobody waits for are not kept.
                if self.peers.waits.contains_key(&(node, req)) {
                    self.peers
                        .parts
                        .entry((node, req))
                        .or_default()
                        .extend(values);
                }
            }
            ToWorker::GetReply { req, result } => {
                let result = match (self.peers.parts.remove(&(node, req)), result) {
                    (Some(mut first), Ok(rest)) => {
                        first.extend(rest);
                        Ok(first)
                    }
                    (_, r) => r,
                };
                // A node's stored values travel as `Data::Remote` (`store.rs::located`): a
                // value naming a region of a store can only name this node's, which the peer
                // has no business choosing.
                let result = match result {
                    Ok(values) if values.iter().any(|v| matches!(v.data, Data::Shm { .. })) => {
                        log::warn!(
                            "{node} answered request {req} with a value naming a region of this \
                             node's object store; the request fails"
                        );
                        Err(Error::InvalidArgument {
                            what: "reply".into(),
                            message: format!(
                                "{node} answered with a value naming a region of this node's \
                                 object store, which a node never sends"
                            ),
                        })
                    }
                    other => other,
                };
                // One value per id asked for: a `Get` of several ids is answered in order.
                let wait = self.peers.waits.remove(&(node, req));
                let asked = match &wait {
                    Some(PeerWait::Result { extra, .. }) => *extra as usize + 1,
                    _ => 1,
                };
                let values = result.and_then(|v| match v.len() == asked {
                    true => Ok(v),
                    false => Err(Error::InvalidArgument {
                        what: "reply".into(),
                        message: format!(
                            "{node} answered with {} values for {asked} objects",
                            v.len()
                        ),
                    }),
                });
                match wait {
                    Some(PeerWait::Result {
                        task, args, extra, ..
                    }) => self.result_arrived(node, task, args, extra, values),
                    Some(PeerWait::Value(id)) => {
                        let value = values.map(|mut v| v.remove(0));
                        self.complete_object(id, value)
                    }
                    Some(PeerWait::StreamItem { to, .. }) => {
                        let err = Error::InvalidArgument {
                            what: "reply".into(),
                            message: format!("{node} answered a stream's next item with values"),
                        };
                        self.answer(to, Err(err))
                    }
                    Some(PeerWait::Actor(_)) | None => {}
                }
            }
            // Only a stream's next item is asked of a node as a control request.
            ToWorker::ControlReply { req, result } => match self.peers.waits.remove(&(node, req)) {
                Some(PeerWait::StreamItem { generator, to }) => {
                    self.stream_item_arrived(node, generator, to, result)
                }
                Some(other) => {
                    log::debug!("ignored a control reply {req} from {node}");
                    self.peers.waits.insert((node, req), other);
                }
                None => log::debug!("ignored a control reply {req} from {node}"),
            },
            ToWorker::ActorLocation { req, node: at } => {
                if let Some(PeerWait::Actor(actor)) = self.peers.waits.remove(&(node, req)) {
                    self.actor_located(actor, at);
                }
            }
            other => log::debug!("ignored {other:?} from {node}"),
        }
    }

    /// A peer's lease expired (etcd's verdict, from the daemon's watch), or a newer
    /// incarnation of it registered: the incarnation this node knew is dead, its sessions
    /// here are refused from now on, and its work is handled as lost (retried, restarted,
    /// rebuilt, or failed).
    pub(crate) fn node_declared_dead(&mut self, node: NodeId, why: &str) {
        self.cluster.record_dead(node);
        let sessions: Vec<crate::ids::ProcId> = self
            .peers
            .sessions
            .iter()
            .filter(|(_, n)| **n == node)
            .map(|(p, _)| *p)
            .collect();
        for proc in sessions {
            self.effects.push(super::effects::Effect::Disconnect(
                super::effects::Peer::Worker(proc),
            ));
            self.peer_gone(proc);
        }
        self.peer_unreachable(node, why);
    }

    /// etcd's record says `node` is `incarnation`: a newer one than known means the known one
    /// is dead.
    pub(crate) fn note_incarnation(&mut self, node: NodeId, incarnation: u64) {
        if self.cluster.is_newer(node, incarnation) {
            self.node_declared_dead(node, &format!("it rejoined as incarnation {incarnation}"));
        }
        self.cluster.set_incarnation(node, incarnation);
    }

    /// This node's control session at `node` broke and is being made again: no new work
    /// goes there meanwhile; nothing is lost (the session resumes where it broke).
    pub(crate) fn peer_suspect(&mut self, node: NodeId) {
        self.cluster.set_suspect(node, true);
    }

    /// The control session at `node` was made again.
    pub(crate) fn peer_resumed(&mut self, node: NodeId) {
        self.cluster.set_suspect(node, false);
        self.schedule();
    }

    /// This node's session at `node` broke (`why`): the node is gone. Tasks sent there run
    /// again elsewhere within their `max_retries`; actors this node placed there start again
    /// elsewhere within their `max_restarts` (calls they were running fail with `ActorDied`,
    /// later calls wait for the new instance); what else waited on it fails.
    pub(crate) fn peer_unreachable(&mut self, node: NodeId, why: &str) {
        self.peers.jobs_sent.retain(|(n, _)| *n != node);
        self.node_left(node);
        self.streams_lost_with(node);
        for actor in self.actors_placed_on(node) {
            self.actor_node_died(actor, node, why);
        }
        self.objects_lost_with(node, why);
        let keys: Vec<(NodeId, u64)> = self
            .peers
            .waits
            .keys()
            .filter(|(n, _)| *n == node)
            .copied()
            .collect();
        for key in keys {
            self.peers.parts.remove(&key);
            match self.peers.waits.remove(&key) {
                Some(PeerWait::Result {
                    task, args, actor, ..
                }) => {
                    let sent_there = matches!(
                        self.tasks.get(task).map(|t| &t.state),
                        Some(TaskState::Forwarded { node: n }) if *n == node
                    );
                    if sent_there {
                        self.task_node_died(task, node, why);
                    } else {
                        self.unpin_args(&args);
                        let err = self.call_lost_with_node(actor, node, why);
                        self.complete_object(task, Err(err));
                    }
                }
                Some(PeerWait::Value(id)) => {
                    let err =
                        Error::object_lost(id, format!("its node ({node}) is unreachable: {why}"));
                    self.complete_object(id, Err(err));
                }
                Some(PeerWait::Actor(actor)) => self.actor_located(actor, None),
                Some(PeerWait::StreamItem { to, .. }) => {
                    use crate::protocol::worker::{ControlReply, StreamItem};
                    self.answer(to, Ok(ControlReply::Item(StreamItem::Failed)));
                }
                None => {}
            }
        }
        self.schedule();
    }

    /// A task sent to `node` was lost with it: it runs again within its `max_retries`.
    fn task_node_died(&mut self, task: ObjectId, node: NodeId, why: &str) {
        let Some(te) = self.tasks.get(task) else {
            return;
        };
        let (attempts, max_retries) = (te.attempts(), te.spec.max_retries);
        let function = te.spec.function.clone();
        // A stream's items taken so far were objects of that node: a stream is not run again.
        let streaming = te.spec.ext.returns.stream.is_some();
        if let TaskState::Forwarded { .. } = te.state {
            let req = te.spec.resources.clone();
            self.cluster.returned(node, &req);
        }
        if attempts <= max_retries && !self.shutting_down && !streaming {
            log::warn!(
                "`{function}` was running on {node}, which is gone ({why}); retrying (attempt {} \
                 of {})",
                attempts + 1,
                max_retries + 1
            );
            self.requeue(task);
        } else {
            let err = Error::NodeDied {
                function,
                node: node.to_string(),
                attempts,
                cause: why.to_string(),
            };
            self.finish_task(task, Err(err));
        }
    }

    /// The result of work sent to `node` arrived: its return values in order (`task`, then
    /// `task + 1 ..= task + extra`), or the error they all get.
    fn result_arrived(
        &mut self,
        node: NodeId,
        task: ObjectId,
        args: Vec<Arg>,
        extra: u32,
        values: Result<Vec<Value>>,
    ) {
        // A value stored there stays there (this node holds it there until it frees the
        // object); anything else was copied here, and `node` may drop its entry. A kept
        // stream's call object is let go there by the stream (`generators.rs::stream_dropped`).
        let stream_there = self.stream_kept_at(task, node);
        let mut stored_there = Vec::new();
        for i in 0..=extra {
            let there = values
                .as_ref()
                .is_ok_and(|v| matches!(v[i as usize].data, Data::Remote { .. }));
            let id = task.nth_return(i);
            if i == 0 && stream_there {
                continue;
            } else if there {
                stored_there.push(id);
            } else {
                self.send_node(node, FromWorker::DelRef(RefId::Object(id)));
            }
        }
        // The values after the first complete with it (`returns.rs::on_completed`).
        let value = values.map(|mut v| {
            let rest = v.split_off(1);
            self.stash_returns(task, rest);
            v.remove(0)
        });
        if let Some(t) = self.tasks.get(task) {
            if matches!(t.state, TaskState::Forwarded { node: n } if n == node) {
                let req = t.spec.resources.clone();
                self.cluster.returned(node, &req);
            }
            self.finish_task(task, value);
        } else {
            self.unpin_args(&args);
            self.complete_object(task, value);
        }
        for id in stored_there {
            if let Some(e) = self.objects.get_mut(id) {
                e.held_at = Some(node);
            } else {
                self.send_node(node, FromWorker::DelRef(RefId::Object(id)));
            }
        }
    }

    /// Another node (as `incarnation`) opened a session here. Refused while shutting down,
    /// for an incarnation this node knows is dead or was followed by a newer one (what an old
    /// incarnation sends is never used: issue 11's fencing), and for one etcd's records have
    /// not shown this node yet: only etcd says a node started again, since a hello naming a
    /// newer incarnation would otherwise fence the node it names here, for good.
    pub(crate) fn attach_peer(
        &mut self,
        node: NodeId,
        incarnation: u64,
    ) -> Result<ProcId, crate::protocol::node::NodeRefusal> {
        use crate::protocol::node::NodeRefusal;
        if self.shutting_down {
            return Err(NodeRefusal::Unavailable {
                reason: "the node is shutting down".into(),
            });
        }
        if let Some(reason) = self.cluster.fenced(node, incarnation) {
            return Err(NodeRefusal::Unavailable { reason });
        }
        if !self.cluster.is_registered(node, incarnation) {
            return Err(NodeRefusal::NotRegistered { node, incarnation });
        }
        let proc = self.workers.add_peer();
        self.peers.sessions.insert(proc, node);
        Ok(proc)
    }

    /// The node whose session `proc` is, if it is one.
    pub(super) fn peer_of(&self, proc: ProcId) -> Option<NodeId> {
        self.peers.sessions.get(&proc).copied()
    }

    pub(super) fn is_peer_session(&self, proc: ProcId) -> bool {
        self.peers.sessions.contains_key(&proc)
    }

    /// A session another node held here ended.
    pub(crate) fn peer_gone(&mut self, proc: ProcId) {
        self.peers.sessions.remove(&proc);
        self.direct_session_gone(proc);
        self.driver_gone(proc);
    }
}
