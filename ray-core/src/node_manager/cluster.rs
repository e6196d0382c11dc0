//! The other nodes of the cluster, as this node sees them, and where work goes when it does
//! not fit here.
//!
//! [`Cluster`] holds each live peer's resources, total and available, as last published (the
//! daemon feeds them from etcd when they change, at most about once a second), and what this
//! node has sent there and not yet heard back about. A publication also says what of the
//! peer's resources this node's own tasks were using then; so a peer's room is what it
//! published free plus what this node's tasks used, less this node's tasks in flight there now.
//! Each node thus tells its own work from others' in a publication however stale it is:
//! a publication made while its task ran there does not hold back the next one once the result
//! is back (it would wait for the next publication, up to a second), and one that predates the
//! work sent does not count it twice.
//!
//! Placement follows Ray's hybrid policy in its simplest form: a task runs here while it fits
//! here; when it does not, it goes to a peer that has room now, preferring the one that holds
//! most of its arguments' bytes, then the least loaded. When no peer has room, a task this
//! node's callers submitted may queue behind this node's work on a peer, up to [`PIPELINE`]
//! times that peer's total in flight (as Ray pipelines tasks to a leased worker): short tasks
//! then reach a busy peer without waiting for a round trip each. A task another node sent
//! runs where it was sent, never passed on: that node placed it there, and a node may submit
//! only under ids its own processes made. A request no live node could ever fit is infeasible
//! at once; one that fits only when busy nodes free up waits.

use super::state::NodeState;
use crate::codec::Data;
use crate::ids::NodeId;
use crate::protocol::Arg;
use crate::resources::{Amount, ResourceRequest};
use std::collections::BTreeMap;

/// Amounts by resource name.
type Amounts = BTreeMap<String, f64>;

/// How much of this node's work a peer may hold in flight, queued behind what it runs, as a
/// multiple of its total resources: short tasks then reach a busy peer without a round trip
/// each (Ray pipelines them to a leased worker), and a long queue does not build up on a
/// peer another may free first.
pub(crate) const PIPELINE: u64 = 4;

/// Amounts of resources by kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Capacity {
    cpu: Amount,
    gpu: Amount,
    custom: BTreeMap<String, Amount>,
}

impl Capacity {
    /// By resource name (`CPU`, `GPU`, custom), amounts above zero.
    fn to_map(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        if !self.cpu.is_zero() {
            m.insert("CPU".to_string(), self.cpu.as_f64());
        }
        if !self.gpu.is_zero() {
            m.insert("GPU".to_string(), self.gpu.as_f64());
        }
        for (n, a) in &self.custom {
            if !a.is_zero() {
                m.insert(n.clone(), a.as_f64());
            }
        }
        m
    }

    /// From a map of names (`CPU`, `GPU`, custom) to amounts.
    pub(crate) fn from_map(map: &BTreeMap<String, f64>) -> Capacity {
        let amount = |x: f64| Amount::from_f64(x.max(0.0)).unwrap_or(Amount::ZERO);
        let mut c = Capacity::default();
        for (name, x) in map {
            match name.as_str() {
                "CPU" => c.cpu = amount(*x),
                "GPU" => c.gpu = amount(*x),
                other => {
                    c.custom.insert(other.to_string(), amount(*x));
                }
            }
        }
        c
    }

    fn fits(&self, req: &ResourceRequest) -> bool {
        req.cpu <= self.cpu
            && req.gpu <= self.gpu
            && req
                .custom
                .iter()
                .all(|(n, a)| self.custom.get(n).is_some_and(|have| *a <= *have))
    }

    fn take(&mut self, req: &ResourceRequest) {
        self.cpu = Amount::saturating_sub(self.cpu, req.cpu);
        self.gpu = Amount::saturating_sub(self.gpu, req.gpu);
        for (n, a) in &req.custom {
            if let Some(have) = self.custom.get_mut(n) {
                *have = Amount::saturating_sub(*have, *a);
            }
        }
    }

