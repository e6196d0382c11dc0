//! The driver side: `ray::init` starts a node manager in this process, a socket for workers,
//! and a thread that starts worker processes; `ray::shutdown` stops them.
//!
//! One runtime is active per process at a time. `init` on another thread while one is active
//! waits for it to shut down (so the tests of one test binary, each calling `init`, take turns);
//! a runtime started on a thread other than `main` shuts down when that thread ends, so a test
//! that panics does not leave it running.

use crate::codec::{Data, Value};
use crate::config::Config;
use crate::context::{self, Client};
use crate::error::{Error, Result};
use crate::head::spawn::{SpawnerConfig, spawner_main};
use crate::head::store::Store;
use crate::head::{DRIVER_PROC, Head, HeadShared};
use crate::ids::{ActorId, ObjectId, RefId};
use crate::object_store::{self, Arena};
use crate::protocol::{ActorSpec, ActorTaskSpec, TaskSpec, ToHead};
use crate::resources::{Amount, NodeResources};
use crate::slot::Slot;
use crate::transport::{self, Outbox};
use std::cell::RefCell;
use std::io::Read;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;

pub(crate) struct Driver {
    pub(crate) head: Arc<Head>,
    rt: Mutex<Option<tokio::runtime::Runtime>>,
    spawner: Mutex<Option<JoinHandle<()>>>,
    epoch: u64,
}

struct Global {
    driver: Option<Arc<Driver>>,
    owner: Option<ThreadId>,
    epoch: u64,
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
struct ThreadGuard(u64);

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

fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok()
    {
        return u64::from_le_bytes(buf);
    }
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}

/// CPUs, GPUs and custom resources of the node.
type NodeShape = (usize, usize, Vec<(String, Amount)>);

fn validate(config: &Config) -> Result<NodeShape> {
    let cpus = config.num_cpus.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let gpus = config.num_gpus.unwrap_or(0);
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
    Ok((cpus, gpus, custom))
}

pub(crate) fn init(config: Config) -> Result<()> {
    if crate::worker::in_worker() {
        return Ok(());
    }
    let (cpus, gpus, custom) = validate(&config)?;
    let mut g = lock_global();
    let me = std::thread::current().id();
    while g.driver.is_some() {
        if g.owner == Some(me) {
            return Err(Error::AlreadyInitialized);
        }
        tracing::info!("ray::init waits for the runtime started by another thread to shut down");
        g = GLOBAL_CHANGED.wait(g).unwrap_or_else(|e| e.into_inner());
    }
    g.epoch += 1;
    let epoch = g.epoch;
    let driver = start(&config, cpus, gpus, custom, epoch)?;
    g.driver = Some(driver.clone());
    g.owner = Some(me);
    drop(g);
    context::set(Some(Arc::new(DriverClient {
        head: driver.head.clone(),
    })));
    if !is_main_thread() {
        GUARD.with(|guard| *guard.borrow_mut() = Some(ThreadGuard(epoch)));
    }
    let prestart = config.prestart_workers.unwrap_or(cpus.min(8));
    driver.head.prestart(prestart);
    Ok(())
}

