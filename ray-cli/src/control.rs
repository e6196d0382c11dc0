//! The node's control service, over ray-net connections (TLS + token handshake), one JSON
//! request and one JSON reply per connection:
//!
//! - `Join` (role `Node`, head only): after the token-bound mutual proof, the head answers with
//!   the cluster id, the CA certificate, the etcd endpoint and a node certificate it signs for
//!   the joiner's public key and IP (the joiner's private key never leaves the joiner).
//! - `Status` (any role): the nodes from etcd, with the ones seen dying since this node started.
//!
//! The lead's node-manager protocol will live next to this on the same listener later.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use ray_net::{HandshakeConfig, Role};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::error::{CliError, Result};
use crate::etcd::Etcd;
use crate::membership::{self, NodeActivity, NodeEvent, NodeRecord, Resources};
use crate::pki::ClusterCa;

/// Largest control message.
pub const MAX_CONTROL_MESSAGE: usize = 1 << 20;

/// The largest reply a `ray-rs` command reads (a node's state lists can be long).
pub const MAX_CONTROL_REPLY: usize = 64 << 20;
/// How long an authenticated peer has to send its request.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Connections handshaking at once (bounded work for unauthenticated peers). A connection
/// past it ends the oldest handshake still under way rather than waiting behind it
/// (`ray_core::__node::PendingConnections`), so a stranger's silent connections cannot block the
/// listener.
const MAX_PENDING_HANDSHAKES: usize = 64;

/// A request to a node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// Join the cluster (to the head).
    Join {
        /// The address the joiner will be reached at.
        node_ip: IpAddr,
        /// The joiner's raw P-256 public key to certify; `None` when it brings its own
        /// certificate (`--tls-cert`).
        public_key: Option<Vec<u8>>,
    },
    /// The cluster's nodes.
    Status,
    /// What this node's state API lists (`ray-rs list`, `summary`, `timeline`).
    State {
        /// Which rows.
        kind: ray_core::state::StateKind,
        /// Filters and limit.
        options: ray_core::state::ListOptions,
    },
    /// What one of this node's workers printed (`ray-rs logs`, the head's dashboard).
    Logs {
        /// Which worker, from which offsets.
        query: ray_core::__node::LogQuery,
    },
    /// A node manager session follows on this connection (node to node).
    Session,
}

/// What a joiner needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinGrant {
    /// The cluster id.
    pub cluster_id: String,
    /// The cluster CA certificate, PEM.
    pub ca_pem: String,
    /// The joiner's certificate, PEM (when it asked for one).
    pub cert_pem: Option<String>,
    /// The etcd endpoint.
    pub etcd_url: String,
}

/// One node as `status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Its id.
    pub node_id: u64,
    /// Its listener's address.
    pub address: String,
    /// Whether its lease is current.
    pub alive: bool,
    /// Whether it is the head.
    pub is_head: bool,
    /// Its incarnation.
    pub incarnation: u64,
    /// Its resources.
    pub resources_total: Resources,
    /// Resources in use (total minus available, as last published).
    pub resources_used: Resources,
    /// Worker processes, actors by class, and bytes copied in and out, as last published.
    pub activity: NodeActivity,
}

/// A job as `status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    /// Its id (`node.index`).
    pub id: String,
    /// Its driver's program name.
    pub name: String,
    /// The node its driver attached to.
    pub node_id: u64,
    /// Its driver's pid on its machine.
    pub driver_pid: u32,
    /// `RUNNING`, `FINISHED` (its driver went), or `FAILED` (its node is gone while it ran).
    pub state: String,
    /// When it started, milliseconds since the Unix epoch.
    pub start_time_ms: u64,
    /// When it ended, if it has.
    pub end_time_ms: Option<u64>,
}

/// The reply to `Status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    /// The cluster id.
    pub cluster_id: String,
    /// The nodes, alive first, by id.
    pub nodes: Vec<NodeStatus>,
    /// The jobs, oldest first.
    #[serde(default)]
    pub jobs: Vec<JobStatus>,
}

/// A reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Response {
    /// To `Join`.
    Joined(JoinGrant),
    /// To `Status`.
    Status(StatusReport),
    /// To `State`: the answering node's rows.
    State(Box<ray_core::state::StateRows>),
    /// To `Logs`.
    Logs(ray_core::__node::LogReply),
    /// The request failed.
    Error {
        /// Why.
        message: String,
    },
}