    fn add(&mut self, req: &ResourceRequest) {
        self.cpu = self.cpu.saturating_add(req.cpu);
        self.gpu = self.gpu.saturating_add(req.gpu);
        for (n, a) in &req.custom {
            let have = self.custom.entry(n.clone()).or_default();
            *have = have.saturating_add(*a);
        }
    }

    /// `self` times `k`, kind by kind (saturating).
    fn times(&self, k: u64) -> Capacity {
        let mul = |a: Amount| Amount::from_raw(a.raw().saturating_mul(k));
        Capacity {
            cpu: mul(self.cpu),
            gpu: mul(self.gpu),
            custom: self
                .custom
                .iter()
                .map(|(n, a)| (n.clone(), mul(*a)))
                .collect(),
        }
    }

    fn add_capacity(&mut self, other: &Capacity) {
        self.cpu = self.cpu.saturating_add(other.cpu);
        self.gpu = self.gpu.saturating_add(other.gpu);
        for (n, a) in &other.custom {
            let have = self.custom.entry(n.clone()).or_default();
            *have = have.saturating_add(*a);
        }
    }

    fn is_empty(&self) -> bool {
        self.cpu.is_zero() && self.gpu.is_zero() && self.custom.values().all(|a| a.is_zero())
    }

    /// `self` less `used`, kind by kind, capped by `cap`.
    fn less_capped(&self, used: &Capacity, cap: &Capacity) -> Capacity {
        let left = |total: Amount, used: Amount, cap: Amount| total.saturating_sub(used).min(cap);
        Capacity {
            cpu: left(self.cpu, used.cpu, cap.cpu),
            gpu: left(self.gpu, used.gpu, cap.gpu),
            custom: self
                .custom
                .iter()
                .map(|(n, t)| {
                    let u = used.custom.get(n).copied().unwrap_or_default();
                    let c = cap.custom.get(n).copied().unwrap_or_default();
                    (n.clone(), left(*t, u, c))
                })
                .collect(),
        }
    }

    fn describe(&self) -> String {
        let mut s = format!("CPU: {}, GPU: {}", self.cpu, self.gpu);
        for (n, a) in &self.custom {
            s.push_str(&format!(", {n}: {a}"));
        }
        s
    }
}

/// A live peer.
#[derive(Debug, Clone)]
pub(crate) struct PeerNode {
    /// Its address, if known.
    addr: Option<std::net::SocketAddr>,
    total: Capacity,
    /// Available as last published.
    published: Capacity,
    /// In use there by tasks this node sent, as that same publication says.
    mine: Capacity,
    /// Tasks this node sent there whose results have not come back.
    in_flight: Capacity,
}

impl PeerNode {
    /// Room there now, as far as this node can tell: what the last publication showed free
    /// or used by this node's tasks, less this node's tasks in flight there now.
    fn available(&self) -> Capacity {
        let mut seen = self.published.clone();
        seen.add_capacity(&self.mine);
        // Never more than its total (the figures come from another process).
        let seen = self.total.less_capped(&Capacity::default(), &seen);
        seen.less_capped(&self.in_flight, &seen)
    }
}

#[derive(Default)]
pub(crate) struct Cluster {
    nodes: BTreeMap<NodeId, PeerNode>,
    /// This node's IP as its peers reach it, in a cluster.
    pub own_ip: Option<std::net::IpAddr>,
    /// The node is a cluster's (a `ray-rs` daemon), not a single-node driver's.
    pub member: bool,
    /// Each peer's newest incarnation registered in etcd (kept after it leaves). Only etcd's
    /// records raise it: a session's hello naming a newer one is refused until they do.
    incarnations: BTreeMap<NodeId, u64>,
    /// The newest incarnation of each peer declared dead (its lease expired).
    dead: BTreeMap<NodeId, u64>,
    /// Peers whose control session broke and is being made again: no new work goes there
    /// meanwhile (they are dead only when etcd says so).
    suspect: std::collections::BTreeSet<NodeId>,
}

