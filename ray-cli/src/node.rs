//! `ray-rs start`: the node daemon (membership, node manager, its HTTP listeners).
//!
//! `start` without `--block` re-executes itself in the background (`daemon.rs`) and waits for
//! the daemon to report that the node has joined (or why it failed). The node manager plugs
//! into [`RunningNode`]; the head's dashboard and every node's metrics listener start once it
//! has joined (`dashboard.rs`).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ray_net::{AuthToken, HandshakeConfig, Role, TlsIdentity};
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};

use crate::args::{StartArgs, resolve};
use crate::control::{self, ControlState, JoinGrant, Request, Response};
use crate::daemon::{Ready, daemonize};
use crate::error::{CliError, Result};
use crate::etcd::Etcd;
use crate::etcd_server::EtcdServer;
use crate::host::{default_node_ip, node_resources};
use crate::membership::{self, Membership, NodeRecord};
use crate::pki::{ClusterCa, TlsFiles};
use crate::tempdir::{NodeDir, ensure_private_dir, process_alive, read_pid, write_pid};

pub use crate::client::{ask, fetch_status, log_dir, status, stop};

/// What `node.json` in the temp dir says about the running node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeFile {
    /// The node id.
    pub node_id: u64,
    /// The cluster id.
    pub cluster_id: String,
    /// The listener's address (`node-ip:port`).
    pub address: String,
    /// The daemon's pid.
    pub pid: u32,
    /// Whether this node is the head.
    pub is_head: bool,
}

/// A random cluster id (128 bits, hex).
pub fn new_cluster_id() -> Result<String> {
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| CliError::Net(ray_net::NetError::Random))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// A running node: what the node manager will be wired to.
pub struct RunningNode {
    /// The node's temp dir.
    pub dir: NodeDir,
    /// The cluster id.
    pub cluster_id: String,
    /// The cluster token.
    pub token: AuthToken,
    /// This node's TLS identity (certificate from the cluster CA).
    pub identity: TlsIdentity,
    /// The cluster CA certificate, PEM.
    pub ca_pem: String,
    /// etcd.
    pub etcd: Etcd,
    /// This node's registration.
    pub membership: Membership,
    /// The listener's address as others reach it.
    pub address: SocketAddr,
    /// The node manager.
    pub node: Arc<ray_core::__node::Node>,
    etcd_server: Option<EtcdServer>,
    pub(crate) control: Arc<ControlState>,
    /// Stops the resource publisher when dropped.
    _publishing: std::sync::mpsc::Sender<()>,
}

impl std::fmt::Debug for RunningNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningNode")
            .field("cluster_id", &self.cluster_id)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// `ray-rs start`.
pub fn start(args: StartArgs) -> Result<()> {
    // Input errors first, before anything is created or daemonized.
    node_resources(&args)?;
    if let Some(a) = &args.address {
        resolve("--address", a)?;
    }
    if args.etcd.is_some() && !args.head {
        return Err(CliError::BadArg {
            flag: "--etcd",
            value: args.etcd.clone().unwrap_or_default(),
            reason: "only the head takes --etcd; joining nodes get the endpoint from the head"
                .into(),
        });
    }
    let dir = NodeDir::new(args.temp_dir.clone());
    ensure_private_dir(&dir.root)?;
    ensure_private_dir(&dir.logs())?;
    if let Some(pid) = read_pid(&dir.pid_file())?
        && process_alive(pid, "ray-rs")
        && pid as u32 != std::process::id()
    {
        return Err(CliError::AlreadyRunning {
            temp_dir: dir.root.clone(),
            pid,
        });
    }
    if args.block {
        run_foreground(args, dir)
    } else {
        daemonize(&dir)
    }
}