/// What the control service knows.
pub struct ControlState {
    /// The cluster id.
    pub cluster_id: String,
    /// The CA when this node is the head and issues certificates.
    pub ca: Option<Arc<ClusterCa>>,
    /// The CA certificate (PEM) handed to joiners.
    pub ca_pem: String,
    /// etcd, for status.
    pub etcd: Etcd,
    /// The etcd endpoint given to joiners.
    pub etcd_url: String,
    /// Nodes seen dying (lease gone) since this node started watching.
    pub dead: Mutex<BTreeMap<u64, NodeRecord>>,
    /// The node manager, which serves drivers' sessions.
    pub node: Option<Arc<ray_core::__node::Node>>,
    /// Where each live node listens (for the node manager's connections to its peers).
    pub addresses: Arc<Mutex<BTreeMap<u64, SocketAddr>>>,
}

impl std::fmt::Debug for ControlState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlState")
            .field("cluster_id", &self.cluster_id)
            .finish_non_exhaustive()
    }
}

impl ControlState {
    /// Starts a thread that follows membership changes (keeping the records of nodes that
    /// died, for `status`). The thread ends when the returned watcher is dropped.
    pub fn follow_membership(self: &Arc<Self>) -> Result<crate::etcd::WatchStop> {
        // Without it this node would never hear of a death: wait out an etcd outage.
        let (nodes, revision) = membership::waiting_for_etcd(
            "listing the cluster's nodes",
            std::time::Duration::from_secs(120),
            || membership::list_nodes(&self.etcd, &self.cluster_id),
        )?;
        for n in &nodes {
            self.node_seen(n);
        }
        let mut known: BTreeMap<u64, NodeRecord> =
            nodes.into_iter().map(|n| (n.node_id, n)).collect();
        let watcher = membership::watch_nodes(&self.etcd, &self.cluster_id, revision + 1);
        let crate::etcd::Watcher { events, stopper } = watcher;
        let state = self.clone();
        let cluster = self.cluster_id.clone();
        std::thread::Builder::new()
            .name("membership-follow".into())
            .spawn(move || {
                for raw in events.iter() {
                    match membership::node_event(&cluster, raw) {
                        Some(NodeEvent::Up(n)) => {
                            state
                                .dead
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .remove(&n.node_id);
                            state.node_seen(&n);
                            known.insert(n.node_id, n);
                        }
                        Some(NodeEvent::Down { node_id }) => {
                            state.node_gone(node_id);
                            if let Some(n) = known.remove(&node_id) {
                                tracing::warn!(
                                    "node {node_id} at {} is gone (lease ended)",
                                    n.address
                                );
                                state
                                    .dead
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .insert(node_id, n);
                            }
                        }
                        Some(NodeEvent::Resync) => {
                            if let Ok((nodes, _)) = membership::list_nodes(&state.etcd, &cluster) {
                                for n in &nodes {
                                    state.node_seen(n);
                                }
                                known = nodes.into_iter().map(|n| (n.node_id, n)).collect();
                            }
                        }
                        None => {}
                    }
                }
            })
            .map_err(|e| CliError::io("spawning the membership follower", e))?;
        Ok(stopper)
    }

    /// A node's record appeared or changed: the node manager and the address book hear.
    fn node_seen(&self, n: &NodeRecord) {
        let addr = n.address.parse::<SocketAddr>().ok();
        if let Some(addr) = addr {
            self.addresses
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(n.node_id, addr);
        }
        if let (Some(node), Ok(id)) = (&self.node, u32::try_from(n.node_id)) {
            node.node_update(
                id,
                addr,
                &n.resources_total,
                &n.resources_available,
                &n.activity.in_use_by,
                n.incarnation,
            );
        }
    }

