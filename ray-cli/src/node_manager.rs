//! The node manager inside the daemon: ray-core's, started with this node's resources, its
//! binary cache as the store of drivers' executables, and its availability published to etcd
//! about once a second.

use std::sync::Arc;
use std::time::Duration;

use ray_core::__node::{
    BinaryStore, BinaryUpload, CachedBinary, Connecting, Connector, Node, NodeOptions, PeerStream,
};

use crate::binary_cache::{BinaryCache, Sha256, Upload};
use crate::error::{CliError, Result};
use crate::etcd::Etcd;
use crate::jobs::JobRecord;
use crate::membership::{NodeActivity, ResourcePublisher, Resources, now_ms};
use crate::tempdir::NodeDir;
use ray_core::__node::JobSummary;
use std::collections::BTreeMap;

/// Most bytes of drivers' executables kept on a node.
const BINARY_CACHE_BYTES: u64 = 8 << 30;

/// The binary cache as the node manager sees it.
struct CacheStore(BinaryCache);

struct CacheUpload(Upload);

impl BinaryStore for CacheStore {
    fn find(&self, sha256: &[u8; 32]) -> std::result::Result<Option<CachedBinary>, String> {
        match self.0.get(&Sha256(*sha256)) {
            Ok(Some(pinned)) => Ok(Some(CachedBinary {
                path: pinned.path.clone(),
                pin: Box::new(pinned),
            })),
            Ok(None) => Ok(None),
            // A cached copy that no longer matches its hash is never run: it was removed, and
            // the executable is fetched again from a node that has it.
            Err(e @ CliError::Tampered { .. }) => {
                tracing::warn!("{e}; fetching it again");
                Ok(None)
            }
            Err(e) => Err(e.to_string()),
        }
    }

    fn upload(
        &self,
        sha256: [u8; 32],
        size: u64,
    ) -> std::result::Result<Box<dyn BinaryUpload>, String> {
        self.0
            .begin(Sha256(sha256), size)
            .map(|u| Box::new(CacheUpload(u)) as Box<dyn BinaryUpload>)
            .map_err(|e| e.to_string())
    }
}

impl BinaryUpload for CacheUpload {
    fn write(&mut self, chunk: &[u8]) -> std::result::Result<(), String> {
        self.0.write_chunk(chunk).map_err(|e| e.to_string())
    }

    fn finish(self: Box<Self>) -> std::result::Result<CachedBinary, String> {
        let pinned = self.0.finish().map_err(|e| e.to_string())?;
        Ok(CachedBinary {
            path: pinned.path.clone(),
            pin: Box::new(pinned),
        })
    }
}

/// How this node's node manager reaches its peers: TLS with the cluster CA, the token
/// handshake, then a `Session` request.
struct DaemonConnector {
    addresses: Arc<std::sync::Mutex<std::collections::BTreeMap<u64, std::net::SocketAddr>>>,
    tls: Arc<rustls::ClientConfig>,
    handshake: ray_net::HandshakeConfig,
}

impl Connector for DaemonConnector {
    fn connect(&self, node: ray_core::NodeId) -> Connecting {
        let addr = self
            .addresses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(node.as_u32() as u64))
            .copied();
        let (tls, handshake) = (self.tls.clone(), self.handshake.clone());
        Box::pin(async move {
            let addr = addr.ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{node} is not a live member of the cluster"),
                )
            })?;
            let mut conn = ray_net::connect(addr, tls, &handshake)
                .await
                .map_err(std::io::Error::other)?;
            let request = serde_json::to_vec(&crate::control::Request::Session)
                .map_err(std::io::Error::other)?;
            conn.send(&request).await.map_err(std::io::Error::other)?;
            Ok(Box::new(conn.stream) as Box<dyn PeerStream>)
        })
    }
}

/// How this node's node manager reaches the others.
pub struct Reach {
    /// Where each live node listens.
    pub addresses: Arc<std::sync::Mutex<std::collections::BTreeMap<u64, std::net::SocketAddr>>>,
    /// The TLS client configuration (cluster CA, this node's certificate).
    pub tls: Arc<rustls::ClientConfig>,
    /// The token handshake, as a node.
    pub handshake: ray_net::HandshakeConfig,
    /// This node's incarnation (its sessions at peers say it; peers refuse dead ones, and ones
    /// etcd has not shown them yet).
    pub incarnation: u64,
}