impl Cluster {
    /// Why a session of `node` as `incarnation` must be refused, if it must: that
    /// incarnation was declared dead, or a newer one has registered since.
    pub(crate) fn fenced(&self, node: NodeId, incarnation: u64) -> Option<String> {
        if self.dead.get(&node).is_some_and(|d| *d >= incarnation) {
            return Some(format!(
                "incarnation {incarnation} of {node} was declared dead (its lease expired); \
                 it must rejoin as a new incarnation"
            ));
        }
        match self.incarnations.get(&node) {
            Some(newest) if *newest > incarnation => Some(format!(
                "{node} has rejoined as incarnation {newest}; incarnation {incarnation} is over"
            )),
            _ => None,
        }
    }

    /// Whether etcd's record of `node` (as this node last saw it) is `incarnation`.
    pub(crate) fn is_registered(&self, node: NodeId, incarnation: u64) -> bool {
        self.incarnations.get(&node) == Some(&incarnation)
    }

    /// Whether `incarnation` of `node` is newer than the one known (which is then dead).
    pub(crate) fn is_newer(&self, node: NodeId, incarnation: u64) -> bool {
        self.incarnations
            .get(&node)
            .is_some_and(|k| *k < incarnation)
    }

    /// `node` is `incarnation` now (if that is the newest seen).
    pub(crate) fn set_incarnation(&mut self, node: NodeId, incarnation: u64) {
        let known = self.incarnations.entry(node).or_insert(incarnation);
        *known = (*known).max(incarnation);
    }

    /// `node`'s control session broke (`true`) or was made again (`false`).
    pub(crate) fn set_suspect(&mut self, node: NodeId, suspect: bool) {
        if suspect {
            self.suspect.insert(node);
        } else {
            self.suspect.remove(&node);
        }
    }

    /// `node`'s newest incarnation is dead: sessions of it are refused from now on.
    pub(crate) fn record_dead(&mut self, node: NodeId) {
        if let Some(inc) = self.incarnations.get(&node).copied() {
            let dead = self.dead.entry(node).or_insert(0);
            *dead = (*dead).max(inc);
        }
    }

    /// Where a live peer listens, if known.
    pub(crate) fn address(&self, node: NodeId) -> Option<std::net::SocketAddr> {
        self.nodes.get(&node)?.addr
    }

    pub(crate) fn knows(&self, node: NodeId) -> bool {
        self.nodes.contains_key(&node)
    }

