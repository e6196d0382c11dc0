//! The node manager (Ray's raylet): a node's resources, scheduling queue, worker pool, actors,
//! object directory and object store.
//!
//! Two layers:
//! - [`state::NodeState`], the state machine, split by concern into the parts listed in
//!   [`state`]. It does no I/O: handlers push [`effects::Effect`]s. It is unit-tested with fake
//!   peers and a fake clock (`tests`).
//! - [`NodeManager`] ([`runtime`]), the component around it: the lock, the worker connections
//!   ([`conn`]), the spawner ([`spawn`]), timers and GPU detection; it carries effects out after
//!   the lock is released. [`start`] makes one without a driver; `ray::init` starts one in the
//!   driver process (single-node mode).
//!
//! This file dispatches a worker's messages, after checking each against who sent it.

mod actors;
mod borrow;
mod cancel;
mod cluster;
mod conn;
mod control;
mod data_links;
mod data_session;
mod direct;
mod effects;
mod escapes;
mod events;
pub(crate) mod exits;
#[cfg(feature = "testing")]
pub(crate) mod fuzz;
mod generators;
mod introspect;
mod jobs;
mod lineage;
pub(crate) mod links;
mod local;
pub(crate) mod name_directory;
mod names;
mod objects;
mod peer_messages;
mod peers;
mod placement;
pub(crate) mod remote;
mod requests;
mod retries;
mod returns;
mod runtime;
mod scheduler;
mod session;
pub(crate) mod spawn;
mod state;
pub(crate) mod stats;
mod store;
mod tasks;
#[cfg(test)]
mod tests;
mod unhandled;
mod workers;

pub(crate) use runtime::{NodeConfig, NodeManager, install_arena, start};

use crate::codec::{Data, Value};
use crate::error::Result;
use crate::ids::{ActorId, ProcId, RefId};
use crate::protocol::Arg;
use crate::protocol::worker::{FromWorker, ToWorker};
use requests::ReqKind;
use state::NodeState;

/// The last part of a registered name (`crate::module::add` → `add`).
pub(crate) fn short_name(name: &str) -> &str {
    name.rsplit("::").next().unwrap_or(name)
}

impl NodeState {
    /// A message from worker `from`. A message that `from` may not send (an id it did not
    /// make, a result it was not asked for, a region it was not given, a reference it does not
    /// hold...) is a protocol violation: the worker is disconnected and stopped, and nothing
    /// else is touched.
    pub(crate) fn handle(&mut self, from: ProcId, msg: FromWorker) {
        let Some(w) = self.workers.get(from) else {
            // The worker is gone and everything it held was released: a message it sent just
            // before dying must not create references nobody will ever drop.
            return;
        };
        if w.banned {
            return;
        }
        if let Some(node) = self.peer_of(from) {
            let handled = match self.is_direct_session(from) {
                true => self.handle_direct(from, msg),
                false => self.handle_peer(from, node, msg),
            };
            if let Err(what) = handled {
                self.violation(from, &what);
                // Its connection is closed; nothing else ends the session here (no process
                // exits), so what it held is let go now.
                self.peer_gone(from);
            }
            return;
        }
        let outcome = match (w.connected, msg) {
            (
                false,
                FromWorker::Hello {
                    version,
                    fingerprint,
                    pid,
                },
            ) => self.worker_hello(from, version, fingerprint, pid),
            (false, _) => Err("a message before its hello".into()),
            (true, msg) => self.handle_connected(from, msg),
        };
        if let Err(what) = outcome {
            self.violation(from, &what);
        }
    }

