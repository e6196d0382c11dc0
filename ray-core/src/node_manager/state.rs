//! The node manager's state: one value composed of per-concern parts, each owning its fields
//! and invariants (as tokio composes its scheduler's locked state from per-module pieces).
//!
//! | part | owns | file |
//! |---|---|---|
//! | `objects` | every object's state, holders, pins, waiters | [`super::objects`] |
//! | `tasks` | normal tasks from submission to result | [`super::tasks`] |
//! | `actors` | actors, their calls, restarts | [`super::actors`] |
//! | `workers` | worker processes, idle and prestarted lists | [`super::workers`] |
//! | `jobs` | the programs this node runs code of: executable, fingerprint | [`super::jobs`] |
//! | `requests` | open get/wait requests, CPU lending | [`super::requests`] |
//! | `store` | shared-memory allocation, sealing, spilling | [`super::store`] |
//! | `scheduler` | ready queue, scheduling passes, GPU count | [`super::scheduler`] |
//! | `resources` | the node's resources, free and total | [`crate::resources`] |
//! | `cluster` | other nodes' resources, placement elsewhere | [`super::cluster`] |
//! | `peers` | work sent to other nodes, their sessions here | [`super::peers`] |
//! | `resources` | the node's resources, free and total (and placement groups' bundles) | [`crate::resources`], [`crate::bundles`] |
//! | `names` | named actors' names and the job's namespace | [`super::names`] |
//! | `cancels` | cancelled running tasks, tasks' children | [`super::cancel`] |
//! | `returns` | calls with several return values | [`super::returns`] |
//! | `generators` | streaming calls' items and backpressure | [`super::generators`] |
//! | `placement` | placement groups | [`super::placement`] |
//! | `escapes` | references serialized out of ray, kept for their owner | [`super::escapes`] |
//! | `unhandled` | failed objects whose error was never read | [`super::unhandled`] |
//! | `retries` | `max_calls` counts | [`super::retries`] |
//! | `events` | finished tasks and calls (a bounded ring), for the state API | [`super::events`] |
//!
//! This module does no I/O: handlers push [`Effect`]s into `effects`, which the
//! [`NodeManager`](super::NodeManager) carries out after releasing the lock.

use super::actors::Actors;
use super::cancel::Cancels;
use super::cluster::Cluster;
use super::effects::{Effect, Peer};
use super::escapes::Escapes;
use super::events::TaskEvents;
use super::generators::Generators;
use super::jobs::Jobs;
use super::names::Names;
use super::objects::ObjectDirectory;
use super::peers::Peers;
use super::placement::PlacementGroups;
use super::requests::Requests;
use super::retries::Retries;
use super::returns::MultiReturns;
use super::scheduler::Scheduler;
use super::store::Store;
use super::tasks::Tasks;
use super::unhandled::Unhandled;
use super::workers::Pool;
use crate::ids::{NodeId, ProcId};
use crate::protocol::worker::ToWorker;
use crate::resources::NodeResources;

/// Settings fixed for the life of a node manager.
pub(crate) struct Settings {
    /// Idle task workers kept for reuse.
    pub max_idle_workers: usize,
    /// Whether GPUs can be counted (`Effect::DetectGpus`) when the count is not given.
    pub can_detect_gpus: bool,
}

pub(crate) struct NodeState {
    pub node: NodeId,
    pub settings: Settings,
    pub objects: ObjectDirectory,
    pub tasks: Tasks,
    pub actors: Actors,
    pub workers: Pool,
    pub jobs: Jobs,
    pub requests: Requests,
    pub store: Store,
    pub scheduler: Scheduler,
    pub resources: NodeResources,
    pub cluster: Cluster,
    pub peers: Peers,
    pub direct: super::direct::Direct,
    pub names: Names,
    pub lineage: super::lineage::Lineage,
    pub cancels: Cancels,
    pub returns: MultiReturns,
    pub generators: Generators,
    pub placement: PlacementGroups,
    pub escapes: Escapes,
    pub unhandled: Unhandled,
    pub retries: Retries,
    pub shutting_down: bool,
    /// The time as the runtime set it before the current handler, in microseconds since the
    /// Unix epoch (the tests' fake clock sets it too): when tasks are submitted, start, end.
    pub now_us: u64,
    /// Finished tasks and calls, and actors gone, for the state API and the timeline.
    pub events: TaskEvents,
    /// What to do once the lock is released, in order.
    pub effects: Vec<Effect>,
}

impl NodeState {
    pub(crate) fn new(
        node: NodeId,
        settings: Settings,
        resources: NodeResources,
        store: Store,
    ) -> Self {
        NodeState {
            node,
            settings,
            objects: ObjectDirectory::default(),
            tasks: Tasks::default(),
            actors: Actors::default(),
            workers: Pool::new(node),
            jobs: Jobs::default(),
            requests: Requests::default(),
            store,
            scheduler: Scheduler::default(),
            resources,
            cluster: Cluster::default(),
            peers: Peers::default(),
            direct: Default::default(),
            names: Names::new(),
            lineage: Default::default(),
            cancels: Cancels::default(),
            returns: MultiReturns::default(),
            generators: Generators::default(),
            placement: PlacementGroups::default(),
            escapes: Escapes::default(),
            unhandled: Unhandled::default(),
            retries: Retries::default(),
            shutting_down: false,
            now_us: 0,
            events: TaskEvents::default(),
            effects: Vec::new(),
        }
    }

    /// The driver process of this node (in single-node mode, the process it runs in).
    /// The node is a cluster's (detached actors can outlive their driver here).
    pub(crate) fn in_cluster(&self) -> bool {
        self.cluster.member
    }

    pub(crate) fn driver(&self) -> ProcId {
        ProcId::driver(self.node)
    }

    /// Stops everything: workers are told to exit (or killed if not connected), driver
    /// waiters woken. Nothing new is scheduled.
    pub(crate) fn begin_shutdown(&mut self) {
        self.shutting_down = true;
        for proc in self.workers.procs() {
            let connected = self.workers.get(proc).is_some_and(|w| w.connected);
            if connected {
                self.effects
                    .push(Effect::Send(Peer::Worker(proc), ToWorker::Exit));
            } else {
                self.effects.push(Effect::Kill(proc));
            }
            self.retire(proc);
        }
        self.fail_all_requests();
        self.fail_stream_waiters();
    }

    /// Kills every worker that is left (at the end of a shutdown's grace period).
    pub(crate) fn kill_all(&mut self) {
        for proc in self.workers.procs() {
            self.effects.push(Effect::Kill(proc));
        }
    }
}