    /// A node's lease ended.
    fn node_gone(&self, node_id: u64) {
        self.addresses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&node_id);
        if let (Some(node), Ok(id)) = (&self.node, u32::try_from(node_id)) {
            node.node_left(id);
        }
    }

    /// The status report: alive nodes from etcd, then the dead ones seen.
    pub fn status(&self) -> Result<StatusReport> {
        let (alive, _) = membership::list_nodes(&self.etcd, &self.cluster_id)?;
        let mut nodes: Vec<NodeStatus> = alive.iter().map(|n| node_status(n, true)).collect();
        let dead = self.dead.lock().unwrap_or_else(|e| e.into_inner());
        for (id, n) in dead.iter() {
            if !alive.iter().any(|a| a.node_id == *id) {
                nodes.push(node_status(n, false));
            }
        }
        let jobs = crate::jobs::list(&self.etcd, &self.cluster_id)?
            .into_iter()
            .map(|j| {
                let node_alive = alive.iter().any(|n| n.node_id == j.node_id);
                let state = match (j.end_time_ms, node_alive) {
                    (Some(_), _) => "FINISHED",
                    (None, true) => "RUNNING",
                    (None, false) => "FAILED",
                };
                JobStatus {
                    id: j.id,
                    name: j.name,
                    node_id: j.node_id,
                    driver_pid: j.driver_pid,
                    state: state.into(),
                    start_time_ms: j.start_time_ms,
                    end_time_ms: j.end_time_ms,
                }
            })
            .collect();
        Ok(StatusReport {
            cluster_id: self.cluster_id.clone(),
            nodes,
            jobs,
        })
    }

    fn handle(&self, peer: &ray_net::Hello, request: Request) -> Response {
        match request {
            Request::Status => match self.status() {
                Ok(report) => Response::Status(report),
                Err(e) => Response::Error {
                    message: e.to_string(),
                },
            },
            Request::Session => Response::Error {
                message: "only nodes open sessions".into(),
            },
            Request::State { kind, options } => match &self.node {
                Some(node) => match node.state(kind, &options) {
                    Ok(rows) => Response::State(Box::new(rows)),
                    Err(e) => Response::Error {
                        message: e.to_string(),
                    },
                },
                None => Response::Error {
                    message: "this node runs no node manager".into(),
                },
            },
            Request::Logs { query } => match &self.node {
                Some(node) => match node.worker_log(&query) {
                    Ok(reply) => Response::Logs(reply),
                    Err(e) => Response::Error {
                        message: e.to_string(),
                    },
                },
                None => Response::Error {
                    message: "this node runs no node manager".into(),
                },
            },
            Request::Join {
                node_ip,
                public_key,
            } => {
                if peer.role != Role::Node {
                    return Response::Error {
                        message: format!("only nodes join; this peer is a {:?}", peer.role),
                    };
                }
                let cert_pem = match (&self.ca, public_key) {
                    (_, None) => None,
                    (Some(ca), Some(key)) => {
                        let ips = [node_ip, IpAddr::V4(Ipv4Addr::LOCALHOST)];
                        match ca.issue(&key, &ips, &format!("ray-rs node {node_ip}")) {
                            Ok(pem) => Some(pem),
                            Err(e) => {
                                return Response::Error {
                                    message: e.to_string(),
                                };
                            }
                        }
                    }
                    (None, Some(_)) => {
                        return Response::Error {
                            message: "this node does not issue certificates (the head uses operator-provided certificates, or this is not the head); start the joining node with its own --tls-cert/--tls-key/--tls-ca".into(),
                        };
                    }
                };
                Response::Joined(JoinGrant {
                    cluster_id: self.cluster_id.clone(),
                    ca_pem: self.ca_pem.clone(),
                    cert_pem,
                    etcd_url: self.etcd_url.clone(),
                })
            }
        }
    }
}

fn node_status(n: &NodeRecord, alive: bool) -> NodeStatus {
    let resources_used = n
        .resources_total
        .iter()
        .map(|(k, total)| {
            let avail = n.resources_available.get(k).copied().unwrap_or(*total);
            (k.clone(), (total - avail).max(0.0))
        })
        .collect();
    NodeStatus {
        node_id: n.node_id,
        address: n.address.clone(),
        alive,
        is_head: n.is_head,
        incarnation: n.incarnation,
        resources_total: n.resources_total.clone(),
        resources_used,
        activity: n.activity.clone(),
    }
}

