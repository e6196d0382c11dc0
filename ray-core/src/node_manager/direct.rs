//! Direct actor calls from a remote driver (`docs/direct-actor-calls.md`), both ends:
//!
//! - At the driver's home node H: the ticket a driver asks for (`Control::DirectTicket`,
//!   passed to the actor's node), and the record of each call the driver sent there directly
//!   (`DirectCall`, then `DirectDone` with the answer it got). H keeps for a direct call what
//!   it keeps for a call it forwards itself (`actors_remote.rs::forward_calls`): the wait for
//!   its result, its pinned arguments, its stream. Only the messages differ.
//! - At the actor's node B: the tickets H sent, and the direct sessions opened with them. A
//!   direct session is H's control session narrowed to one driver and one actor: its calls
//!   join the queue of H's session (so they keep their order with the calls H forwarded
//!   before the ticket), and it may only submit calls of that actor under ids its driver made,
//!   and `Get` their return values.
//!
//! This module does no I/O; the runtime opens and serves the connections (`remote.rs`).

use super::peers::PeerWait;
use super::state::NodeState;
use crate::codec::{Data, Value};
use crate::error::{Error, Result};
use crate::ids::{ActorId, IdMap, JobId, NodeId, ObjectId, ProcId, RefId};
use crate::protocol::node::NodeRefusal;
use crate::protocol::worker::{ControlReply, FromWorker, ToWorker};
use crate::protocol::{Arg, Returns, Ticket};
use std::collections::{HashMap, HashSet, VecDeque};

/// How long a ticket waits for its driver's hello.
const TICKET_TTL_US: u64 = 60_000_000;
/// Tickets kept at most per driver (its oldest goes first).
const TICKETS_MAX: usize = 64;
/// Direct sessions at most per driver at a node.
pub(crate) const SESSIONS_MAX: usize = 64;
/// Calls of a direct session whose values it has not asked for yet, at most.
const UNASKED_MAX: usize = 1 << 16;

/// A ticket H sent here.
struct TicketRec {
    ticket: Ticket,
    home: NodeId,
    /// H's control session here, which the direct session acts for.
    home_proc: ProcId,
    driver: ProcId,
    job: JobId,
    actor: ActorId,
    expires_us: u64,
}

/// A direct session here.
struct Session {
    home_proc: ProcId,
    driver: ProcId,
    actor: ActorId,
    /// Return values of its calls that it has not asked for yet.
    unasked: HashSet<ObjectId>,
}

/// A call a driver attached here sent straight to node `at`.
struct CallRec {
    driver: ProcId,
    at: NodeId,
    /// The wait registered for its result (`peers.rs`), under this request number.
    req: u64,
}

#[derive(Default)]
pub(crate) struct Direct {
    tickets: VecDeque<TicketRec>,
    /// Hellos waiting for their ticket: woken when any ticket arrives.
    ticket_waiters: Vec<std::sync::Arc<crate::slot::Slot<()>>>,
    sessions: IdMap<ProcId, Session>,
    calls: HashMap<ObjectId, CallRec>,
}

impl NodeState {
    // ---- At the driver's home node ----

    /// A remote driver asks to call `actor` directly: the ticket goes to the actor's node,
    /// and the driver is told where that node listens. An error (not a violation) when calls
    /// must go through this node for now: the actor is here, not located yet, or calls of
    /// this driver wait here for it.
    pub(super) fn direct_ticket(
        &mut self,
        from: ProcId,
        actor: ActorId,
        ticket: Ticket,
    ) -> std::result::Result<Result<ControlReply>, String> {
        if !self.workers.get(from).is_some_and(|w| w.remote) || self.is_peer_session(from) {
            return Err("a ticket for a direct call, which only remote drivers ask for".into());
        }
        self.may_use_actor(from, actor)?;
        let job = self.job_of(from).ok_or("a ticket without a job")?;
        let not_now = |why: String| {
            Ok(Err(Error::InvalidArgument {
                what: format!("direct calls of actor {actor}"),
                message: why,
            }))
        };
        let Some(entry) = self.actors.get(actor) else {
            return not_now("this node does not know the actor".into());
        };
        let node = match entry.state {
            super::actors::ActorState::Remote(node) => node,
            _ => return not_now("the actor is not on another node now".into()),
        };
        if entry
            .callers
            .iter()
            .any(|(p, q)| *p == from && !q.is_empty())
        {
            return not_now("calls of this driver wait here for it".into());
        }
        let Some(address) = self.cluster.address(node) else {
            return not_now(format!("the address of {node} is not known"));
        };
        self.send_node(
            node,
            FromWorker::DirectTicket {
                actor,
                driver: from,
                job,
                ticket,
            },
        );
        Ok(Ok(ControlReply::Direct { node, address }))
    }