fn run_foreground(args: StartArgs, dir: NodeDir) -> Result<()> {
    let mut ready = Ready::from_fd(args.ready_fd)?;
    write_pid(&dir.pid_file(), std::process::id())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::io("starting the async runtime", e))?;
    let node = match bring_up(&args, &dir, &runtime) {
        Ok(n) => n,
        Err(e) => {
            // The pid file goes first: the waiting `start` returns as soon as it reads the
            // error, and a next `start` must not find this (still exiting) process in it.
            let _ = std::fs::remove_file(dir.pid_file());
            ready.send(false, &e.to_string());
            return Err(e);
        }
    };
    let listener = node.1;
    let node = node.0;
    let served = match crate::dashboard::start(&node, &args, runtime.handle()) {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(dir.pid_file());
            ready.send(false, &e.to_string());
            node.shut_down();
            return Err(e);
        }
    };
    // The node manager learns the other nodes (and which incarnation each is) only from
    // here: without it, this node could reach no peer and would refuse every peer's session
    // (it accepts only incarnations etcd showed it), so it does not start.
    let follower = match node.control.follow_membership() {
        Ok(f) => f,
        Err(e) => {
            let _ = std::fs::remove_file(dir.pid_file());
            ready.send(
                false,
                &format!("cannot follow the cluster's membership: {e}"),
            );
            node.shut_down();
            return Err(e);
        }
    };
    let message = format!(
        "{}\n{}",
        joined_message(&node, &args),
        served.message(&node.dir.token_file())
    );
    println!("{message}");
    let _ = std::io::stdout().flush();
    ready.send(true, &message);
    drop(ready);
    tracing::info!("node {} up at {}", node.membership.node_id(), node.address);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let handshake = Arc::new(HandshakeConfig::new(
        node.token.clone(),
        Some(node.cluster_id.clone()),
        Role::Node,
        format!("node-{}", node.membership.node_id()),
    ));
    let server_tls = ray_net::server_config(&node.identity)?;
    let control = node.control.clone();
    runtime.block_on(async move {
        let server = tokio::spawn(control::serve(
            listener, server_tls, handshake, control, stop_rx,
        ));
        wait_for_signal().await;
        let _ = stop_tx.send(true);
        let _ = server.await;
    });
    drop(follower);
    crate::dashboard::forget(&node.dir);
    node.shut_down();
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install signal handlers; the node runs until killed");
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
    }
}

impl RunningNode {
    /// Leaves the cluster: revokes the lease (the record goes at once), stops etcd if this node
    /// runs it, removes the pid and node files.
    pub fn shut_down(mut self) {
        self.node.shutdown();
        self.membership.shutdown();
        if let Some(mut etcd) = self.etcd_server.take() {
            etcd.stop();
        }
        let _ = std::fs::remove_file(self.dir.node_file());
        let _ = std::fs::remove_file(self.dir.pid_file());
    }
}

fn joined_message(node: &RunningNode, args: &StartArgs) -> String {
    let id = node.membership.node_id();
    if args.head {
        let token_hint = if std::env::var_os(ray_net::TOKEN_ENV).is_some() {
            "RAY_RS_AUTH_TOKEN=<the token you set>".to_string()
        } else {
            format!(
                "RAY_RS_AUTH_TOKEN=$(cat {})",
                node.dir.token_file().display()
            )
        };
        format!(
            "ray-rs: head node {id} of cluster {} started at {}\n\
             To add a node (copy the token from this machine's {} to it):\n  \
             {token_hint} ray-rs start --address {}\n\
             To run a driver: RAY_ADDRESS={} {token_hint} ./your_program",
            node.cluster_id,
            node.address,
            node.dir.token_file().display(),
            node.address,
            node.address,
        )
    } else {
        format!(
            "ray-rs: node {id} joined cluster {} at {}",
            node.cluster_id, node.address
        )
    }
}

/// The cluster token for a head: `RAY_RS_AUTH_TOKEN`, or a new one written to the token file.
fn head_token(dir: &NodeDir) -> Result<AuthToken> {
    if let Some(text) = std::env::var_os(ray_net::TOKEN_ENV) {
        let text = text
            .into_string()
            .map_err(|_| ray_net::NetError::BadToken {
                source_name: ray_net::TOKEN_ENV.into(),
                detail: "not valid UTF-8".into(),
            })?;
        return Ok(AuthToken::parse(&text, ray_net::TOKEN_ENV)?);
    }
    let path = dir.token_file();
    if let Ok(meta) = std::fs::symlink_metadata(&path) {
        use std::os::unix::fs::MetadataExt;
        if meta.uid() != ray_net::token::effective_uid() {
            return Err(CliError::Unsafe {
                path,
                reason: "owned by another user; refusing to replace it".into(),
            });
        }
        std::fs::remove_file(&path)
            .map_err(|e| CliError::io(format!("removing {}", path.display()), e))?;
    }
    let token = AuthToken::generate()?;
    token.write_new_file(&path)?;
    Ok(token)
}