/// Serves control connections on `listener` until `shutdown` fires.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    handshake: Arc<HandshakeConfig>,
    state: Arc<ControlState>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let handshaking = Arc::new(Mutex::new(ray_core::__node::PendingConnections::new(
        MAX_PENDING_HANDSHAKES,
    )));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (tcp, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("accepting a connection: {e}");
                continue;
            }
        };
        // The connection is served on the node manager's runtime when there is one, its
        // socket registered there: its reads then wake the task that handles them directly,
        // not a thread of this runtime that wakes one of the other.
        let tcp = match tcp.into_std() {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("connection from {addr}: {e}");
                continue;
            }
        };
        let (handshake_no, ended) = handshaking
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .begin();
        let handshaking = handshaking.clone();
        let node = state.node.clone();
        let (tls, handshake, state) = (tls.clone(), handshake.clone(), state.clone());
        let serve_one = async move {
            let tcp = match tokio::net::TcpStream::from_std(tcp) {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!("connection from {addr}: {e}");
                    return;
                }
            };
            let conn = tokio::select! {
                c = ray_net::accept(tcp, tls, &handshake) => c,
                _ = ended => {
                    tracing::debug!(
                        "connection from {addr}: ended unauthenticated, {MAX_PENDING_HANDSHAKES} \
                         newer connections came while it said nothing"
                    );
                    return;
                }
            };
            handshaking
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .end(handshake_no);
            let mut conn = match conn {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("connection from {addr}: {e}");
                    return;
                }
            };
            if conn.peer.role == Role::Driver {
                match &state.node {
                    Some(node) => {
                        tracing::info!("driver {} from {addr}", conn.peer.name);
                        node.serve_session(conn.stream);
                    }
                    None => tracing::warn!("driver from {addr}: no node manager on this node"),
                }
                return;
            }
            let request =
                tokio::time::timeout(REQUEST_TIMEOUT, conn.recv(MAX_CONTROL_MESSAGE)).await;
            let reply = match request.unwrap_or(Err(ray_net::NetError::Closed {
                during: "(no request within the time limit)",
            })) {
                Ok(bytes) => match serde_json::from_slice::<Request>(&bytes) {
                    Ok(Request::Session) if conn.peer.role == Role::Node => {
                        if let Some(node) = &state.node {
                            node.serve_session(conn.stream);
                        }
                        return;
                    }
                    Ok(request) => {
                        let peer = conn.peer.clone();
                        // Reads (lists, logs) come several times a second from a dashboard
                        // or a follower: only at debug level.
                        if matches!(request, Request::State { .. } | Request::Logs { .. }) {
                            tracing::debug!(
                                "{:?} {} from {addr}: {request:?}",
                                peer.role,
                                peer.name
                            );
                        } else {
                            tracing::info!(
                                "{:?} {} from {addr}: {request:?}",
                                peer.role,
                                peer.name
                            );
                        }
                        let state = state.clone();
                        tokio::task::spawn_blocking(move || state.handle(&peer, request))
                            .await
                            .unwrap_or_else(|e| Response::Error {
                                message: format!("internal error: {e}"),
                            })
                    }
                    Err(e) => Response::Error {
                        message: format!("malformed request: {e}"),
                    },
                },
                Err(e) => {
                    tracing::warn!("reading a request from {addr}: {e}");
                    return;
                }
            };
            match serde_json::to_vec(&reply) {
                Ok(bytes) => {
                    if let Err(e) = conn.send(&bytes).await {
                        tracing::warn!("replying to {addr}: {e}");
                    }
                }
                Err(e) => tracing::warn!("encoding a reply: {e}"),
            }
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut conn.stream).await;
        };
        match node {
            Some(node) => node.spawn(serve_one),
            None => {
                tokio::spawn(serve_one);
            }
        }
    }
}

/// Sends one request to the node at `addr` and returns its reply and the node's `Hello`.
pub async fn request(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    handshake: &HandshakeConfig,
    request: &Request,
) -> Result<(Response, ray_net::Hello, std::net::SocketAddr)> {
    let mut conn = ray_net::connect(addr, tls, handshake).await?;
    let local = conn
        .stream
        .get_ref()
        .0
        .local_addr()
        .map_err(|e| CliError::io("reading the local address", e))?;
    let bytes = serde_json::to_vec(request).map_err(|e| CliError::Protocol {
        peer: addr.to_string(),
        detail: e.to_string(),
    })?;
    conn.send(&bytes).await?;
    let reply = conn.recv(MAX_CONTROL_REPLY).await?;
    let reply: Response = serde_json::from_slice(&reply).map_err(|e| CliError::Protocol {
        peer: addr.to_string(),
        detail: e.to_string(),
    })?;
    if let Response::Error { message } = reply {
        return Err(CliError::Remote {
            peer: addr.to_string(),
            message,
        });
    }
    Ok((reply, conn.peer, local))
}