    /// The driver `from` sent the call `task` of `actor` to node `at` directly: this node
    /// keeps what it keeps for a call it forwards there, and waits for `DirectDone`.
    pub(super) fn direct_call(
        &mut self,
        from: ProcId,
        actor: ActorId,
        task: ObjectId,
        returns: Returns,
        args: Vec<Arg>,
        at: NodeId,
    ) -> std::result::Result<(), String> {
        if !self.workers.get(from).is_some_and(|w| w.remote) {
            return Err("a direct call, which only remote drivers make".into());
        }
        if at == self.node {
            return Err(format!("a direct call sent to {at}, this node itself"));
        }
        self.fresh(from, RefId::Object(task))?;
        self.fresh_returns(from, task, &returns)?;
        self.check_args(from, &args)?;
        self.may_use_actor(from, actor)?;
        if !self.objects.create_pending(task, from) {
            return Err(format!("a direct call {task} whose id is in use"));
        }
        self.know_actor(actor);
        self.open_returns(from, task, &returns);
        if let Err(e) = self.pin_args(&args) {
            self.complete_object(task, Err(e));
            // No wait: the driver's `DirectDone` is accepted and changes nothing.
            let rec = CallRec {
                driver: from,
                at,
                req: 0,
            };
            self.direct.calls.insert(task, rec);
            return Ok(());
        }
        let extra = returns.extra;
        let req = self.peer_request(
            at,
            PeerWait::Result {
                task,
                args,
                actor: Some(actor),
                extra,
            },
        );
        let rec = CallRec {
            driver: from,
            at,
            req,
        };
        self.direct.calls.insert(task, rec);
        if !self.cluster.knows(at) {
            // This node has already handled that node's loss (the driver's session there
            // has not noticed yet): the call fails as one sent there and lost with it.
            let err = self.call_lost_with_node(Some(actor), at, "it is no live member");
            self.peer_reply(
                at,
                ToWorker::GetReply {
                    req,
                    result: Err(err),
                },
            );
        } else if returns.stream.is_some() {
            self.stream_sent(task, at);
        }
        Ok(())
    }

    /// The driver `from` reports the answer to its `Get` of a direct call's values: handled
    /// as if the call's node had answered this node's own `Get`.
    pub(super) fn direct_done(
        &mut self,
        from: ProcId,
        task: ObjectId,
        result: Result<Vec<Value>>,
    ) -> std::result::Result<(), String> {
        let Some(call) = self.direct.calls.get(&task) else {
            return Err(format!(
                "the end of a direct call {task} it did not declare"
            ));
        };
        if call.driver != from {
            return Err(format!("the end of a direct call {task} of another driver"));
        }
        let CallRec { at, req, .. } = self.direct.calls.remove(&task).expect("checked above");
        // A stored value stays at the node that answered: a value naming another is refused.
        let result = match result {
            Ok(values)
                if values
                    .iter()
                    .any(|v| matches!(v.data, Data::Remote { node, .. } if node != at)) =>
            {
                return Err(format!(
                    "the end of a direct call {task} with a value on another node than {at}"
                ));
            }
            Err(e) => {
                // The call may still run there: its objects are let go there once done.
                let extra = self.peers.extra_of(at, req).unwrap_or(0);
                for i in 0..=extra {
                    self.send_node(at, FromWorker::DelRef(RefId::Object(task.nth_return(i))));
                }
                Err(e)
            }
            ok => ok,
        };
        self.peer_reply(at, ToWorker::GetReply { req, result });
        Ok(())
    }

