//! [`NodeManager`]: the state machine plus what it needs to act — its lock, its worker
//! connections, the spawner thread, timers, GPU detection — and the one place its effects are
//! carried out.
//!
//! Every change goes through [`NodeManager::run`]: lock, apply the handler, unlock, then
//! execute the effects it pushed. Effects on connections and processes execute under a second
//! lock (`io`), taken before the state lock is released, so they leave in the order they were
//! pushed even when several threads handle messages at once; wake-ups and timers need no
//! order and run without it. Executing an effect never calls back into the state machine
//! synchronously (callbacks go through the runtime or another thread), and the I/O lock never
//! waits for the state lock, so neither lock is ever taken twice.

use super::conn;
use super::data_links::{self, DataLink};
use super::effects::{Effect, LogTo, Peer, Timer};
use super::links::{self, ClusterIo};
use super::spawn::{LogSink, SpawnRequest, SpawnerConfig, spawner_main};
use super::state::{NodeState, Settings};
use super::store::{SpillDir, Store, remove_stale_spill_dirs};
use crate::error::{Error, Result};
use crate::ids::{IdMap, JobId, NodeId, ProcId};
use crate::log;
use crate::object_store::{self, Arena};
use crate::protocol::worker::ToWorker;
use crate::resources::{Amount, NodeResources};
use crate::transport::{Conn, StreamOutbox};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a node manager starts with.
pub(crate) struct NodeConfig {
    pub node: NodeId,
    pub cpus: usize,
    /// `None`: counted by `gpu_detector` when first needed (0 without one).
    pub gpus: Option<usize>,
    pub custom: Vec<(String, Amount)>,
    pub gpu_detector: Option<fn() -> usize>,
    pub max_idle_workers: usize,
    pub object_store_memory: u64,
    pub spill_root: PathBuf,
    pub inline_max: usize,
    pub log_to_driver: bool,
    /// Finished tasks kept for the state API and the timeline.
    pub task_events_max: usize,
    /// Where each worker's output is kept besides being forwarded.
    pub worker_logs: Option<Arc<crate::worker_logs::WorkerLogs>>,
}

/// A running node manager. Cheap to clone.
#[derive(Clone)]
pub(crate) struct NodeManager {
    pub(super) inner: Arc<Inner>,
}

/// Control sessions other nodes hold here (see `Inner::peer_sessions`).
pub(super) type PeerSessions =
    std::collections::HashMap<(NodeId, u64, u64), Arc<super::session::PeerSession>>;

pub(crate) struct Inner {
    state: Mutex<NodeState>,
    /// Held while effects execute; holds what executing them needs.
    io: Mutex<Io>,
    /// Signalled when a worker process is gone (a shutdown waits for all of them).
    workers_changed: Condvar,
    rt: Mutex<Option<tokio::runtime::Runtime>>,
    pub(super) handle: tokio::runtime::Handle,
    spawn_tx: Mutex<Option<std::sync::mpsc::Sender<SpawnRequest>>>,
    spawner: Mutex<Option<JoinHandle<()>>>,
    gpu_detector: Option<fn() -> usize>,
    arena: Arc<Arena>,
    node: NodeId,
    /// How to reach other nodes, in a cluster.
    cluster: Mutex<Option<Arc<ClusterIo>>>,
    /// This node's data sessions at other nodes.
    data_links: Mutex<IdMap<NodeId, Arc<DataLink>>>,
    /// Control sessions other nodes hold here, by (node, incarnation, session id): a node that
    /// started again counts its session ids from 1 again.
    pub(super) peer_sessions: Mutex<PeerSessions>,
    /// Bytes of objects copied here from other nodes, and from here to them.
    pulled: AtomicU64,
    served: AtomicU64,
}

