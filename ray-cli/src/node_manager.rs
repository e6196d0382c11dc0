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
use crate::membership::{ResourcePublisher, Resources};
use crate::tempdir::NodeDir;

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
}

/// Starts this node's node manager.
pub fn start(
    dir: &NodeDir,
    node_id: u64,
    cluster_id: &str,
    resources: &Resources,
    reach: Reach,
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
    })
    .map_err(|e| CliError::NodeManager(e.to_string()))?;
    Ok(Arc::new(node))
}

/// Publishes the node's available resources about once a second, from a thread of its own,
/// until `stop` is dropped.
pub fn publish_resources(
    node: Arc<Node>,
    publisher: ResourcePublisher,
) -> Result<std::sync::mpsc::Sender<()>> {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("resource-publish".into())
        .spawn(move || {
            let mut last = None;
            loop {
                let (_, available) = node.resources();
                if last.as_ref() != Some(&available) {
                    publisher.publish(available.clone());
                    last = Some(available);
                }
                match stopped.recv_timeout(Duration::from_secs(1)) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
            }
        })
        .map_err(|e| CliError::io("starting the resource publisher", e))?;
    Ok(stop)
}
