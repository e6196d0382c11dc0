//! The node manager as the `ray-rs` daemon runs it (not a public API: the daemon is this
//! project's own). In single-node mode `ray::init` starts the same node manager inside the
//! driver; here it runs alone, and drivers attach over authenticated connections.

pub use crate::node_manager::remote::{BinaryStore, BinaryUpload, CachedBinary};

use crate::error::{Error, Result};
use crate::ids::NodeId;
use crate::node_manager::{self, NodeConfig, NodeManager};
use crate::object_store;
use crate::resources::Amount;
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
}

/// A running node manager.
pub struct Node {
    inner: NodeManager,
    cluster_id: String,
    binaries: Arc<dyn BinaryStore>,
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
        };
        crate::sys::raise_fd_limit();
        let inner = node_manager::start(cfg)?;
        node_manager::install_arena(&inner, object_store::DEFAULT_INLINE_MAX);
        Ok(Node {
            inner,
            cluster_id: opts.cluster_id,
            binaries: opts.binaries,
        })
    }

    /// Serves a driver on `stream`, a connection ray-net has authenticated (token and TLS).
    pub fn serve_driver<S>(&self, stream: S)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        self.inner
            .serve_driver(stream, self.cluster_id.clone(), self.binaries.clone());
    }

    /// Resources: (total, available), by name (`CPU`, `GPU`, custom).
    pub fn resources(&self) -> (BTreeMap<String, f64>, BTreeMap<String, f64>) {
        self.inner.lock().resources.summary()
    }

    /// Process ids of its workers.
    pub fn worker_pids(&self) -> Vec<u32> {
        self.inner.worker_pids()
    }

    /// Stops it: workers exit (or are killed), spill files go.
    pub fn shutdown(&self) {
        self.inner.shutdown(Duration::from_secs(1));
    }
}