/// The handles effects act on.
#[derive(Default)]
struct Io {
    conns: IdMap<ProcId, Conn>,
    killers: IdMap<ProcId, Arc<tokio::sync::Notify>>,
    /// This node's control sessions at other nodes.
    nodes: IdMap<NodeId, StreamOutbox>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts a node manager: its runtime, object store and spawner thread. No worker is started
/// until something asks for one (see [`NodeManager::prestart`]).
pub(crate) fn start(cfg: NodeConfig) -> Result<NodeManager> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("ray-node-manager")
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the node manager's runtime", e))?;
    let arena = Arc::new(Arena::create(cfg.object_store_memory)?);
    let spill = SpillDir::new(&cfg.spill_root)?;
    remove_stale_spill_dirs(&cfg.spill_root);
    let store = Store::new(arena.clone(), spill);
    let mut resources = NodeResources::new(cfg.cpus, cfg.gpus.unwrap_or(0), &cfg.custom);
    if cfg.gpus.is_none() {
        resources = resources.gpus_unknown();
    }
    let settings = Settings {
        max_idle_workers: cfg.max_idle_workers.max(1),
        can_detect_gpus: cfg.gpu_detector.is_some(),
    };
    let mut state = NodeState::new(cfg.node, settings, resources, store);
    state.events.set_capacity(cfg.task_events_max);
    let (spawn_tx, spawn_rx) = std::sync::mpsc::channel();
    let inner = Arc::new(Inner {
        state: Mutex::new(state),
        io: Mutex::new(Io::default()),
        workers_changed: Condvar::new(),
        handle: rt.handle().clone(),
        rt: Mutex::new(Some(rt)),
        spawn_tx: Mutex::new(Some(spawn_tx)),
        spawner: Mutex::new(None),
        gpu_detector: cfg.gpu_detector,
        arena: arena.clone(),
        node: cfg.node,
        cluster: Mutex::new(None),
        data_links: Mutex::new(IdMap::default()),
        peer_sessions: Mutex::new(std::collections::HashMap::new()),
        pulled: AtomicU64::new(0),
        served: AtomicU64::new(0),
    });
    let spawner_cfg = SpawnerConfig {
        log_to_driver: cfg.log_to_driver,
        worker_logs: cfg.worker_logs,
        store_fd: arena.raw_fd(),
        store_size: arena.capacity(),
        inline_max: cfg.inline_max,
    };
    let weak = Arc::downgrade(&inner);
    let handle = inner.handle.clone();
    let spawner = std::thread::Builder::new()
        .name("ray-spawner".into())
        .spawn(move || spawner_main(spawn_rx, weak, handle, spawner_cfg))
        .map_err(|e| Error::io("starting the spawner thread", e))?;
    *lock(&inner.spawner) = Some(spawner);
    Ok(NodeManager { inner })
}

impl NodeManager {
    /// Applies `f` to the state, then carries out the effects it pushed.
    pub(crate) fn run<R>(&self, f: impl FnOnce(&mut NodeState) -> R) -> R {
        self.inner.run(f)
    }

