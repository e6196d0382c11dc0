//! The head's dashboard and every node's Prometheus `/metrics` listener.
//!
//! Both are ray-core's read-only HTTP server (`ray_core::__node::serve_on`): GET only (anything
//! else is 405), and every request must carry the cluster token (`Authorization: Bearer
//! <token>`, or `?token=` from a browser), else 401 — Ray's dashboard answered anyone, which was
//! CVE-2023-48022. Neither prints nor writes the token: the URL printed at start and written to
//! `<temp-dir>/dashboard_url` / `metrics_url` is the bare address.
//!
//! The dashboard shows every live node's rows, merged as `ray-rs list` merges them: the head
//! answers for itself directly and asks each other node over its control service (TLS and the
//! token, as a node), leaving out a node that does not answer (one dying) rather than failing the
//! page. A worker's output comes from the node that ran it. The page's snapshot is made at most
//! four times a second whatever the number of open pages.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ray_core::__node::{DashboardMode, DashboardSource, LogQuery, LogReply, Node};
use ray_core::state::{ListOptions, StateKind, StateRows};
use ray_net::{HandshakeConfig, Role};

use crate::args::StartArgs;
use crate::control::{self, ControlState, Request, Response};
use crate::error::{CliError, Result};
use crate::node::RunningNode;
use crate::state::{Member, collect_from};

/// How long the list of live nodes is reused.
const MEMBERS_TTL: Duration = Duration::from_secs(1);

/// The rows of every live node, asked from the head.
struct ClusterSource {
    node: Arc<Node>,
    node_id: u64,
    control: Arc<ControlState>,
    tls: Arc<rustls::ClientConfig>,
    handshake: HandshakeConfig,
    handle: tokio::runtime::Handle,
    members: Mutex<Option<(Instant, Vec<Member>)>>,
}

fn core_error(e: CliError) -> ray_core::Error {
    match e {
        // A node's own answer (an unknown pid...): the caller's mistake, said by the node.
        CliError::Remote { message, .. } => ray_core::Error::InvalidArgument {
            what: "request".into(),
            message,
        },
        other => ray_core::Error::Cluster {
            address: "(the dashboard's head)".into(),
            message: other.to_string(),
        },
    }
}

impl ClusterSource {
    fn members(&self) -> Result<Vec<Member>> {
        let mut cached = self.members.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, m)) = &*cached
            && at.elapsed() < MEMBERS_TTL
        {
            return Ok(m.clone());
        }
        let report = self.control.status()?;
        let members = Member::live(&report);
        *cached = Some((Instant::now(), members.clone()));
        Ok(members)
    }

    /// Sends `request` to node `id` at `at` (this node answers itself without the network).
    fn ask(&self, id: u64, at: &str, request: &Request) -> Result<(Response, SocketAddr)> {
        let addr: SocketAddr = at.parse().map_err(|_| CliError::Protocol {
            peer: at.to_string(),
            detail: "a node's address is not IP:PORT".into(),
        })?;
        if id == self.node_id {
            let reply = match request {
                Request::State { kind, options } => self
                    .node
                    .state(*kind, options)
                    .map(|rows| Response::State(Box::new(rows))),
                Request::Logs { query } => self.node.worker_log(query).map(Response::Logs),
                _ => {
                    return Err(CliError::Protocol {
                        peer: at.to_string(),
                        detail: "the dashboard asks only for rows and logs".into(),
                    });
                }
            };
            return reply.map(|r| (r, addr)).map_err(|e| CliError::Remote {
                peer: format!("node {id}"),
                message: e.to_string(),
            });
        }
        let (reply, _, _) = self.handle.block_on(control::request(
            addr,
            self.tls.clone(),
            &self.handshake,
            request,
        ))?;
        Ok((reply, addr))
    }
}

impl DashboardSource for ClusterSource {
    fn rows(&self, kind: StateKind, options: &ListOptions) -> ray_core::Result<StateRows> {
        let members = self.members().map_err(core_error)?;
        collect_from(&members, kind, options, true, |id, at, r| {
            self.ask(id, at, r)
        })
        .map_err(core_error)
    }

    fn metrics(&self) -> ray_core::Result<String> {
        Ok(self.node.metrics())
    }

    fn logs(&self, node: Option<u32>, query: &LogQuery) -> ray_core::Result<LogReply> {
        let id = node.map_or(self.node_id, u64::from);
        if id == self.node_id {
            return self.node.worker_log(query);
        }
        let members = self.members().map_err(core_error)?;
        let member = members.iter().find(|m| m.node_id == id).ok_or_else(|| {
            ray_core::Error::InvalidArgument {
                what: format!("node {id}"),
                message: "not a live node of the cluster (its workers' output went with it)".into(),
            }
        })?;
        let request = Request::Logs {
            query: query.clone(),
        };
        match self
            .ask(id, &member.address, &request)
            .map_err(core_error)?
        {
            (Response::Logs(r), _) => Ok(r),
            (_, addr) => Err(core_error(CliError::Protocol {
                peer: addr.to_string(),
                detail: "unexpected reply to Logs".into(),
            })),
        }
    }
}

