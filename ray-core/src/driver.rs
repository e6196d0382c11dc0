//! The driver side of single-node mode: `ray::init` starts a node manager in this process and
//! talks to it with direct calls; `ray::shutdown` stops it.
//!
//! One runtime is active per process at a time. `init` on another thread while one is active
//! waits for it to shut down (so the tests of one test binary, each calling `init`, take turns);
//! a runtime started on a thread other than `main` shuts down when that thread ends, so a test
//! that panics does not leave it running. Each runtime is a node of its own ([`NodeId`] = the
//! runtime's number in this process), so ids made under an earlier runtime never collide with
//! new ones.

use crate::codec::{Data, Value};
use crate::config::Config;
use crate::context::{self, Client, GetToken};
use crate::error::{Error, Result};
use crate::ids::{self, ActorId, JobId, NodeId, ObjectId, ProcId, RefId, RequestKey};
use crate::node_manager::{self, NodeConfig, NodeManager};
use crate::object_store;
use crate::protocol::worker::{Control, ControlReply};
use crate::protocol::{ActorSpec, ActorTaskSpec, TaskSpec};
use crate::resources::Amount;
use crate::slot::Slot;
use std::cell::RefCell;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

pub(crate) struct Driver {
    /// The node manager in this process (single-node mode).
    pub(crate) node: Option<NodeManager>,
    /// The session with a cluster's node (cluster mode).
    #[cfg(feature = "cluster")]
    cluster: Mutex<Option<crate::cluster_client::ClusterSession>>,
    epoch: u32,
}

struct Global {
    driver: Option<Arc<Driver>>,
    owner: Option<ThreadId>,
    epoch: u32,
}

static GLOBAL: Mutex<Global> = Mutex::new(Global {
    driver: None,
    owner: None,
    epoch: 0,
});
static GLOBAL_CHANGED: Condvar = Condvar::new();

thread_local! {
    static GUARD: RefCell<Option<ThreadGuard>> = const { RefCell::new(None) };
}

/// Shuts down the runtime a (non-main) thread started when that thread ends.
struct ThreadGuard(u32);

impl Drop for ThreadGuard {
    fn drop(&mut self) {
        let epoch = self.0;
        // Tokio cannot be shut down from inside a thread-local destructor: use a fresh thread.
        let t = std::thread::Builder::new()
            .name("ray-shutdown".into())
            .spawn(move || shutdown_epoch(Some(epoch)));
        if let Ok(t) = t {
            let _ = t.join();
        }
    }
}

fn lock_global() -> std::sync::MutexGuard<'static, Global> {
    GLOBAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn is_main_thread() -> bool {
    // SAFETY: both calls only read the calling thread's/process's ids.
    unsafe { libc::gettid() == libc::getpid() }
}

