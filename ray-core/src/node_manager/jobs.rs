//! Jobs: the programs whose code this node runs. A job is a driver: its executable (the one
//! its workers run, the driver's own in single-node mode, a verified cached copy on a cluster
//! node) and its build fingerprint (what its workers must match at hello).
//!
//! [`Jobs`] owns the table. A job ends when its driver goes (in a cluster: disconnects or its
//! node dies): its queued work is dropped and its workers are told to exit.

use super::actors::ActorState;
use super::state::NodeState;
use super::workers::WorkerState;
use crate::ids::{IdMap, JobId, NodeId, ProcId};
use crate::log;
use std::path::PathBuf;

pub(crate) struct Job {
    /// The executable its workers run.
    pub exe: PathBuf,
    /// The build fingerprint its workers must have.
    pub fingerprint: u64,
    /// Its driver, when the driver is attached to this node.
    pub driver: Option<ProcId>,
    /// Keeps its executable in the binary cache while it runs.
    pin: Option<Box<dyn std::any::Any + Send + Sync>>,
    /// SHA-256 and size of its executable, when known by hash (to announce it to other nodes).
    pub binary: Option<([u8; 32], u64)>,
    /// Its driver's program name and pid, when the driver is attached here from its own
    /// process.
    pub shown: Option<(String, u32)>,
}

/// A job another node announced, whose executable is being fetched.
struct Fetching {
    fingerprint: u64,
    sha256: [u8; 32],
    size: u64,
}

#[derive(Default)]
pub(crate) struct Jobs {
    map: IdMap<JobId, Job>,
    fetching: IdMap<JobId, Fetching>,
}

impl Jobs {
    pub(crate) fn get(&self, job: JobId) -> Option<&Job> {
        self.map.get(&job)
    }

    /// Every job known here.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (JobId, &Job)> {
        self.map.iter().map(|(id, j)| (*id, j))
    }

    /// Keeps `pin` (the job's cached executable) until the job ends.
    pub(crate) fn pin(&mut self, job: JobId, pin: Box<dyn std::any::Any + Send + Sync>) {
        if let Some(j) = self.map.get_mut(&job) {
            j.pin = Some(pin);
        }
    }

    /// The job's driver's name and pid, for status.
    pub(crate) fn show(&mut self, job: JobId, name: String, pid: u32) {
        if let Some(j) = self.map.get_mut(&job) {
            j.shown = Some((name, pid));
        }
    }

    /// The job's executable's hash and size.
    pub(crate) fn set_binary(&mut self, job: JobId, sha256: [u8; 32], size: u64) {
        if let Some(j) = self.map.get_mut(&job) {
            j.binary = Some((sha256, size));
        }
    }

    /// Starts fetching an announced job's executable; false if that is under way already.
    pub(crate) fn start_fetch(
        &mut self,
        job: JobId,
        fingerprint: u64,
        sha256: [u8; 32],
        size: u64,
    ) -> bool {
        if self.fetching.contains_key(&job) {
            return false;
        }
        self.fetching.insert(
            job,
            Fetching {
                fingerprint,
                sha256,
                size,
            },
        );
        true
    }

    pub(crate) fn is_fetching(&self, job: JobId) -> bool {
        self.fetching.contains_key(&job)
    }

    /// The fetch ended: the job's fingerprint, hash and size.
    pub(crate) fn fetched(&mut self, job: JobId) -> Option<(u64, [u8; 32], u64)> {
        self.fetching
            .remove(&job)
            .map(|f| (f.fingerprint, f.sha256, f.size))
    }

    /// The job whose driver is `proc`, if it is a driver attached here.
    pub(crate) fn of_driver(&self, proc: ProcId) -> Option<JobId> {
        let job = JobId::of_driver(proc);
        self.map
            .get(&job)
            .is_some_and(|j| j.driver == Some(proc))
            .then_some(job)
    }
}

impl NodeState {
    /// A job starts (its driver attached, or its work reached this node).
    pub(crate) fn add_job(
        &mut self,
        job: JobId,
        exe: PathBuf,
        fingerprint: u64,
        driver: Option<ProcId>,
    ) {
        self.jobs.map.insert(
            job,
            Job {
                exe,
                fingerprint,
                driver,
                pin: None,
                binary: None,
                shown: None,
            },
        );
    }

    /// The job that `proc` runs code of: its own if it is a driver, its job if a worker.
    pub(crate) fn job_of(&self, proc: ProcId) -> Option<JobId> {
        self.jobs
            .of_driver(proc)
            .or_else(|| self.workers.get(proc).map(|w| w.job))
    }

    /// The job ended: its actors are dead (but detached ones), its idle workers told to exit
    /// and the others stopped (their results have nobody to go to). The node of its driver
    /// tells every other node, which does the same.
    pub(crate) fn end_job(&mut self, job: JobId) {
        let Some(mut ended) = self.jobs.map.remove(&job) else {
            return;
        };
        log::info!("{job} ended");
        if !self.actors.iter().any(|(_, a)| a.job == job && a.detached) {
            self.names.job_ended(job);
        }
        if job.node() == self.node {
            let peers: Vec<NodeId> = self.cluster.peers();
            for node in peers {
                self.send_node(node, crate::protocol::worker::FromWorker::JobEnded { job });
            }
        }
        let mut actors = Vec::new();
        let mut detached = Vec::new();
        // The workers of its detached actors, which go on.
        let mut keep: Vec<ProcId> = Vec::new();
        for (id, a) in self.actors.iter() {
            if a.job != job || matches!(a.state, ActorState::Dead(_)) {
                continue;
            }
            if !a.detached {
                actors.push(*id);
                continue;
            }
            detached.push(*id);
            if let ActorState::Starting(p) | ActorState::Creating(p) | ActorState::Alive(p) =
                a.state
            {
                keep.push(p);
            }
        }
        for actor in actors {
            self.kill_actor(actor, &format!("its driver's {job} ended"));
        }
        for proc in self.workers.procs() {
            let Some(w) = self.workers.get(proc) else {
                continue;
            };
            if w.job != job || keep.contains(&proc) {
                continue;
            }
            let connected = w.connected;
            let state = self.workers.state(proc);
            self.retire(proc);
            match state {
                Some(WorkerState::Idle) if connected => {
                    self.send(proc, crate::protocol::worker::ToWorker::Exit)
                }
                _ => self.effects.push(super::effects::Effect::Kill(proc)),
            }
        }
        if !detached.is_empty() {
            // Its detached actors live on, run by its executable (kept in the cache by the
            // job's pin): the job stays without a driver, and is not shown as running.
            log::info!(
                "{job}: {} detached actor(s) outlive it until ray::kill",
                detached.len()
            );
            ended.driver = None;
            ended.shown = None;
            self.jobs.map.insert(job, ended);
        }
    }
}