    /// The driver `from` lost the direct session that carried its declared call `spec`
    /// before the answer: this node sends the call to that node itself, over its own session
    /// (which survives a broken connection; the node ignores a call it already has, since
    /// the id is taken), and asks for its values, as for a call it forwards.
    pub(super) fn direct_lost(
        &mut self,
        from: ProcId,
        spec: crate::protocol::ActorTaskSpec,
    ) -> std::result::Result<(), String> {
        let task = spec.task;
        match self.direct.calls.get(&task) {
            Some(c) if c.driver == from => {}
            Some(_) => {
                return Err(format!(
                    "the loss of a direct call {task} of another driver"
                ));
            }
            None => {
                return Err(format!(
                    "the loss of a direct call {task} it did not declare"
                ));
            }
        }
        super::returns::check_shape(task, &spec.returns)?;
        super::inline_args(&spec.args)?;
        let CallRec { at, req, .. } = self.direct.calls.remove(&task).expect("checked above");
        // No wait any more: the call failed here already (its node is gone, or its arguments
        // were).
        let Some(extra) = self.peers.extra_of(at, req) else {
            return Ok(());
        };
        if spec.returns.extra != extra {
            return Err(format!("the loss of a direct call {task} of another shape"));
        }
        self.send_node(at, FromWorker::SubmitActorTask(spec));
        self.ask_values(at, task, req, extra);
        Ok(())
    }

    /// A driver's connection ended: the values of its direct calls that it did not report
    /// are asked of their nodes by this node itself (as for a call it forwards), so that
    /// their arguments here and their objects there are let go.
    pub(super) fn direct_driver_gone(&mut self, proc: ProcId) {
        if self.direct.calls.is_empty() {
            return;
        }
        let mut orphans = Vec::new();
        self.direct.calls.retain(|task, c| {
            if c.driver == proc {
                orphans.push((*task, c.at, c.req));
            }
            c.driver != proc
        });
        for (task, at, req) in orphans {
            if let Some(extra) = self.peers.extra_of(at, req) {
                self.ask_values(at, task, req, extra);
            }
        }
    }

    // ---- At the actor's node ----

    /// Node `home` (whose session here is `home_proc`) lets its driver open a direct session.
    pub(super) fn direct_ticket_arrived(
        &mut self,
        home_proc: ProcId,
        home: NodeId,
        actor: ActorId,
        driver: ProcId,
        job: JobId,
        ticket: Ticket,
    ) -> std::result::Result<(), String> {
        if driver.node != home || job.node() != home {
            return Err(format!(
                "a direct-call ticket for a driver or job not on {home}"
            ));
        }
        let now = self.now_us;
        self.direct.tickets.retain(|t| t.expires_us > now);
        let of_driver = |t: &&TicketRec| t.driver == driver;
        if self.direct.tickets.iter().filter(of_driver).count() >= TICKETS_MAX
            && let Some(i) = self.direct.tickets.iter().position(|t| t.driver == driver)
        {
            self.direct.tickets.remove(i);
        }
        self.direct.tickets.push_back(TicketRec {
            ticket,
            home,
            home_proc,
            driver,
            job,
            actor,
            expires_us: now.saturating_add(TICKET_TTL_US),
        });
        for waiter in std::mem::take(&mut self.direct.ticket_waiters) {
            self.effects.push(super::effects::Effect::Wake(waiter));
        }
        Ok(())
    }

