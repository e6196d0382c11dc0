//! What another node's control session may send here, and how each message is checked
//! ([`NodeState::handle_peer`]): a node may submit work only under ids its own processes made,
//! and for a job it announced; its messages wait, in order, for a job's executable this node
//! does not have yet. What this node asks of peers, and their replies, are `peers.rs`.

use super::effects::Effect;
use super::requests::ReqKind;
use super::state::NodeState;
use crate::error::Error;
use crate::ids::{JobId, NodeId, ObjectId, ProcId, RefId};
use crate::log;
use crate::protocol::worker::{Control, FromWorker, ToWorker};
use crate::protocol::{Arg, TaskSpec};

impl NodeState {
    /// Makes sure this node knows every object `args` refer to (borrowing those of others).
    pub(super) fn know_args(&mut self, args: &[Arg]) {
        for arg in args {
            let refs: Vec<ObjectId> = match arg {
                Arg::Ref(id) => vec![*id],
                Arg::Value(v) => v
                    .contained
                    .iter()
                    .filter_map(|r| match r {
                        RefId::Object(o) => Some(*o),
                        RefId::Actor(_) => None,
                    })
                    .collect(),
            };
            for id in refs {
                self.know(id);
            }
        }
    }

    /// A message from the session node `node` holds here (as process `from`).
    pub(super) fn handle_peer(
        &mut self,
        from: ProcId,
        node: NodeId,
        msg: FromWorker,
    ) -> std::result::Result<(), String> {
        log::debug!("{node} sent {msg:?}");
        // A session waiting for a job's executable keeps its messages in order.
        if let Some((_, queue)) = self.peers.blocked.get_mut(&from) {
            queue.push_back(msg);
            return Ok(());
        }
        let made_there = |id: u128| crate::ids::ObjectId(id).node() == node;
        match msg {
            FromWorker::Job {
                job,
                fingerprint,
                sha256,
                size,
                namespace,
            } => {
                // Any node running the job's work may announce it (work travels on). Its
                // namespace is its driver's: set by the first announcement, never by a peer
                // for a job whose driver is on this node (its hello set it).
                if let Some(ns) = namespace
                    && job.node() != self.node
                    && self.names.namespace_of(job).is_none()
                {
                    self.set_job_namespace(job, &ns);
                }
                self.job_announced(node, job, fingerprint, sha256, size)
            }
            FromWorker::SubmitTask(spec) => {
                if !made_there(spec.task.0) {
                    return Err(format!("a task {} not made on {node}", spec.task));
                }
                super::returns::check_shape(spec.task, &spec.ext.returns)?;
                spec.resources.check_received()?;
                super::inline_args(&spec.args)?;
                if self.block_until_job(spec.job, from, || FromWorker::SubmitTask(spec.clone()))? {
                    return Ok(());
                }
                self.know_args(&spec.args);
                self.submit_task(from, spec);
            }
            FromWorker::CreateActor(spec) => {
                if !made_there(spec.actor.0) {
                    return Err(format!("an actor {} not made on {node}", spec.actor));
                }
                spec.resources.check_received()?;
                super::inline_args(&spec.args)?;
                if self.block_until_job(spec.job, from, || FromWorker::CreateActor(spec.clone()))? {
                    return Ok(());
                }
                self.know_args(&spec.args);
                self.create_actor(from, spec);
            }
            FromWorker::SubmitActorTask(spec) => {
                if !made_there(spec.task.0) {
                    return Err(format!("a call {} not made on {node}", spec.task));
                }
                super::returns::check_shape(spec.task, &spec.returns)?;
                super::inline_args(&spec.args)?;
                self.know_args(&spec.args);
                self.submit_actor_task(from, spec);
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
            // Another node's count may race with the object's end here: not a violation.
            FromWorker::DelRef(id) => {
                let _ = self.del_ref(from, id);
            }
            FromWorker::KillActor { actor } => self.kill_actor(actor, "killed by ray::kill"),
            // What a node asks of an actor or task of its own that runs here.
            FromWorker::Control {
                req,
                op:
                    op @ (Control::KillActor { .. }
                    | Control::Cancel { .. }
                    | Control::StreamNext { .. }
                    | Control::StreamDropped { .. }),
            } => {
                let to = super::control::Answer::Remote { proc: from, req };
                self.control(from, to, op)?;
            }
            FromWorker::CancelGet { req } => self.cancel_get(from, req),
            FromWorker::LocateActor { req, actor } => {
                let node = self.actor_location(actor);
                self.send(from, ToWorker::ActorLocation { req, node });
            }
            FromWorker::JobEnded { job } => {
                if job.node() != node {
                    return Err(format!("the end of {job}, whose driver is not on {node}"));
                }
                self.end_job(job);
            }
            FromWorker::Log { job, stderr, line } => {
                if let Some(driver) = self.jobs.get(job).and_then(|j| j.driver) {
                    self.send(driver, ToWorker::Log { stderr, line });
                }
            }
            FromWorker::DirectTicket {
                actor,
                driver,
                job,
                ticket,
            } => self.direct_ticket_arrived(from, node, actor, driver, job, ticket)?,
            other => return Err(format!("{other:?}, which a node does not send")),
        }
        Ok(())
    }

    /// Work of a job whose executable is still being fetched waits for it, and so does every
    /// later message of the same session (they stay in order). `Ok(true)` if `make`'s message
    /// was queued; an error for work of a job the session never announced.
    fn block_until_job(
        &mut self,
        job: JobId,
        from: ProcId,
        make: impl FnOnce() -> FromWorker,
    ) -> std::result::Result<bool, String> {
        if self.jobs.get(job).is_some() {
            return Ok(false);
        }
        if !self.jobs.is_fetching(job) {
            return Err(format!("work of {job}, which it did not announce"));
        }
        self.peers
            .blocked
            .insert(from, (job, std::collections::VecDeque::from([make()])));
        Ok(true)
    }

    /// A peer announced a job: known already, or its executable is fetched (from that peer).
    fn job_announced(
        &mut self,
        node: NodeId,
        job: JobId,
        fingerprint: u64,
        sha256: [u8; 32],
        size: u64,
    ) {
        if self.jobs.get(job).is_some() || !self.jobs.start_fetch(job, fingerprint, sha256, size) {
            return;
        }
        self.effects.push(Effect::EnsureJob {
            job,
            from: node,
            sha256,
            size,
        });
    }

    /// The executable of an announced job is here (or could not be had): the sessions that
    /// waited for it go on, in order.
    pub(crate) fn job_ready(
        &mut self,
        job: JobId,
        result: std::result::Result<crate::node_manager::remote::CachedBinary, String>,
    ) {
        let Some((fingerprint, sha256, size)) = self.jobs.fetched(job) else {
            return;
        };
        let failed = match result {
            Ok(binary) => {
                self.add_job(job, binary.path, fingerprint, None);
                self.jobs.set_binary(job, sha256, size);
                self.jobs.pin(job, binary.pin);
                None
            }
            Err(reason) => {
                log::error!("cannot get the executable of {job}: {reason}");
                Some(reason)
            }
        };
        let waiting: Vec<ProcId> = self
            .peers
            .blocked
            .iter()
            .filter(|(_, (j, _))| *j == job)
            .map(|(p, _)| *p)
            .collect();
        for from in waiting {
            let Some((_, queue)) = self.peers.blocked.remove(&from) else {
                continue;
            };
            let Some(node) = self.peer_of(from) else {
                continue;
            };
            for msg in queue {
                if let (Some(reason), FromWorker::SubmitTask(TaskSpec { task, job: j, .. })) =
                    (&failed, &msg)
                {
                    if *j == job {
                        let err = Error::WorkerStartFailed {
                            cause: format!("{job}'s executable could not be fetched: {reason}"),
                        };
                        self.objects.create_pending(*task, from);
                        self.complete_object(*task, Err(err));
                        continue;
                    }
                }
                if let Err(what) = self.handle_peer(from, node, msg) {
                    self.violation(from, &what);
                    break;
                }
            }
        }
    }
}