/// Checks the settings and turns them into a node manager's configuration.
fn node_config(config: &Config, node: NodeId) -> Result<NodeConfig> {
    if let Some(ns) = &config.namespace {
        crate::options::check_name("a namespace", ns).map_err(|message| {
            Error::InvalidArgument {
                what: "Config::namespace".into(),
                message,
            }
        })?;
    }
    let cpus = config.num_cpus.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let mut custom = Vec::new();
    for (name, amount) in &config.resources {
        if name.is_empty() || name == "CPU" || name == "GPU" {
            return Err(Error::InvalidArgument {
                what: "resource name".into(),
                message: format!(
                    "{name:?} cannot be a custom resource name; use Config::num_cpus/num_gpus for \
                     CPU and GPU, and a non-empty name such as \"disk\" otherwise"
                ),
            });
        }
        let a = Amount::from_f64(*amount).map_err(|m| Error::InvalidArgument {
            what: format!("amount of resource {name:?}"),
            message: m,
        })?;
        custom.push((name.clone(), a));
    }
    let inline_max = config
        .max_inline_object_size
        .unwrap_or(object_store::DEFAULT_INLINE_MAX);
    if inline_max > object_store::MAX_INLINE_MAX {
        return Err(Error::InvalidArgument {
            what: "max_inline_object_size".into(),
            message: format!(
                "{inline_max} bytes is more than the {} bytes a message may carry inline; larger \
                 objects go to the shared-memory store",
                object_store::MAX_INLINE_MAX
            ),
        });
    }
    Ok(NodeConfig {
        node,
        cpus,
        gpus: match (config.num_gpus, config.gpu_detector) {
            (Some(n), _) => Some(n),
            (None, Some(_)) => None,
            (None, None) => Some(0),
        },
        custom,
        gpu_detector: config.gpu_detector,
        max_idle_workers: config.max_idle_workers.unwrap_or(cpus).max(1),
        object_store_memory: config
            .object_store_memory
            .unwrap_or_else(object_store::default_capacity),
        spill_root: config.spill_dir.clone().unwrap_or_else(std::env::temp_dir),
        inline_max,
        log_to_driver: config.log_to_driver,
        task_events_max: config
            .task_events_max
            .unwrap_or(crate::state::DEFAULT_TASK_EVENTS_MAX),
        // With a dashboard, workers' output is also kept for its log page, in a private
        // directory removed at shutdown.
        worker_logs: match dashboard_addr(config) {
            Some(_) => Some(crate::worker_logs::WorkerLogs::private(
                &config.spill_dir.clone().unwrap_or_else(std::env::temp_dir),
            )?),
            None => None,
        },
    })
}

/// The dashboard's address, when `Config::dashboard` or `RAY_RS_DASHBOARD` asks for one.
fn dashboard_addr(config: &Config) -> Option<String> {
    let from_env = std::env::var("RAY_RS_DASHBOARD")
        .ok()
        .filter(|a| !a.trim().is_empty());
    config.dashboard.clone().or(from_env)
}

pub(crate) fn init(config: Config) -> Result<()> {
    if crate::worker::in_worker() {
        return Ok(());
    }
    let mut g = lock_global();
    let me = std::thread::current().id();
    while g.driver.is_some() {
        if g.owner == Some(me) {
            return Err(Error::AlreadyInitialized);
        }
        crate::log::info!("ray::init waits for the runtime started by another thread to shut down");
        g = GLOBAL_CHANGED.wait(g).unwrap_or_else(|e| e.into_inner());
    }
    let epoch = g.epoch.checked_add(1).ok_or(Error::InvalidArgument {
        what: "ray::init".into(),
        message: "this process started 2^32 runtimes".into(),
    })?;
    let address = config.address.clone().or_else(|| {
        std::env::var("RAY_ADDRESS")
            .ok()
            .filter(|a| !a.trim().is_empty() && a.trim() != "local")
    });
    if let Some(address) = address {
        let driver = join_cluster(&config, &address, epoch)?;
        g.epoch = epoch;
        g.driver = Some(driver);
        g.owner = Some(me);
        drop(g);
        if !is_main_thread() {
            GUARD.with(|guard| *guard.borrow_mut() = Some(ThreadGuard(epoch)));
        }
        return Ok(());
    }
    let cfg = node_config(&config, NodeId(epoch))?;
    let worker_logs = cfg.worker_logs.clone();
    let inline_max = cfg.inline_max;
    let cpus = cfg.cpus;
    crate::sys::raise_fd_limit();
    let node = node_manager::start(cfg)?;
    g.epoch = epoch;
    ids::set_this_proc(ProcId::driver(NodeId(epoch)));
    node_manager::install_arena(&node, inline_max);
    let driver = Arc::new(Driver {
        node: Some(node),
        #[cfg(feature = "cluster")]
        cluster: Mutex::new(None),
        epoch,
    });
    g.driver = Some(driver.clone());
    g.owner = Some(me);
    drop(g);
    let node = driver.node.clone().expect("single-node mode");
    context::set(Some(Arc::new(DriverClient {
        node: node.clone(),
        me: ProcId::driver(NodeId(epoch)),
    })));
    if !is_main_thread() {
        GUARD.with(|guard| *guard.borrow_mut() = Some(ThreadGuard(epoch)));
    }
    let me = ProcId::driver(NodeId(epoch));
    let job = JobId::of_driver(me);
    node.run(|st| {
        st.add_job(
            job,
            std::path::PathBuf::from("/proc/self/exe"),
            crate::registry::fingerprint(),
            Some(me),
        )
    });
    if let Some(ns) = config.namespace.clone() {
        node.run(|st| st.set_namespace(ns));
    }
    let prestart = config.prestart_workers.unwrap_or(cpus.min(8));
    node.prestart(job, prestart);
    if let Err(e) = start_dashboard(&config, &node, worker_logs) {
        drop(node);
        shutdown();
        return Err(e);
    }
    Ok(())
}