fn bind(args: &StartArgs) -> Result<std::net::TcpListener> {
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), args.port);
    let l = std::net::TcpListener::bind(addr)
        .map_err(|e| CliError::io(format!("listening on port {}", args.port), e))?;
    l.set_nonblocking(true)
        .map_err(|e| CliError::io("setting the listener non-blocking", e))?;
    Ok(l)
}

/// Everything up to the node being registered; returns the node and its listener.
fn bring_up(
    args: &StartArgs,
    dir: &NodeDir,
    runtime: &tokio::runtime::Runtime,
) -> Result<(RunningNode, tokio::net::TcpListener)> {
    let resources = node_resources(args)?;
    let std_listener = bind(args)?;
    let port = std_listener
        .local_addr()
        .map_err(|e| CliError::io("reading the listener's address", e))?
        .port();
    let files = TlsFiles::under(&dir.root);
    let own_tls = match (&args.tls_cert, &args.tls_key, &args.tls_ca) {
        (Some(c), Some(k), Some(ca)) => Some((c.clone(), k.clone(), ca.clone())),
        _ => None,
    };

    let (cluster_id, token, identity, ca_pem, etcd, etcd_server, ca, node_ip, etcd_url);
    let mut joined_head = None;
    if args.head {
        cluster_id = new_cluster_id()?;
        token = head_token(dir)?;
        node_ip = args.node_ip.unwrap_or_else(default_node_ip);
        if let Some((c, k, a)) = &own_tls {
            ca = None;
            ca_pem = read_text(a)?;
            let (cert_pem, key_pem) = (read_text(c)?, read_text(k)?);
            files.write(&ca_pem, &cert_pem, &key_pem)?;
        } else {
            let new_ca = ClusterCa::generate(&cluster_id)?;
            let own = new_ca.issue_local(
                &[node_ip, IpAddr::V4(Ipv4Addr::LOCALHOST)],
                &format!("ray-rs head {node_ip}"),
            )?;
            ca_pem = new_ca.cert_pem().to_string();
            files.write(&ca_pem, &own.cert_pem, &own.key_pem)?;
            ca = Some(Arc::new(new_ca));
        }
        identity = TlsIdentity::from_files(&files.cert, &files.key)?;
        let etcd_tls = ray_net::client_config(Some(ca_pem.as_bytes()), Some(&identity))?;
        match &args.etcd {
            Some(url) => {
                etcd = Etcd::new(url, Some(etcd_tls))?;
                etcd.get(b"/ray-rs-health")?;
                etcd_server = None;
                etcd_url = url.clone();
            }
            None => {
                // On this (main) thread: the child's PR_SET_PDEATHSIG follows the forking thread.
                let (server, client) =
                    EtcdServer::start(dir, node_ip, &files, etcd_tls, Duration::from_secs(60))?;
                etcd_url = server.client_url.clone();
                etcd = client;
                etcd_server = Some(server);
            }
        }
    } else {
        let head = resolve("--address", args.address.as_deref().unwrap_or_default())?;
        joined_head = Some(head);
        token = AuthToken::from_env_or_file(&dir.token_file())?;
        let ca_file = own_tls.as_ref().map(|(_, _, a)| read_text(a)).transpose()?;
        let tls = ray_net::client_config(ca_file.as_deref().map(str::as_bytes), None)?;
        let key = if own_tls.is_some() {
            None
        } else {
            Some(crate::pki::new_node_key()?)
        };
        let handshake = HandshakeConfig::new(
            token.clone(),
            None,
            Role::Node,
            format!("joining node, port {port}"),
        );
        // The node ip: as given, else the address this machine uses towards the head.
        let (grant, local_ip) = runtime.block_on(async {
            let probe_ip = args.node_ip;
            let request = |ip: IpAddr| Request::Join {
                node_ip: ip,
                public_key: key.as_ref().map(|k| k.public_key_raw().to_vec()),
            };
            match probe_ip {
                Some(ip) => control::request(head, tls.clone(), &handshake, &request(ip))
                    .await
                    .map(|(r, _, _)| (r, ip)),
                None => {
                    // Learn the local address from a first connection, then ask with it.
                    let tcp = tokio::net::TcpStream::connect(head).await.map_err(|e| {
                        CliError::io(format!("connecting to the head at {head}"), e)
                    })?;
                    let ip = tcp
                        .local_addr()
                        .map_err(|e| CliError::io("local address", e))?
                        .ip();
                    drop(tcp);
                    control::request(head, tls.clone(), &handshake, &request(ip))
                        .await
                        .map(|(r, _, _)| (r, ip))
                }
            }
        })?;
        let Response::Joined(JoinGrant {
            cluster_id: id,
            ca_pem: ca_text,
            cert_pem,
            etcd_url: url,
        }) = grant
        else {
            return Err(CliError::Protocol {
                peer: head.to_string(),
                detail: "unexpected reply to Join".into(),
            });
        };
        cluster_id = id;
        node_ip = local_ip;
        match (&own_tls, cert_pem, key) {
            (Some((c, k, _)), _, _) => {
                files.write(&ca_text, &read_text(c)?, &read_text(k)?)?;
            }
            (None, Some(cert_pem), Some(key)) => {
                files.write(&ca_text, &cert_pem, &key.serialize_pem())?;
            }
            _ => {
                return Err(CliError::Protocol {
                    peer: head.to_string(),
                    detail: "the head sent no certificate".into(),
                });
            }
        }
        ca_pem = ca_text;
        ca = None;
        identity = TlsIdentity::from_files(&files.cert, &files.key)?;
        let etcd_tls = ray_net::client_config(Some(ca_pem.as_bytes()), Some(&identity))?;
        etcd = Etcd::new(&url, Some(etcd_tls))?;
        etcd_url = url;
        etcd_server = None;
    }

    let address = SocketAddr::new(node_ip, port);
    let resources_total = resources.clone();
    // A fenced node's next incarnation keeps its id (the head is never restarted in place).
    let rejoin = crate::fence::rejoin_from_env().filter(|_| !args.head);
    let (node_id, incarnation) = match rejoin {
        Some((id, incarnation)) => (id, incarnation),
        None => {
            let id = membership::waiting_for_etcd(
                "allocating a node id",
                membership::JOIN_WAIT_FOR_ETCD,
                || membership::allocate_node_id(&etcd, &cluster_id),
            )?;
            (id, 1)
        }
    };
    let record = NodeRecord {
        node_id,
        address: address.to_string(),
        is_head: args.head,
        resources_available: resources.clone(),
        resources_total: resources.clone(),
        incarnation,
        start_time_ms: membership::now_ms(),
        pid: std::process::id(),
        activity: Default::default(),
    };
    let membership = membership::waiting_for_etcd(
        "registering the node",
        membership::JOIN_WAIT_FOR_ETCD,
        || {
            Membership::register(
                etcd.clone(),
                &cluster_id,
                record.clone(),
                Duration::from_secs(args.lease_ttl),
            )
        },
    )?;
    if args.head
        && !etcd.create_if_absent(
            format!("/{cluster_id}/head").as_bytes(),
            address.to_string().as_bytes(),
            0,
        )?
    {
        return Err(CliError::Etcd {
            endpoint: etcd.url().to_string(),
            detail: format!("cluster {cluster_id} already has a head"),
        });
    }
    let node_file = NodeFile {
        node_id,
        cluster_id: cluster_id.clone(),
        address: address.to_string(),
        pid: std::process::id(),
        is_head: args.head,
    };
    crate::pki::write_file(
        &dir.node_file(),
        &serde_json::to_vec_pretty(&node_file).map_err(|e| CliError::Pki(e.to_string()))?,
        0o600,
    )?;
    let addresses = Arc::new(Mutex::new(BTreeMap::new()));
    let reach = crate::node_manager::Reach {
        addresses: addresses.clone(),
        tls: ray_net::client_config(Some(ca_pem.as_bytes()), Some(&identity))?,
        handshake: HandshakeConfig::new(
            token.clone(),
            Some(cluster_id.clone()),
            Role::Node,
            format!("node-{node_id}"),
        ),
        incarnation,
    };
    let names = Arc::new(crate::names::EtcdNames::new(
        etcd.clone(),
        &cluster_id,
        membership.lease(),
    ));
    let node = crate::node_manager::start(
        dir,
        node_id,
        &cluster_id,
        &resources_total,
        reach,
        node_ip,
        names,
    )?;
    {
        let node = node.clone();
        let is_head = args.head;
        membership.on_lease_lost(move |next| {
            crate::fence::fence(node_id, next, is_head, &|| node.kill_workers())
        });
    }
    let publishing = crate::node_manager::publish_resources(
        node.clone(),
        crate::node_manager::Publishing {
            publisher: membership.publisher(),
            etcd: etcd.clone(),
            cluster_id: cluster_id.clone(),
            node_id,
        },
    )?;
    let control = Arc::new(ControlState {
        cluster_id: cluster_id.clone(),
        ca,
        ca_pem: ca_pem.clone(),
        etcd: etcd.clone(),
        etcd_url,
        dead: Mutex::new(BTreeMap::new()),
        node: Some(node.clone()),
        addresses,
    });
    let listener = {
        let _guard = runtime.enter();
        tokio::net::TcpListener::from_std(std_listener)
            .map_err(|e| CliError::io("registering the listener", e))?
    };
    if let Some(head) = joined_head {
        let tls = ray_net::client_config(Some(ca_pem.as_bytes()), Some(&identity))?;
        let handshake = HandshakeConfig::new(
            token.clone(),
            Some(cluster_id.clone()),
            Role::Node,
            format!("node-{node_id}"),
        );
        runtime.block_on(wait_until_head_sees(head, tls, &handshake, node_id));
    }
    Ok((
        RunningNode {
            dir: dir.clone(),
            cluster_id,
            token,
            identity,
            ca_pem,
            etcd,
            membership,
            address,
            node,
            etcd_server,
            control,
            _publishing: publishing,
        },
        listener,
    ))
}