    /// The state, locked (for reading stats; changes go through [`run`](Self::run)).
    pub(crate) fn lock(&self) -> MutexGuard<'_, NodeState> {
        lock(&self.inner.state)
    }

    pub(crate) fn arena(&self) -> &Arc<Arena> {
        &self.inner.arena
    }

    /// The node manager's tokio runtime (the dashboard's server runs on it).
    #[cfg_attr(not(feature = "dashboard"), allow(dead_code))]
    pub(crate) fn handle(&self) -> tokio::runtime::Handle {
        self.inner.handle.clone()
    }

    /// Starts `n` idle workers of `job` ahead of its first task, as Ray does.
    pub(crate) fn prestart(&self, job: JobId, n: usize) {
        self.run(|st| st.prestart(job, n));
    }

    /// Stops everything: tells workers to exit, waits up to `grace`, kills the rest, removes
    /// the spill directory and stops the runtime. Works from any thread, async ones included.
    pub(crate) fn shutdown(&self, grace: Duration) {
        self.run(|st| st.begin_shutdown());
        if !self.wait_for_workers(grace) {
            self.run(|st| st.kill_all());
            if !self.wait_for_workers(Duration::from_secs(5)) {
                log::warn!(
                    "{} worker(s) did not exit after being killed",
                    self.lock().workers.len()
                );
            }
        }
        self.lock().store.remove_spill_dir();
        lock(&self.inner.spawn_tx).take();
        if let Some(t) = lock(&self.inner.spawner).take() {
            let _ = t.join();
        }
        if let Some(rt) = lock(&self.inner.rt).take() {
            // Dropping a runtime blocks, which tokio forbids on its own threads: stop it from a
            // thread of its own, so shutting down works inside `#[tokio::main]` too.
            let stopper = std::thread::Builder::new()
                .name("ray-shutdown".into())
                .spawn(move || rt.shutdown_timeout(Duration::from_secs(1)));
            match stopper {
                Ok(t) => {
                    let _ = t.join();
                }
                Err(e) => log::warn!("cannot stop the node manager's runtime: {e}"),
            }
        }
    }

    /// Waits until no worker is left, at most `timeout`; whether none is.
    fn wait_for_workers(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        while !st.workers.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self
                .inner
                .workers_changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// Runs `task` on this node manager's runtime.
    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.inner.handle.spawn(task);
    }

    /// Serves a driver's session on `stream`, an authenticated connection from another machine
    /// (on this node's runtime).
    pub(crate) fn serve_session<S>(
        &self,
        stream: S,
        cluster_id: String,
        store: Arc<dyn super::remote::BinaryStore>,
    ) where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let weak = Arc::downgrade(&self.inner);
        self.inner.handle.spawn(super::remote::serve_session(
            weak, stream, cluster_id, store,
        ));
    }

    /// Takes part in a cluster: reaches other nodes through `connector`.
    /// Node `node` is dead: its data session goes too (the control session is closed by the
    /// state machine's `Disconnect`).
    pub(crate) fn forget_dead_node(&self, node: NodeId) {
        lock(&self.inner.data_links).remove(&node);
    }

    pub(crate) fn join_cluster(&self, io: ClusterIo) {
        *lock(&self.inner.cluster) = Some(Arc::new(io));
    }

    /// Bytes of objects copied here from other nodes, and from here to them.
    pub(crate) fn transfer_counts(&self) -> (u64, u64) {
        (
            self.inner.pulled.load(Ordering::Relaxed),
            self.inner.served.load(Ordering::Relaxed),
        )
    }

    /// Process ids of the current workers.
    pub(crate) fn worker_pids(&self) -> Vec<u32> {
        self.lock().workers.pids()
    }
}

impl Inner {
    pub(super) fn run<R>(self: &Arc<Self>, f: impl FnOnce(&mut NodeState) -> R) -> R {
        let mut st = lock(&self.state);
        st.now_us = crate::state::now_us();
        let r = f(&mut st);
        if st.effects.is_empty() {
            return r;
        }
        let effects = std::mem::take(&mut st.effects);
        if effects.iter().any(Effect::is_ordered) {
            // The I/O lock is taken before the state lock is released, so effects reach the
            // connections in the order the state machine pushed them.
            let mut io = lock(&self.io);
            drop(st);
            let rest = self.execute_ordered(effects, &mut io);
            drop(io);
            self.execute_unordered(rest);
        } else {
            drop(st);
            self.execute_unordered(effects);
        }
        r
    }

    pub(super) fn node_id(&self) -> NodeId {
        self.node
    }

    pub(super) fn arena(&self) -> &Arc<Arena> {
        &self.arena
    }

    pub(super) fn cluster_io(&self) -> Option<Arc<ClusterIo>> {
        lock(&self.cluster).clone()
    }

    pub(super) fn data_link(&self, node: NodeId) -> Option<Arc<DataLink>> {
        lock(&self.data_links).get(&node).cloned()
    }

    /// Records a new data session; if another was recorded meanwhile, that one is used.
    pub(super) fn set_data_link(&self, node: NodeId, link: Arc<DataLink>) -> Arc<DataLink> {
        lock(&self.data_links).entry(node).or_insert(link).clone()
    }

    pub(super) fn forget_data_link(&self, node: NodeId, link: &Arc<DataLink>) {
        let mut links = lock(&self.data_links);
        if links.get(&node).is_some_and(|l| Arc::ptr_eq(l, link)) {
            links.remove(&node);
        }
    }

    /// Sends `msg` over this node's control session at `node`, opening it if needed.
    fn send_node_locked(
        self: &Arc<Self>,
        io: &mut Io,
        node: NodeId,
        msg: &crate::protocol::worker::FromWorker,
    ) {
        let link = io
            .nodes
            .entry(node)
            .or_insert_with(|| links::open_control(self, node));
        if let Err(e) = link.send(msg) {
            log::error!("cannot send a message to {node}: {e}");
        }
    }

