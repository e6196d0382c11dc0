//! What a node reports about itself (for `ray-rs status`): its jobs, actors and workers. Read
//! under the state lock, published by the daemon at most about once a second; nothing here is
//! written per task.

use super::actors::ActorState;
use super::state::NodeState;
use super::workers::WorkerState;
use std::collections::BTreeMap;

/// A job whose driver is attached to this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSummary {
    /// Its id, `node.index` (unique in the cluster).
    pub id: String,
    /// Its driver's program name.
    pub name: String,
    /// Its driver's pid on its machine.
    pub driver_pid: u32,
}

/// A node's counts, as of one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Worker processes (task workers and actors).
    pub workers: usize,
    /// Live actors here, by class.
    pub actors: BTreeMap<String, usize>,
    /// Jobs whose drivers are attached here.
    pub jobs: Vec<JobSummary>,
    /// Bytes of objects copied here from other nodes.
    pub bytes_pulled: u64,
    /// Bytes of objects copied from here to other nodes.
    pub bytes_served: u64,
}

impl NodeState {
    /// The counts of `NodeStats` held in the state (transfer counters are the runtime's).
    pub(crate) fn stats(&self) -> NodeStats {
        let mut actors: BTreeMap<String, usize> = BTreeMap::new();
        for (_, a) in self.actors.iter() {
            if matches!(
                a.state,
                ActorState::Starting(_) | ActorState::Creating(_) | ActorState::Alive(_)
            ) {
                *actors
                    .entry(super::short_name(&a.class).to_string())
                    .or_default() += 1;
            }
        }
        let workers = self
            .workers
            .procs()
            .into_iter()
            .filter(|p| {
                !matches!(
                    self.workers.state(*p),
                    Some(WorkerState::Driver | WorkerState::Peer) | None
                )
            })
            .count();
        let mut jobs: Vec<JobSummary> = self
            .jobs
            .iter()
            .filter_map(|(id, j)| {
                let (name, pid) = j.shown.clone()?;
                Some(JobSummary {
                    id: format!("{}.{}", id.0.node.0, id.0.index),
                    name,
                    driver_pid: pid,
                })
            })
            .collect();
        jobs.sort_by(|a, b| a.id.cmp(&b.id));
        NodeStats {
            workers,
            actors,
            jobs,
            bytes_pulled: 0,
            bytes_served: 0,
        }
    }
}
