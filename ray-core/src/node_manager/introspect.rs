//! What the node tells about itself: resources (total and free), nodes, and what a worker's
//! current task or actor holds.

use super::state::NodeState;
use super::tasks::TaskState;
use super::workers::WorkerState;
use crate::ids::ProcId;
use crate::introspect::NodeInfo;
use crate::protocol::worker::ControlReply;
use crate::resources::Allocation;

impl NodeState {
    /// The cluster's resources, total and free: this node's, plus each live peer's as last
    /// published (less what this node sent there since).
    pub(super) fn resources_reply(&self) -> ControlReply {
        let amounts = self.resources.amounts();
        let mut total: std::collections::BTreeMap<String, f64> =
            amounts.iter().map(|(n, t, _)| (n.clone(), *t)).collect();
        let mut available: std::collections::BTreeMap<String, f64> =
            amounts.into_iter().map(|(n, _, f)| (n, f)).collect();
        for (_, t, a) in self.cluster.peer_resources() {
            for (n, x) in t {
                *total.entry(n).or_default() += x;
            }
            for (n, x) in a {
                *available.entry(n).or_default() += x;
            }
        }
        ControlReply::Resources {
            total: total.into_iter().collect(),
            available: available.into_iter().collect(),
        }
    }

    pub(super) fn nodes_reply(&self) -> ControlReply {
        let resources = self
            .resources
            .amounts()
            .into_iter()
            .filter(|(_, t, _)| *t > 0.0)
            .map(|(n, t, _)| (n, t))
            .collect();
        let mut nodes = vec![NodeInfo {
            node_id: self.node,
            alive: !self.shutting_down,
            is_head: true,
            resources,
            workers: self.workers.len(),
        }];
        for (node_id, total, _) in self.cluster.peer_resources() {
            nodes.push(NodeInfo {
                node_id,
                alive: true,
                is_head: false,
                resources: total,
                workers: 0,
            });
        }
        ControlReply::Nodes(nodes)
    }

    /// The resources held by what `proc` runs now (its task, or its actor).
    pub(super) fn assigned_resources(&self, proc: ProcId) -> ControlReply {
        let alloc: Option<&Allocation> = match self.workers.state(proc) {
            Some(WorkerState::Busy(t)) => match self.tasks.get(t).map(|te| &te.state) {
                Some(TaskState::Assigned { alloc }) => Some(alloc),
                _ => None,
            },
            Some(WorkerState::Actor(a)) => self.actors.get(a).and_then(|e| e.alloc.as_ref()),
            _ => None,
        };
        let mut out = Vec::new();
        if let Some(a) = alloc {
            if !a.cpu.is_zero() {
                out.push(("CPU".to_string(), a.cpu.as_f64()));
            }
            let gpu: f64 = a.gpus.iter().map(|(_, x)| x.as_f64()).sum();
            if gpu > 0.0 {
                out.push(("GPU".to_string(), gpu));
            }
            for (n, x) in &a.custom {
                out.push((n.clone(), x.as_f64()));
            }
        }
        ControlReply::Assigned(out)
    }
}