    /// A driver's hello for a direct session: `Ok(None)` while no such ticket came (it may
    /// still be on its way from the home node: `waiter` is then woken when a ticket
    /// arrives), else the session's process here, or why not.
    pub(crate) fn attach_direct(
        &mut self,
        home: NodeId,
        driver: ProcId,
        job: JobId,
        actor: ActorId,
        ticket: &Ticket,
        waiter: &std::sync::Arc<crate::slot::Slot<()>>,
    ) -> std::result::Result<Option<ProcId>, NodeRefusal> {
        if self.shutting_down {
            return Err(NodeRefusal::Unavailable {
                reason: "the node is shutting down".into(),
            });
        }
        let now = self.now_us;
        let Some(i) = self.direct.tickets.iter().position(|t| {
            t.ticket.matches(ticket)
                && t.home == home
                && t.driver == driver
                && t.job == job
                && t.actor == actor
                && t.expires_us > now
        }) else {
            // Hellos that gave up hold their slot no more.
            let waiters = &mut self.direct.ticket_waiters;
            waiters.retain(|w| std::sync::Arc::strong_count(w) > 1);
            waiters.push(waiter.clone());
            return Ok(None);
        };
        let t = self.direct.tickets.remove(i).expect("found above");
        if self.peer_of(t.home_proc) != Some(home) {
            return Err(NodeRefusal::Unavailable {
                reason: format!("the session of {home} that sent the ticket ended"),
            });
        }
        let open = self
            .direct
            .sessions
            .values()
            .filter(|s| s.driver == driver)
            .count();
        if open >= SESSIONS_MAX {
            return Err(NodeRefusal::Unavailable {
                reason: format!("the driver has {SESSIONS_MAX} direct sessions here already"),
            });
        }
        let proc = self.workers.add_peer();
        // A peer session of the home node: answered as one (stored values by location), and
        // closed with it.
        self.peers.add_session(proc, home);
        self.direct.sessions.insert(
            proc,
            Session {
                home_proc: t.home_proc,
                driver,
                actor,
                unasked: HashSet::new(),
            },
        );
        Ok(Some(proc))
    }

    pub(super) fn is_direct_session(&self, proc: ProcId) -> bool {
        self.direct.sessions.contains_key(&proc)
    }

    /// A message of direct session `from`.
    pub(super) fn handle_direct(
        &mut self,
        from: ProcId,
        msg: FromWorker,
    ) -> std::result::Result<(), String> {
        let Some(s) = self.direct.sessions.get(&from) else {
            return Ok(());
        };
        let (home_proc, driver, actor) = (s.home_proc, s.driver, s.actor);
        match msg {
            FromWorker::SubmitActorTask(spec) => {
                if spec.actor != actor {
                    return Err(format!(
                        "a direct call of actor {}, not of {actor}",
                        spec.actor
                    ));
                }
                super::returns::check_shape(spec.task, &spec.returns)?;
                super::inline_args(&spec.args)?;
                let ids: Vec<ObjectId> = (0..=spec.returns.extra)
                    .map(|i| spec.task.nth_return(i))
                    .collect();
                for id in &ids {
                    if id.creator() != driver {
                        return Err(format!("a direct call {id} not made by its driver"));
                    }
                    if self.objects.get(*id).is_some() {
                        return Err(format!("a direct call {id} whose id is in use"));
                    }
                }
                if self.peer_of(home_proc).is_none() {
                    return Err("a direct call after its home node's session ended".into());
                }
                let s = self.direct.sessions.get_mut(&from).expect("checked above");
                if s.unasked.len() + ids.len() > UNASKED_MAX {
                    return Err(format!(
                        "more than {UNASKED_MAX} direct calls whose values it did not ask for"
                    ));
                }
                s.unasked.extend(ids);
                self.know_args(&spec.args);
                self.submit_actor_task(home_proc, spec);
            }
            FromWorker::Get {
                req,
                ids,
                timeout_ms,
            } => {
                let s = self.direct.sessions.get_mut(&from).expect("checked above");
                if let Some(id) = ids.iter().find(|id| !s.unasked.contains(id)) {
                    return Err(format!("a Get of {id}, not a value of its own calls"));
                }
                for id in &ids {
                    s.unasked.remove(id);
                }
                let get = super::requests::ReqKind::Get;
                self.remote_request(from, req, ids, get, 0, timeout_ms);
            }
            other => return Err(format!("{other:?}, which a direct session does not send")),
        }
        Ok(())
    }

    /// A direct session here ended.
    pub(super) fn direct_session_gone(&mut self, proc: ProcId) {
        self.direct.sessions.remove(&proc);
    }
}
