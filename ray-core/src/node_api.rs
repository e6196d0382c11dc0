//! The node manager as the `ray-rs` daemon runs it (not a public API: the daemon is this
//! project's own). In single-node mode `ray::init` starts the same node manager inside the
//! driver; here it runs alone, and drivers attach over authenticated connections.

pub use crate::node_manager::links::{Connecting, Connector, PeerStream};
#[cfg(feature = "testing")]
pub use crate::node_manager::links::{direct_hello, hello_as_node};
pub use crate::node_manager::name_directory::NameDirectory;
pub use crate::node_manager::remote::{BinaryStore, BinaryUpload, CachedBinary};
pub use crate::node_manager::stats::{JobSummary, NodeStats};

use crate::error::{Error, Result};
use crate::ids::NodeId;
use crate::node_manager::{self, NodeConfig, NodeManager};
use crate::object_store;
use crate::resources::Amount;
use crate::worker_logs::{LogQuery, LogReply, WorkerLogs};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What a node starts with.
pub struct NodeOptions {
    /// Its id in the cluster (unique, from etcd).
    pub node_id: u32,
    /// The cluster's id (drivers must name it).
    pub cluster_id: String,
    /// CPUs it offers.
    pub cpus: usize,
    /// GPUs it offers.
    pub gpus: usize,
    /// Custom resources.
    pub custom: Vec<(String, f64)>,
    /// Shared-memory store capacity (default: 30% of the machine's memory).
    pub object_store_memory: Option<u64>,
    /// Where spilled objects go (a private directory is made inside).
    pub spill_root: PathBuf,
    /// Drivers' executables, by hash.
    pub binaries: Arc<dyn BinaryStore>,
    /// How this node reaches the others.
    pub connector: Arc<dyn Connector>,
    /// The cluster's directory of actor names (etcd).
    pub names: Arc<dyn NameDirectory>,
    /// This node's incarnation (1 at first registration, +1 at each rejoin).
    pub incarnation: u64,
    /// The IP other nodes reach it at (worker output printed here is tagged with it where it
    /// differs from the driver's node's).
    pub node_ip: Option<std::net::IpAddr>,
    /// Where each worker's output is kept (`worker-<pid>.out|.err`, bounded; see
    /// [`MAX_FILE_BYTES`](crate::__node::MAX_FILE_BYTES)), besides being forwarded to its
    /// driver.
    pub worker_log_dir: Option<PathBuf>,
}

/// A running node manager.
pub struct Node {
    inner: NodeManager,
    cluster_id: String,
    binaries: Arc<dyn BinaryStore>,
    logs: Option<Arc<WorkerLogs>>,
}

impl Node {
    /// Starts the node manager (its own runtime, store and spawner thread).
    pub fn start(opts: NodeOptions) -> Result<Node> {
        let mut custom = Vec::new();
        for (name, amount) in &opts.custom {
            let a = Amount::from_f64(*amount).map_err(|m| Error::InvalidArgument {
                what: format!("amount of resource {name:?}"),
                message: m,
            })?;
            custom.push((name.clone(), a));
        }
        let logs = opts
            .worker_log_dir
            .as_deref()
            .map(WorkerLogs::open)
            .transpose()?;
        let cfg = NodeConfig {
            node: NodeId(opts.node_id),
            cpus: opts.cpus,
            gpus: Some(opts.gpus),
            custom,
            gpu_detector: None,
            max_idle_workers: opts.cpus.max(1),
            object_store_memory: opts
                .object_store_memory
                .unwrap_or_else(object_store::default_capacity),
            spill_root: opts.spill_root,
            inline_max: object_store::DEFAULT_INLINE_MAX,
            log_to_driver: true,
            task_events_max: crate::state::DEFAULT_TASK_EVENTS_MAX,
            worker_logs: logs.clone(),
        };
        crate::sys::raise_fd_limit();
        let inner = node_manager::start(cfg)?;
        node_manager::install_arena(&inner, object_store::DEFAULT_INLINE_MAX);
        inner.join_cluster(node_manager::links::ClusterIo {
            connector: opts.connector,
            cluster_id: opts.cluster_id.clone(),
            binaries: opts.binaries.clone(),
            names: opts.names,
            incarnation: opts.incarnation,
        });
        inner.run(|st| {
            st.cluster.own_ip = opts.node_ip;
            st.cluster.member = true;
        });
        Ok(Node {
            inner,
            cluster_id: opts.cluster_id,
            binaries: opts.binaries,
            logs,
        })
    }