    /// Sends `msg` to `node` now, outside the state machine (worker output on its way to the
    /// job's driver).
    pub(super) fn send_node_now(
        self: &Arc<Self>,
        node: NodeId,
        msg: crate::protocol::worker::FromWorker,
    ) {
        let mut io = lock(&self.io);
        self.send_node_locked(&mut io, node, &msg);
    }

    /// This node's control session `link` at `node` ended: the next message opens a new one
    /// (unless a new one is there already).
    pub(super) fn forget_node(&self, node: NodeId, link: &StreamOutbox) {
        let mut io = lock(&self.io);
        if io.nodes.get(&node).is_some_and(|l| l.same(link)) {
            io.nodes.remove(&node);
        }
    }

    pub(super) fn count_pulled(&self, bytes: u64) {
        self.pulled.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(super) fn count_served(&self, bytes: u64) {
        self.served.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A worker's connection is ready: messages to it go out through `outbox`.
    pub(super) fn add_connection(&self, proc: ProcId, conn: Conn) {
        lock(&self.io).conns.insert(proc, conn);
    }

    /// Carries out the effects on connections and processes, in order; returns the others.
    fn execute_ordered(self: &Arc<Self>, effects: Vec<Effect>, io: &mut Io) -> Vec<Effect> {
        let mut rest = Vec::new();
        for effect in effects {
            match effect {
                Effect::Send(Peer::Worker(p), ToWorker::Log { stderr, line }) => {
                    // Output of this job's workers on another node, for a driver attached here.
                    if let Some(conn) = io.conns.get(&p) {
                        super::remote::send_log(conn, p, stderr, line);
                    }
                }
                Effect::Send(Peer::Worker(p), msg) => {
                    let Some(conn) = io.conns.get(&p) else {
                        log::debug!("dropped a message to {p}, which is not connected");
                        continue;
                    };
                    if let Err(e) = conn.send(&msg) {
                        log::error!("cannot send a message to {p}: {e}");
                        if let ToWorker::GetReply { req, .. } | ToWorker::GetReplyPart { req, .. } =
                            msg
                        {
                            let _ = conn.send(&ToWorker::GetReply {
                                req,
                                result: Err(e),
                            });
                        }
                    }
                }
                Effect::StartWorker {
                    proc,
                    gpu_ids,
                    exe,
                    log_to,
                } => {
                    let killer = Arc::new(tokio::sync::Notify::new());
                    io.killers.insert(proc, killer.clone());
                    let req = SpawnRequest {
                        proc,
                        gpu_ids,
                        exe,
                        killer,
                        log_sink: match log_to {
                            LogTo::Here => LogSink::Here,
                            LogTo::Driver(d) => match io.conns.get(&d) {
                                Some(conn) => LogSink::Driver(d, conn.clone()),
                                None => LogSink::Here,
                            },
                            LogTo::Node { node, job, tag } => LogSink::Node {
                                inner: Arc::downgrade(self),
                                node,
                                job,
                                tag,
                            },
                        },
                    };
                    let sent = lock(&self.spawn_tx)
                        .as_ref()
                        .is_some_and(|tx| tx.send(req).is_ok());
                    if !sent {
                        let weak = Arc::downgrade(self);
                        self.handle.spawn(async move {
                            if let Some(node) = weak.upgrade() {
                                node.run(|st| {
                                    st.spawn_failed(proc, "was not started: the node is stopping")
                                });
                            }
                        });
                    }
                }
                Effect::Kill(p) => {
                    if let Some(k) = io.killers.get(&p) {
                        k.notify_one();
                    }
                }
                Effect::SendNode(node, msg) => self.send_node_locked(io, node, &msg),
                Effect::Disconnect(Peer::Worker(p)) => {
                    if let Some(conn) = io.conns.remove(&p) {
                        conn.close();
                    }
                }
                Effect::Disconnect(Peer::Node(n)) => {
                    if let Some(link) = io.nodes.remove(&n) {
                        link.close();
                    }
                }
                Effect::Forget(p) => {
                    if let Some(conn) = io.conns.remove(&p) {
                        conn.close();
                    }
                    io.killers.remove(&p);
                }
                other => rest.push(other),
            }
        }
        rest
    }

    /// Carries out effects whose order does not matter: timers, wake-ups, GPU detection.
    fn execute_unordered(self: &Arc<Self>, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Timer(after, timer) => {
                    let weak = Arc::downgrade(self);
                    self.handle.spawn(async move {
                        tokio::time::sleep(after).await;
                        if let Some(node) = weak.upgrade() {
                            node.run(|st| match timer {
                                Timer::RequestTimeout(key) => st.expire_request(key),
                                Timer::ExitGrace(proc) => st.exit_grace_over(proc),
                            });
                        }
                    });
                }
                Effect::DetectGpus => self.detect_gpus(),
                Effect::Names(id, op) => self.ask_name_directory(id, op),
                Effect::Pull {
                    id,
                    from,
                    len,
                    region,
                } => {
                    self.handle
                        .spawn(data_links::pull(self.clone(), id, from, len, region));
                }
                Effect::EnsureJob {
                    job,
                    from,
                    sha256,
                    size,
                } => {
                    self.handle.spawn(data_links::ensure_job(
                        self.clone(),
                        job,
                        from,
                        sha256,
                        size,
                    ));
                }
                Effect::Wake(slot) => slot.fill(()),
                Effect::Resolve(slot, result) => slot.fill(result),
                Effect::WorkersChanged => self.workers_changed.notify_all(),
                Effect::Answer(slot, result) => slot.fill(result),
                ordered => {
                    debug_assert!(false, "{ordered:?} must be executed in order");
                }
            }
        }
    }