    /// The live peers.
    pub(crate) fn peers(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Each peer's resources: (node, total, available as far as this node can tell).
    pub(crate) fn peer_resources(&self) -> Vec<(NodeId, Amounts, Amounts)> {
        self.nodes
            .iter()
            .map(|(id, n)| (*id, n.total.to_map(), n.available().to_map()))
            .collect()
    }

    /// A peer that can take `req` now: the one holding most of `bytes_at`, then the least
    /// loaded (most CPU available). With `queue_behind` (a task this node's own callers
    /// submitted), when no peer has room now, a peer already running this node's work may
    /// take it queued behind that work, up to [`PIPELINE`] times its total in flight: the
    /// one with the least of this node's work there.
    fn pick(
        &self,
        req: &ResourceRequest,
        bytes_at: &BTreeMap<NodeId, u64>,
        queue_behind: bool,
    ) -> Option<NodeId> {
        let live = || {
            self.nodes
                .iter()
                .filter(|(id, _)| !self.suspect.contains(id))
        };
        let now = live()
            .map(|(id, n)| (id, n.available()))
            .filter(|(_, room)| room.fits(req))
            .max_by_key(|(id, room)| (bytes_at.get(id).copied().unwrap_or(0), room.cpu))
            .map(|(id, _)| *id);
        if now.is_some() || !queue_behind {
            return now;
        }
        live()
            .filter(|(_, n)| !n.in_flight.is_empty())
            .filter(|(_, n)| {
                let depth = n.total.times(PIPELINE);
                depth.less_capped(&n.in_flight, &depth).fits(req)
            })
            .min_by_key(|(id, n)| {
                (
                    n.in_flight.cpu,
                    std::cmp::Reverse(bytes_at.get(id).copied()),
                )
            })
            .map(|(id, _)| *id)
    }

    /// Whether some peer could ever take `req`.
    fn could_fit(&self, req: &ResourceRequest) -> bool {
        self.nodes.values().any(|n| n.total.fits(req))
    }

    /// A task went to `node`: its resources count there until its result comes back.
    fn sent(&mut self, node: NodeId, req: &ResourceRequest) {
        if let Some(n) = self.nodes.get_mut(&node) {
            n.in_flight.add(req);
        }
    }

    /// The result of a task sent to `node` came back, or never will (the node is gone): its
    /// resources no longer count there.
    pub(crate) fn returned(&mut self, node: NodeId, req: &ResourceRequest) {
        if let Some(n) = self.nodes.get_mut(&node) {
            n.in_flight.take(req);
        }
    }

    /// An actor went to `node`: it holds its resources there for its life, which the node's
    /// next publication shows.
    fn placed_actor(&mut self, node: NodeId, req: &ResourceRequest) {
        if let Some(n) = self.nodes.get_mut(&node) {
            n.published.take(req);
        }
    }
}

impl NodeState {
    /// Resources in use here by tasks other nodes sent, by the node they came from: published
    /// with this node's availability, so that each sender can tell its own work from others'
    /// in a publication made while its tasks ran (see [`PeerNode::available`]).
    pub(crate) fn in_use_by_senders(&self) -> BTreeMap<u64, Amounts> {
        use super::tasks::TaskState;
        let mut by: BTreeMap<NodeId, Capacity> = BTreeMap::new();
        for (id, te) in self.tasks.iter() {
            let running = matches!(
                te.state,
                TaskState::Assigned { .. } | TaskState::Fetching { .. }
            );
            if running && id.node() != self.node {
                by.entry(id.node()).or_default().add(&te.spec.resources);
            }
        }
        by.into_iter()
            .map(|(n, c)| (u64::from(n.as_u32()), c.to_map()))
            .collect()
    }

    /// A peer's resources as published (it joined, or its availability changed), by
    /// incarnation: a record of a dead or older incarnation is ignored, and a newer
    /// incarnation means the one this node knew is dead (its work here is handled as lost).
    pub(crate) fn node_update(
        &mut self,
        node: NodeId,
        addr: Option<std::net::SocketAddr>,
        total: &BTreeMap<String, f64>,
        available: &BTreeMap<String, f64>,
        mine: &BTreeMap<String, f64>,
        incarnation: u64,
    ) {
        if node == self.node || self.cluster.fenced(node, incarnation).is_some() {
            return;
        }
        self.note_incarnation(node, incarnation);
        let total = Capacity::from_map(total);
        let published = Capacity::from_map(available);
        let mine = Capacity::from_map(mine);
        match self.cluster.nodes.get_mut(&node) {
            Some(n) => {
                n.addr = addr;
                n.total = total;
                n.published = published;
                n.mine = mine;
            }
            None => {
                self.cluster.nodes.insert(
                    node,
                    PeerNode {
                        addr,
                        total,
                        published,
                        mine,
                        in_flight: Capacity::default(),
                    },
                );
            }
        }
        self.schedule();
    }

    /// A peer left the cluster (its lease ended), or this node cannot reach it: no more work
    /// goes there, and this node's session there is dropped.
    pub(crate) fn node_left(&mut self, node: NodeId) {
        if self.cluster.nodes.remove(&node).is_some() {
            self.effects.push(super::effects::Effect::Disconnect(
                super::effects::Peer::Node(node),
            ));
        }
    }