    fn handle_connected(&mut self, from: ProcId, msg: FromWorker) -> Result<(), String> {
        match msg {
            FromWorker::Hello { .. } => return Err("a second hello".into()),
            FromWorker::SubmitTask(spec) => {
                self.fresh(from, RefId::Object(spec.task))?;
                self.own_job(from, spec.job)?;
                self.fresh_returns(from, spec.task, &spec.ext.returns)?;
                spec.resources.check_received()?;
                self.check_args(from, &spec.args)?;
                self.submit_task(from, spec);
            }
            FromWorker::CreateActor(spec) => {
                self.fresh(from, RefId::Actor(spec.actor))?;
                self.own_job(from, spec.job)?;
                spec.resources.check_received()?;
                self.check_args(from, &spec.args)?;
                self.create_actor(from, spec);
            }
            FromWorker::SubmitActorTask(spec) => {
                self.fresh(from, RefId::Object(spec.task))?;
                self.fresh_returns(from, spec.task, &spec.returns)?;
                self.check_args(from, &spec.args)?;
                self.may_use_actor(from, spec.actor)?;
                self.submit_actor_task(from, spec);
            }
            FromWorker::TaskDone { task, result } => self.task_done(from, task, result)?,
            FromWorker::ActorCreated { actor, result } => {
                self.actor_created(from, actor, result)?
            }
            FromWorker::Put { id, result } => {
                self.fresh(from, RefId::Object(id))?;
                if let Ok(v) = &result {
                    self.accept_value(from, v)?;
                }
                let remote = self.workers.get(from).is_some_and(|w| w.remote);
                let result = match result {
                    Ok(v) if remote => Ok(self.move_into_store(v)),
                    other => other,
                };
                self.put(from, id, result);
            }
            FromWorker::Get {
                req,
                ids,
                timeout_ms,
            } => self.remote_request(from, req, ids, ReqKind::Get, 0, timeout_ms),
            FromWorker::Wait {
                req,
                ids,
                num_returns,
                timeout_ms,
            } => self.remote_request(from, req, ids, ReqKind::Wait, num_returns, timeout_ms),
            FromWorker::AddRef(id) => self.add_ref(from, id),
            FromWorker::DelRef(id) => self.del_ref(from, id)?,
            FromWorker::KillActor { actor } => {
                self.may_use_actor(from, actor)?;
                self.kill_actor(actor, "killed by ray::kill");
            }
            FromWorker::Alloc { req, size } => {
                if self.workers.get(from).is_some_and(|w| w.remote) {
                    return Err("an allocation, but it shares no memory with the node".into());
                }
                let result = self.alloc(from, size);
                self.send(from, ToWorker::Allocated { req, result });
            }
            FromWorker::Release(ids) => self.release_mapped(from, &ids)?,
            FromWorker::CancelGet { req } => self.cancel_get(from, req),
            FromWorker::Job { .. }
            | FromWorker::SessionAck { .. }
            | FromWorker::JobEnded { .. }
            | FromWorker::LocateActor { .. }
            | FromWorker::DirectTicket { .. }
            | FromWorker::Log { .. } => {
                return Err("a message only nodes send".into());
            }
            FromWorker::DirectCall {
                actor,
                task,
                returns,
                args,
                at,
            } => self.direct_call(from, actor, task, returns, args, at)?,
            FromWorker::DirectDone { task, result } => self.direct_done(from, task, result)?,
            FromWorker::DirectLost(spec) => self.direct_lost(from, spec)?,
            FromWorker::Control { req, op } => {
                let to = control::Answer::Remote { proc: from, req };
                self.control(from, to, op)?;
            }
            FromWorker::TaskReturns { task, result } => self.task_returns(from, task, result)?,
            FromWorker::Yield {
                req,
                task,
                index,
                item,
                value,
            } => self.stream_yield(from, req, task, index, item, value)?,
        }
        Ok(())
    }

    /// A new object or actor id must be one `from` made, and not in use.
    fn fresh(&self, from: ProcId, id: RefId) -> Result<(), String> {
        let (creator, taken) = match id {
            RefId::Object(o) => (o.creator(), self.objects.get(o).is_some()),
            RefId::Actor(a) => (a.creator(), self.actors.contains(a)),
        };
        if creator != from {
            return Err(format!(
                "a new id {id:?} made by another process ({creator})"
            ));
        }
        if taken {
            return Err(format!("a new id {id:?} that is already in use"));
        }
        Ok(())
    }

    /// A process submits work of its own job only.
    fn own_job(&self, from: ProcId, job: crate::ids::JobId) -> Result<(), String> {
        if self.job_of(from) != Some(job) {
            return Err(format!("work of {job}, not of its own job"));
        }
        Ok(())
    }

    /// Arguments of a submission: values inline (a large value is `put` first and passed by
    /// reference) and every reference one the sender holds.
    fn check_args(&self, from: ProcId, args: &[Arg]) -> Result<(), String> {
        inline_args(args)?;
        for arg in args {
            match arg {
                Arg::Value(v) => {
                    for r in &v.contained {
                        if !r.is_null() && !self.holds(from, *r) {
                            return Err(format!("an argument containing {r:?}, not held"));
                        }
                    }
                }
                Arg::Ref(id) => {
                    if !self.holds(from, RefId::Object(*id)) {
                        return Err(format!("an argument referring to {id:?}, not held"));
                    }
                }
            }
        }
        Ok(())
    }

    /// Calling or killing an actor takes a handle to it.
    fn may_use_actor(&self, from: ProcId, actor: ActorId) -> Result<(), String> {
        if self.actors.contains(actor) && !self.holds(from, RefId::Actor(actor)) {
            return Err(format!(
                "a use of actor {actor}, whose handle it does not hold"
            ));
        }
        Ok(())
    }

    /// Objects and bytes in the directory (for tests and stats).
    pub(crate) fn object_stats(&self) -> (usize, u64) {
        (self.objects.len(), self.objects.bytes())
    }
}

/// No argument value names a region of a store: a process or peer passes its stored values by
/// reference (`Arg::Ref`), so a region would be one of this node's that it chose.
fn inline_args(args: &[Arg]) -> Result<(), String> {
    let region = |a: &Arg| {
        matches!(
            a,
            Arg::Value(Value {
                data: Data::Shm { .. },
                ..
            })
        )
    };
    if args.iter().any(region) {
        return Err("an argument naming a store region".into());
    }
    Ok(())
}