    /// Serves a session on `stream` — a driver's, or another node's — a connection ray-net
    /// has authenticated (token and TLS).
    pub fn serve_session<S>(&self, stream: S)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        self.inner
            .serve_session(stream, self.cluster_id.clone(), self.binaries.clone());
    }

    /// Runs `task` on the node manager's runtime: a connection accepted elsewhere and served
    /// there should be registered there (made from a `std` socket inside `task`), so that its
    /// reads wake the task that handles them without a hop between runtimes.
    pub fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.inner.spawn(task);
    }

    /// Another node's address and resources as it published them (it joined or they
    /// changed).
    pub fn node_update(
        &self,
        node: u32,
        address: Option<std::net::SocketAddr>,
        total: &BTreeMap<String, f64>,
        available: &BTreeMap<String, f64>,
        in_use_by: &BTreeMap<u64, BTreeMap<String, f64>>,
        incarnation: u64,
    ) {
        self.inner.run(|st| {
            let empty = BTreeMap::new();
            let mine = in_use_by
                .get(&u64::from(st.node.as_u32()))
                .unwrap_or(&empty);
            st.node_update(NodeId(node), address, total, available, mine, incarnation)
        });
    }

    /// Resources in use on this node by tasks other nodes sent, by the id of the node that
    /// sent them (published with its availability; see [`Node::node_update`]).
    pub fn resources_in_use_by(&self) -> BTreeMap<u64, BTreeMap<String, f64>> {
        self.inner.lock().in_use_by_senders()
    }

    /// Another node's lease expired: it is dead (its work is retried, restarted or rebuilt
    /// elsewhere, and its sessions are refused until it rejoins as a new incarnation).
    pub fn node_left(&self, node: u32) {
        let node = NodeId(node);
        self.inner.forget_dead_node(node);
        self.inner
            .run(|st| st.node_declared_dead(node, "its lease expired"));
    }

    /// Bytes of objects this node copied from others, and served to them.
    pub fn transfer_counts(&self) -> (u64, u64) {
        self.inner.transfer_counts()
    }

    /// Its jobs, actors, workers and transfer counters now.
    pub fn stats(&self) -> NodeStats {
        let mut stats = self.inner.run(|st| st.stats());
        (stats.bytes_pulled, stats.bytes_served) = self.inner.transfer_counts();
        stats
    }

    /// What [`crate::state`] lists, as this node sees it (for `ray-rs list`).
    pub fn state(
        &self,
        kind: crate::state::StateKind,
        options: &crate::state::ListOptions,
    ) -> Result<crate::state::StateRows> {
        options.check(kind)?;
        let q = crate::state::StateQuery {
            kind,
            options: options.clone(),
        };
        Ok(self.inner.run(|st| st.state_rows(&q)))
    }

    /// Resources: (total, available), by name (`CPU`, `GPU`, custom).
    pub fn resources(&self) -> (BTreeMap<String, f64>, BTreeMap<String, f64>) {
        self.inner.lock().resources.summary()
    }

    /// What worker `query.pid` of this node printed (for `ray-rs logs` and the dashboard).
    pub fn worker_log(&self, query: &LogQuery) -> Result<LogReply> {
        let alive = self.inner.worker_pids().contains(&query.pid);
        crate::worker_logs::local_logs(
            self.logs.as_deref(),
            self.inner.lock().node.as_u32(),
            alive,
            query,
        )
    }

    /// This node's metrics as Prometheus text (Ray's names).
    #[cfg(feature = "dashboard")]
    pub fn metrics(&self) -> String {
        crate::dashboard::metrics(&self.inner)
    }

    /// Process ids of its workers.
    pub fn worker_pids(&self) -> Vec<u32> {
        self.inner.worker_pids()
    }

    /// Kills every worker of this node at once (SIGKILL): the node was declared dead and
    /// must not run anything more (its daemon then rejoins as a new incarnation).
    pub fn kill_workers(&self) {
        self.inner.run(|st| st.kill_all());
    }

    /// Stops it: workers exit (or are killed), spill files go.
    pub fn shutdown(&self) {
        self.inner.shutdown(Duration::from_secs(1));
    }
}