/// Starts this node's node manager.
pub fn start(
    dir: &NodeDir,
    node_id: u64,
    cluster_id: &str,
    resources: &Resources,
    reach: Reach,
    node_ip: std::net::IpAddr,
    names: Arc<dyn ray_core::__node::NameDirectory>,
) -> Result<Arc<Node>> {
    let cache = BinaryCache::open(&dir.binaries(), BINARY_CACHE_BYTES)?;
    let whole = |name: &str| resources.get(name).copied().unwrap_or(0.0).max(0.0).round() as usize;
    let custom = resources
        .iter()
        .filter(|(k, _)| k.as_str() != "CPU" && k.as_str() != "GPU")
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let spill_root = dir.root.join("spill");
    crate::tempdir::ensure_private_dir(&spill_root)?;
    let node = Node::start(NodeOptions {
        node_id: u32::try_from(node_id)
            .map_err(|_| CliError::Pki(format!("node id {node_id} is too large")))?,
        cluster_id: cluster_id.to_string(),
        cpus: whole("CPU"),
        gpus: whole("GPU"),
        custom,
        object_store_memory: None,
        spill_root,
        binaries: Arc::new(CacheStore(cache)),
        connector: Arc::new(DaemonConnector {
            addresses: reach.addresses,
            tls: reach.tls,
            handshake: reach.handshake,
        }),
        node_ip: Some(node_ip),
        names,
        incarnation: reach.incarnation,
        worker_log_dir: Some(dir.worker_logs()),
    })
    .map_err(|e| CliError::NodeManager(e.to_string()))?;
    Ok(Arc::new(node))
}

/// Where the node's state goes for others to see: its membership record (availability and
/// activity) and the cluster's job records.
pub struct Publishing {
    /// The membership record's publisher (it writes at most about once a second).
    pub publisher: ResourcePublisher,
    /// etcd, for job records.
    pub etcd: Etcd,
    /// The cluster's id.
    pub cluster_id: String,
    /// This node's id.
    pub node_id: u64,
}

/// Looks at the node four times a second from a thread of its own, until `stop` is dropped:
/// changed availability or activity goes to the membership publisher; a driver that attached
/// is recorded as a job, one that went is marked finished.
pub fn publish_resources(node: Arc<Node>, out: Publishing) -> Result<std::sync::mpsc::Sender<()>> {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("resource-publish".into())
        .spawn(move || {
            let mut last = None;
            let mut jobs: BTreeMap<String, JobSummary> = BTreeMap::new();
            loop {
                let (_, available) = node.resources();
                let stats = node.stats();
                let activity = NodeActivity {
                    workers: stats.workers as u64,
                    actors: stats
                        .actors
                        .iter()
                        .map(|(k, v)| (k.clone(), *v as u64))
                        .collect(),
                    bytes_pulled: stats.bytes_pulled,
                    bytes_served: stats.bytes_served,
                    in_use_by: node.resources_in_use_by(),
                };
                let now = (available, activity);
                if last.as_ref() != Some(&now) {
                    out.publisher.publish(now.0.clone(), now.1.clone());
                    last = Some(now);
                }
                record_jobs(&out, &mut jobs, stats.jobs);
                match stopped.recv_timeout(Duration::from_millis(250)) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    _ => {
                        // The node is stopping: its drivers' jobs end with it.
                        record_jobs(&out, &mut jobs, Vec::new());
                        return;
                    }
                }
            }
        })
        .map_err(|e| CliError::io("starting the resource publisher", e))?;
    Ok(stop)
}

/// Records jobs that appeared in `now` and ends those that left. A failed etcd write is
/// retried on the next look.
fn record_jobs(out: &Publishing, known: &mut BTreeMap<String, JobSummary>, now: Vec<JobSummary>) {
    let ended: Vec<String> = known
        .keys()
        .filter(|id| !now.iter().any(|j| &j.id == *id))
        .cloned()
        .collect();
    for id in ended {
        match crate::jobs::record_end(&out.etcd, &out.cluster_id, &id, now_ms()) {
            Ok(()) => {
                known.remove(&id);
            }
            Err(e) => tracing::warn!("recording the end of job {id}: {e}"),
        }
    }
    for job in now {
        if known.contains_key(&job.id) {
            continue;
        }
        let record = JobRecord {
            id: job.id.clone(),
            name: job.name.clone(),
            node_id: out.node_id,
            driver_pid: job.driver_pid,
            start_time_ms: now_ms(),
            end_time_ms: None,
        };
        match crate::jobs::record_start(&out.etcd, &out.cluster_id, &record) {
            Ok(_) => {
                known.insert(job.id.clone(), job);
            }
            Err(e) => tracing::warn!("recording job {}: {e}", job.id),
        }
    }
}