fn start(
    config: &Config,
    cpus: usize,
    gpus: usize,
    custom: Vec<(String, Amount)>,
    epoch: u64,
) -> Result<Arc<Driver>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("ray-node-manager")
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the node manager's runtime", e))?;
    let token = random_u64();
    let socket = format!("ray-rs/{}/{epoch}/{token:016x}", std::process::id());
    let listener = transport::bind_abstract(&socket)?;
    tracing::debug!("node manager listening on @{socket}");
    let (spawn_tx, spawn_rx) = std::sync::mpsc::channel();
    let shared = Arc::new(HeadShared {
        socket,
        token,
        fingerprint: crate::registry::fingerprint(),
        max_idle_workers: config.max_idle_workers.unwrap_or(cpus).max(1),
        gpu_detector: config.gpu_detector,
        rt: rt.handle().clone(),
        spawn_tx: Mutex::new(Some(spawn_tx)),
    });
    let capacity = config
        .object_store_memory
        .unwrap_or_else(object_store::default_capacity);
    let arena = Arc::new(Arena::create(capacity)?);
    let spill_root = config.spill_dir.clone().unwrap_or_else(std::env::temp_dir);
    remove_stale_spill_dirs(&spill_root);
    let spill_dir = spill_root.join(format!("ray-rs-spill-{}-{epoch}", std::process::id()));
    let inline_max = config
        .max_inline_object_size
        .unwrap_or(object_store::DEFAULT_INLINE_MAX);
    object_store::set_inline_max(inline_max);
    object_store::set_arena(Some(arena.clone()));
    let store = Store::new(arena.clone(), spill_dir);
    let mut resources = NodeResources::new(cpus, gpus, &custom);
    if config.num_gpus.is_none() && config.gpu_detector.is_some() {
        resources = resources.gpus_unknown();
    }
    let head = Head::new(resources, store, shared);
    let listener = {
        let _enter = rt.enter();
        tokio::net::UnixListener::from_std(listener)
            .map_err(|e| Error::io("listening for workers", e))?
    };
    let accept_head = head.clone();
    rt.spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(serve(accept_head.clone(), stream));
                }
                Err(e) => {
                    tracing::error!("accepting a worker connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    });
    let spawner_cfg = SpawnerConfig {
        exe: std::path::PathBuf::from("/proc/self/exe"),
        socket: head.shared.socket.clone(),
        token,
        log_to_driver: config.log_to_driver,
        store_fd: arena.raw_fd(),
        store_size: arena.capacity(),
        inline_max,
    };
    let weak = Arc::downgrade(&head);
    let handle = rt.handle().clone();
    let spawner = std::thread::Builder::new()
        .name("ray-spawner".into())
        .spawn(move || spawner_main(spawn_rx, weak, handle, spawner_cfg))
        .map_err(|e| Error::io("starting the spawner thread", e))?;
    Ok(Arc::new(Driver {
        head,
        rt: Mutex::new(Some(rt)),
        spawner: Mutex::new(Some(spawner)),
        epoch,
    }))
}

/// Serves one worker connection: registration, then its messages until it closes.
async fn serve(head: Arc<Head>, stream: tokio::net::UnixStream) {
    // A second handle on the socket lets senders write small frames directly (see `Outbox`).
    let Ok(std_stream) = stream.into_std() else {
        return;
    };
    let Ok(direct) = std_stream.try_clone() else {
        return;
    };
    let Ok(stream) = tokio::net::UnixStream::from_std(std_stream) else {
        return;
    };
    let (rd, wr) = stream.into_split();
    let mut rd = tokio::io::BufReader::with_capacity(64 * 1024, rd);
    let mut buf = Vec::new();
    let Ok(Some(())) = transport::read_frame_async(&mut rd, &mut buf).await else {
        return;
    };
    let Ok(ToHead::Register {
        proc,
        pid,
        token,
        fingerprint,
    }) = transport::decode_frame::<ToHead>(&buf)
    else {
        tracing::warn!("a connection did not start with Register");
        return;
    };
    let outbox = Outbox::new(direct);
    tokio::spawn(outbox.clone().run_writer(wr));
    if !head.register(proc, pid, token, fingerprint, outbox) {
        return;
    }
    while let Ok(Some(())) = transport::read_frame_async(&mut rd, &mut buf).await {
        match transport::decode_frame::<ToHead>(&buf) {
            Ok(msg) => head.handle(proc, msg),
            Err(e) => {
                tracing::error!("bad message from worker {proc}: {e}");
                break;
            }
        }
    }
    head.disconnected(proc);
}

/// Removes spill directories left by drivers that were killed (their pid is gone).
fn remove_stale_spill_dirs(root: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("ray-rs-spill-") else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Driver {
    fn stop(&self) {
        self.head.shutdown(Duration::from_secs(1));
        self.head.lock().store.remove_spill_dir();
        self.head
            .shared
            .spawn_tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(t) = self
            .spawner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = t.join();
        }
        if let Some(rt) = self.rt.lock().unwrap_or_else(|e| e.into_inner()).take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

pub(crate) fn shutdown() {
    if crate::worker::in_worker() {
        return;
    }
    shutdown_epoch(None);
}

fn shutdown_epoch(only: Option<u64>) {
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
    driver.stop();
    object_store::set_arena(None);
    let mut g = lock_global();
    if g.driver.as_ref().is_some_and(|d| Arc::ptr_eq(d, &driver)) {
        g.driver = None;
        g.owner = None;
    }
    drop(g);
    GLOBAL_CHANGED.notify_all();
}

/// The driver's runtime, for tests and stats.
pub(crate) fn current() -> Option<Arc<Driver>> {
    lock_global().driver.clone()
}

/// The driver's client: calls straight into the node manager.
struct DriverClient {
    head: Arc<Head>,
}

impl Client for DriverClient {
    fn submit_task(&self, spec: TaskSpec) {
        self.head.lock().submit_task(DRIVER_PROC, spec);
    }

    fn create_actor(&self, spec: ActorSpec) {
        self.head.lock().create_actor(DRIVER_PROC, spec);
    }

    fn submit_actor_task(&self, spec: ActorTaskSpec) {
        self.head.lock().submit_actor_task(DRIVER_PROC, spec);
    }

    fn put(&self, id: ObjectId, result: Result<Value>) {
        self.head.lock().put(DRIVER_PROC, id, result);
    }

    fn get(&self, ids: &[ObjectId], timeout: Option<Duration>) -> Result<Vec<Value>> {
        self.head.get_local(ids, timeout)
    }

    fn get_async(&self, id: ObjectId) -> (Arc<Slot<Result<Value>>>, u64) {
        self.head.get_async(id)
    }

    fn cancel_get(&self, _id: ObjectId, token: u64) {
        self.head.cancel_local(token);
    }

    fn transfer_done(&self, ids: &[ObjectId], values: &[Value]) {
        let stored: Vec<ObjectId> = ids
            .iter()
            .zip(values)
            .filter(|(_, v)| matches!(v.data, Data::Shm { .. }))
            .map(|(id, _)| *id)
            .collect();
        if !stored.is_empty() {
            self.head.lock().release_mapped(DRIVER_PROC, &stored);
        }
    }

    fn alloc(&self, size: u64) -> Result<u64> {
        self.head.lock().alloc(DRIVER_PROC, size)
    }

    fn release(&self, ids: &[ObjectId]) {
        self.head.lock().release_mapped(DRIVER_PROC, ids);
    }

    fn wait(&self, ids: &[ObjectId], num_returns: usize, timeout: Option<Duration>) -> Vec<bool> {
        self.head.wait_local(ids, num_returns, timeout)
    }

    fn add_ref(&self, id: RefId) {
        self.head.lock().add_ref(DRIVER_PROC, id);
    }

    fn del_ref(&self, id: RefId) {
        self.head.lock().del_ref(DRIVER_PROC, id);
    }

    fn kill_actor(&self, id: ActorId) {
        self.head.lock().kill_actor(id, "killed by ray::kill");
    }

    fn gpu_ids(&self) -> Vec<usize> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ToWorker;
    use std::io::BufReader;

    fn handshake(fingerprint: u64, token: u64) -> ToWorker {
        let d = current().expect("running");
        let stream = transport::connect_abstract(&d.head.shared.socket).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let sender = transport::BlockingSender::new(stream);
        sender
            .send(&ToHead::Register {
                proc: 999_999,
                pid: 1,
                token,
                fingerprint,
            })
            .unwrap();
        let mut buf = Vec::new();
        transport::read_frame(&mut reader, &mut buf)
            .unwrap()
            .unwrap();
        transport::decode_frame(&buf).unwrap()
    }

    #[test]
    fn a_worker_from_another_build_or_with_a_wrong_token_is_refused() {
        init(Config::default().num_cpus(1).prestart_workers(0)).unwrap();
        let token = current().unwrap().head.shared.token;
        let fingerprint = crate::registry::fingerprint();
        match handshake(fingerprint ^ 1, token) {
            ToWorker::Refused { reason } => {
                assert!(reason.contains("different build"), "{reason}");
                assert!(reason.contains(&format!("{fingerprint:016x}")), "{reason}");
            }
            other => panic!("expected Refused, got {other:?}"),
        }
        match handshake(fingerprint, token ^ 1) {
            ToWorker::Refused { reason } => assert!(reason.contains("token"), "{reason}"),
            other => panic!("expected Refused, got {other:?}"),
        }
        shutdown();
    }
}