/// How long a joining node waits for the head's scheduler to know it before `start` returns.
const HEAD_SEES_JOINER: Duration = Duration::from_secs(30);

/// Waits until the head's node manager lists node `node_id` (it learns of it from its etcd
/// watch, a moment after the registration): `start` returns once the node has joined, so a
/// driver started right after it can place work there (else a request only this node fits
/// would be `Infeasible` in that moment). After [`HEAD_SEES_JOINER`] it only warns.
async fn wait_until_head_sees(
    head: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    handshake: &HandshakeConfig,
    node_id: u64,
) {
    let request = Request::State {
        kind: ray_core::state::StateKind::Nodes,
        options: Default::default(),
    };
    let deadline = tokio::time::Instant::now() + HEAD_SEES_JOINER;
    let mut pause = Duration::from_millis(10);
    loop {
        let seen = match control::request(head, tls.clone(), handshake, &request).await {
            Ok((Response::State(rows), _, _)) => match *rows {
                ray_core::state::StateRows::Nodes(rows) => rows
                    .iter()
                    .any(|r| u64::from(r.node_id) == node_id && r.state == "ALIVE"),
                _ => false,
            },
            _ => false,
        };
        if seen {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                "the head does not list this node after {HEAD_SEES_JOINER:?}; going on (work \
                 only this node fits may be refused as infeasible until it does)"
            );
            return;
        }
        // Waiting on the head's etcd watch, which this node cannot be notified of.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| CliError::io(format!("reading {}", path.display()), e))
}