/// Serves the dashboard when `Config::dashboard` or `RAY_RS_DASHBOARD` asks, printing its URL.
fn start_dashboard(
    config: &Config,
    node: &node_manager::NodeManager,
    worker_logs: Option<Arc<crate::worker_logs::WorkerLogs>>,
) -> Result<()> {
    let Some(addr) = dashboard_addr(config) else {
        return Ok(());
    };
    #[cfg(feature = "dashboard")]
    {
        let url = crate::dashboard::start_for_driver(node, addr.trim(), worker_logs)?;
        // Printed as Ray prints it: the user asked for it and needs the address.
        eprintln!("ray: View the dashboard at {url}");
        Ok(())
    }
    #[cfg(not(feature = "dashboard"))]
    {
        let _ = (node, worker_logs);
        Err(Error::InvalidArgument {
            what: format!("dashboard at {addr}"),
            message: "ray was built without its `dashboard` feature; add features = \
                      [\"dashboard\"] to the `ray` dependency (or unset RAY_RS_DASHBOARD)"
                .into(),
        })
    }
}

pub(crate) fn shutdown() {
    if crate::worker::in_worker() {
        return;
    }
    shutdown_epoch(None);
}

fn shutdown_epoch(only: Option<u32>) {
    // The runtime stays in the global slot until it has fully stopped, so a waiting `init`
    // cannot start a new one while this one is still tearing down.
    let driver = {
        let g = lock_global();
        match &g.driver {
            Some(d) if only.is_none_or(|e| e == d.epoch) => d.clone(),
            _ => return,
        }
    };
    context::set(None);
    context::mark_shut_down();
    #[cfg(feature = "dashboard")]
    crate::dashboard::clear_url();
    if let Some(node) = &driver.node {
        node.shutdown(Duration::from_secs(1));
    }
    #[cfg(feature = "cluster")]
    if let Some(mut session) = driver
        .cluster
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        session.close();
    }
    object_store::set_arena(None);
    let mut g = lock_global();
    if g.driver.as_ref().is_some_and(|d| Arc::ptr_eq(d, &driver)) {
        g.driver = None;
        g.owner = None;
    }
    drop(g);
    GLOBAL_CHANGED.notify_all();
}

/// Joins the cluster at `address` (cluster mode).
#[cfg(feature = "cluster")]
fn join_cluster(config: &Config, address: &str, epoch: u32) -> Result<Arc<Driver>> {
    if config.num_cpus.is_some() || config.num_gpus.is_some() || !config.resources.is_empty() {
        crate::log::warn!(
            "joining the cluster at {address}: the resources set in ray::Config are ignored, \
             since the cluster's nodes declare their own"
        );
    }
    let token = match &config.auth_token {
        Some(t) => t.0.clone(),
        None => std::env::var("RAY_RS_AUTH_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Cluster {
                address: address.to_string(),
                message: "no cluster token: set RAY_RS_AUTH_TOKEN (the head wrote it to \
                      <temp-dir>/auth_token) or Config::auth_token"
                    .into(),
            })?,
    };
    let session = crate::cluster_client::connect(address, &token, config.namespace.clone())?;
    ids::set_this_proc(session.proc);
    object_store::set_inline_max(object_store::DEFAULT_INLINE_MAX);
    context::set(Some(session.client.clone()));
    crate::log::info!(
        "joined the cluster at {address} as {} on {}",
        session.job,
        session.node
    );
    Ok(Arc::new(Driver {
        node: None,
        cluster: Mutex::new(Some(session)),
        epoch,
    }))
}