    /// `Ok` if this node or a peer could ever run `req`; else what was asked that no node has,
    /// and what the nodes have.
    pub(super) fn feasible_in_cluster(
        &self,
        req: &ResourceRequest,
    ) -> Result<(), (String, String)> {
        match self.resources.check_feasible(req) {
            Ok(()) => Ok(()),
            Err(_) if self.cluster.could_fit(req) => Ok(()),
            Err(missing) => {
                let mut available = self.resources.describe_total();
                for (id, n) in &self.cluster.nodes {
                    available.push_str(&format!("; {id}: {}", n.total.describe()));
                }
                Err((missing, available))
            }
        }
    }

    /// Where a task that does not fit here now should go: a peer with room, preferring the one
    /// with most of its arguments' bytes; with `queue_behind`, else a peer already running
    /// this node's work, queued behind it (see [`Cluster::pick`]). `None` to keep waiting
    /// here. The caller sends it there
    /// (and tells [`Cluster::sent`] or [`Cluster::placed_actor`] through `task_sent` /
    /// `actor_sent`).
    pub(super) fn place_elsewhere(
        &self,
        req: &ResourceRequest,
        args: &[Arg],
        queue_behind: bool,
    ) -> Option<NodeId> {
        if self.cluster.is_empty() || req.bundle.is_some() {
            return None;
        }
        self.cluster
            .pick(req, &self.bytes_by_node(args), queue_behind)
    }

    /// How a worker's output printed here is told apart at `home`, the node of its driver:
    /// `ip=..` when this node's IP differs from that node's, else `node=..` (several nodes on
    /// one machine).
    pub(super) fn where_tag(&self, home: NodeId) -> String {
        let theirs = self
            .cluster
            .nodes
            .get(&home)
            .and_then(|n| n.addr)
            .map(|a| a.ip());
        match (self.cluster.own_ip, theirs) {
            (Some(mine), Some(theirs)) if mine != theirs => format!("ip={mine}"),
            _ => format!("node={}", self.node.as_u32()),
        }
    }

    /// Where a task whose arguments are done should run for their bytes: the peer holding
    /// more of them than this node, if it has room for `req` now. `None`: decide here (run
    /// here if it fits, else spill).
    pub(super) fn place_by_locality(&self, req: &ResourceRequest, args: &[Arg]) -> Option<NodeId> {
        if self.cluster.is_empty() || req.bundle.is_some() {
            return None;
        }
        let bytes_at = self.bytes_by_node(args);
        let (&best, &most) = bytes_at.iter().max_by_key(|(_, b)| **b)?;
        let here = bytes_at.get(&self.node).copied().unwrap_or(0);
        if best == self.node || most <= here {
            return None;
        }
        let room = self.cluster.nodes.get(&best)?.available();
        room.fits(req).then_some(best)
    }

    /// Bytes of `args`' done values by the node that holds them.
    fn bytes_by_node(&self, args: &[Arg]) -> BTreeMap<NodeId, u64> {
        let mut bytes_at: BTreeMap<NodeId, u64> = BTreeMap::new();
        for arg in args {
            if let Arg::Ref(id) = arg {
                if let Some(super::objects::ObjState::Ready(v)) =
                    self.objects.get(*id).map(|e| &e.state)
                {
                    let at = match v.data {
                        Data::Remote { node, .. } => node,
                        _ => self.node,
                    };
                    *bytes_at.entry(at).or_default() += v.len();
                }
            }
        }
        bytes_at
    }

    /// A task with `req` went to `node`.
    pub(super) fn task_sent(&mut self, node: NodeId, req: &ResourceRequest) {
        self.cluster.sent(node, req);
    }

    /// An actor with `req` went to `node`.
    pub(super) fn actor_sent(&mut self, node: NodeId, req: &ResourceRequest) {
        self.cluster.placed_actor(node, req);
    }
}