    /// Asks the cluster's name directory from a blocking thread (etcd calls block, and wait
    /// out an outage); the answer goes back to the state machine.
    fn ask_name_directory(self: &Arc<Self>, id: u64, op: super::name_directory::NameOp) {
        use super::name_directory::{NameAnswer, NameOp};
        let weak: Weak<Inner> = Arc::downgrade(self);
        let directory = self.cluster_io().map(|c| c.names.clone());
        self.handle.spawn_blocking(move || {
            let answer = match directory {
                None => Err("this node is not in a cluster".to_string()),
                Some(dir) => match &op {
                    NameOp::Claim(r) => dir
                        .claim(&r.name.namespace, &r.name.name, &r.encode())
                        .map(NameAnswer::Record),
                    NameOp::Lookup(n) => dir.lookup(&n.namespace, &n.name).map(NameAnswer::Record),
                    NameOp::List(ns) => dir.list(ns).map(NameAnswer::Records),
                    NameOp::Release(r) => dir
                        .release(&r.name.namespace, &r.name.name, &r.encode())
                        .map(|()| NameAnswer::Done),
                },
            };
            if let (NameOp::Release(r), Err(e)) = (&op, &answer) {
                log::warn!("releasing actor name {:?}: {e}", r.name.name);
            }
            if let Some(node) = weak.upgrade() {
                node.run(|st| st.name_answer(id, answer));
            }
        });
    }

    fn detect_gpus(self: &Arc<Self>) {
        let weak: Weak<Inner> = Arc::downgrade(self);
        let detect = self.gpu_detector.unwrap_or(|| 0);
        let spawned = std::thread::Builder::new()
            .name("ray-gpu-detect".into())
            .spawn(move || {
                let n = detect();
                if let Some(node) = weak.upgrade() {
                    node.run(|st| st.gpus_detected(n));
                }
            });
        if spawned.is_err() {
            let weak = Arc::downgrade(self);
            self.handle.spawn(async move {
                if let Some(node) = weak.upgrade() {
                    node.run(|st| st.gpus_detected(0));
                }
            });
        }
    }
}

/// Starts serving a worker's connection (called by the spawner once the process runs).
pub(super) fn serve_worker(
    inner: &Arc<Inner>,
    proc: ProcId,
    stream: std::os::unix::net::UnixStream,
) {
    let weak = Arc::downgrade(inner);
    inner.handle.spawn(conn::serve(weak, proc, stream));
}

/// Sets the store everything in this process reads through.
pub(crate) fn install_arena(node: &NodeManager, inline_max: usize) {
    object_store::set_inline_max(inline_max);
    object_store::set_arena(Some(node.arena().clone()));
}