/// A node's metrics only (its listener answers `/metrics` and nothing else).
struct NodeMetrics(Arc<Node>);

impl DashboardSource for NodeMetrics {
    fn rows(&self, kind: StateKind, options: &ListOptions) -> ray_core::Result<StateRows> {
        self.0.state(kind, options)
    }

    fn metrics(&self) -> ray_core::Result<String> {
        Ok(self.0.metrics())
    }

    fn logs(&self, _node: Option<u32>, query: &LogQuery) -> ray_core::Result<LogReply> {
        self.0.worker_log(query)
    }
}

/// What a node serves over HTTP: where, for the start message.
#[derive(Debug)]
pub struct Served {
    /// The head's dashboard (`http://IP:PORT`), when it serves one.
    pub dashboard: Option<String>,
    /// This node's metrics (`http://IP:PORT/metrics`).
    pub metrics: String,
}

impl Served {
    /// Lines for the start message (no token in them).
    pub fn message(&self, token_file: &std::path::Path) -> String {
        let mut m = String::new();
        if let Some(url) = &self.dashboard {
            m.push_str(&format!(
                "Dashboard: {url} (every request needs the cluster token: open {url}/?token=<token> \
                 in a browser, with the token from {} or RAY_RS_AUTH_TOKEN)\n",
                token_file.display()
            ));
        }
        m.push_str(&format!(
            "Metrics (Prometheus, token required): {}",
            self.metrics
        ));
        m
    }
}

fn bind(what: &str, flag: &'static str, addr: SocketAddr) -> Result<std::net::TcpListener> {
    ray_core::__node::bind(&addr.to_string()).map_err(|e| CliError::BadArg {
        flag,
        value: addr.port().to_string(),
        reason: format!(
            "cannot serve the {what} at {addr}: {e}; choose a free port ({flag} 0 picks one){}",
            if flag == "--dashboard-port" {
                ", or --include-dashboard false"
            } else {
                ""
            }
        ),
    })
}

/// Starts the metrics listener (every node) and the dashboard (the head, unless
/// `--include-dashboard false`) on `handle`'s runtime, and writes their URLs to the temp dir.
pub fn start(
    node: &RunningNode,
    args: &StartArgs,
    handle: &tokio::runtime::Handle,
) -> Result<Served> {
    let token = Some(node.token.expose_text());
    let metrics_listener = bind(
        "metrics",
        "--metrics-port",
        SocketAddr::new(args.metrics_host, args.metrics_port),
    )?;
    let dashboard_listener = if args.head && args.include_dashboard {
        Some(bind(
            "dashboard",
            "--dashboard-port",
            SocketAddr::new(args.dashboard_host, args.dashboard_port),
        )?)
    } else {
        None
    };
    let core = |e: ray_core::Error| CliError::NodeManager(e.to_string());
    let bound = ray_core::__node::serve_on(
        handle,
        metrics_listener,
        Arc::new(NodeMetrics(node.node.clone())),
        token.clone(),
        DashboardMode::MetricsOnly,
    )
    .map_err(core)?;
    let metrics = format!("http://{bound}/metrics");
    let dashboard = match dashboard_listener {
        Some(listener) => {
            let node_id = node.membership.node_id();
            let source = ClusterSource {
                node: node.node.clone(),
                node_id,
                control: node.control.clone(),
                tls: ray_net::client_config(Some(node.ca_pem.as_bytes()), Some(&node.identity))?,
                handshake: HandshakeConfig::new(
                    node.token.clone(),
                    Some(node.cluster_id.clone()),
                    Role::Node,
                    format!("node-{node_id} dashboard"),
                ),
                handle: handle.clone(),
                members: Mutex::new(None),
            };
            let bound = ray_core::__node::serve_on(
                handle,
                listener,
                Arc::new(source),
                token,
                DashboardMode::Dashboard,
            )
            .map_err(core)?;
            Some(format!("http://{bound}"))
        }
        None => None,
    };
    let dir = &node.dir;
    crate::pki::write_file(&dir.metrics_url_file(), metrics.as_bytes(), 0o600)?;
    match &dashboard {
        Some(url) => crate::pki::write_file(&dir.dashboard_url_file(), url.as_bytes(), 0o600)?,
        None => {
            let _ = std::fs::remove_file(dir.dashboard_url_file());
        }
    }
    Ok(Served { dashboard, metrics })
}

/// Removes the URL files (the node is stopping).
pub fn forget(dir: &crate::tempdir::NodeDir) {
    let _ = std::fs::remove_file(dir.dashboard_url_file());
    let _ = std::fs::remove_file(dir.metrics_url_file());
}