#[cfg(not(feature = "cluster"))]
fn join_cluster(_config: &Config, address: &str, _epoch: u32) -> Result<Arc<Driver>> {
    Err(Error::Cluster {
        address: address.to_string(),
        message: "this program was built without ray's `cluster` feature (it is on by \
                  default; enable it in Cargo.toml to join a cluster)"
            .into(),
    })
}

/// The driver's runtime, for tests and stats.
pub(crate) fn current() -> Option<Arc<Driver>> {
    lock_global().driver.clone()
}

/// The driver's client: calls straight into the node manager.
struct DriverClient {
    node: NodeManager,
    me: ProcId,
}

impl Client for DriverClient {
    fn submit_task(&self, spec: TaskSpec) {
        self.node.run(|st| st.submit_task(self.me, spec));
    }

    fn create_actor(&self, spec: ActorSpec) {
        self.node.run(|st| st.create_actor(self.me, spec));
    }

    fn submit_actor_task(&self, spec: ActorTaskSpec) {
        self.node.run(|st| st.submit_actor_task(self.me, spec));
    }

    fn put(&self, id: ObjectId, result: Result<Value>) {
        self.node.run(|st| {
            let result = match result {
                Ok(v) => match st.accept_value(self.me, &v) {
                    Ok(()) => Ok(v),
                    Err(why) => Err(Error::object_lost(id, why)),
                },
                Err(e) => Err(e),
            };
            st.put(self.me, id, result)
        });
    }

    fn get(&self, ids: &[ObjectId], timeout: Option<Duration>) -> Result<Vec<Value>> {
        self.node.get_local(ids, timeout)
    }

    fn get_async(&self, id: ObjectId) -> (Arc<Slot<Result<Value>>>, GetToken) {
        let (slot, key) = self.node.get_async(id);
        (slot, key.map(|k| k.0))
    }

    fn cancel_get(&self, _id: ObjectId, token: GetToken) {
        if let Some(t) = token {
            self.node.cancel_local(RequestKey(t));
        }
    }

    fn transfer_done(&self, ids: &[ObjectId], values: &[Value]) {
        let stored: Vec<ObjectId> = ids
            .iter()
            .zip(values)
            .filter(|(_, v)| matches!(v.data, Data::Shm { .. }))
            .map(|(id, _)| *id)
            .collect();
        if !stored.is_empty() {
            self.release(&stored);
        }
    }

    fn alloc(&self, size: u64) -> Result<u64> {
        self.node.run(|st| st.alloc(self.me, size))
    }

    fn release(&self, ids: &[ObjectId]) {
        self.node.run(|st| {
            if let Err(e) = st.release_mapped(self.me, ids) {
                crate::log::error!("the driver sent {e}");
            }
        });
    }

    fn wait(&self, ids: &[ObjectId], num_returns: usize, timeout: Option<Duration>) -> Vec<bool> {
        self.node.wait_local(ids, num_returns, timeout)
    }

    fn add_ref(&self, id: RefId) {
        self.node.run(|st| st.add_ref(self.me, id));
    }

    fn del_ref(&self, id: RefId) {
        self.node.run(|st| {
            if let Err(e) = st.del_ref(self.me, id) {
                crate::log::debug!("the driver sent {e}");
            }
        });
    }

    fn kill_actor(&self, id: ActorId) {
        self.node.run(|st| st.kill_actor(id, "killed by ray::kill"));
    }

    fn gpu_ids(&self) -> Vec<usize> {
        Vec::new()
    }

    fn job(&self) -> JobId {
        JobId::of_driver(self.me)
    }

    fn control(&self, op: Control) -> Result<ControlReply> {
        self.node.control_local(self.me, op)
    }

    fn adopt(&self, _id: RefId) {
        // The driver's references are counted by the node manager itself, one per handle.
    }
}
