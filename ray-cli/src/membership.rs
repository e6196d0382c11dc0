//! Cluster membership in etcd.
//!
//! Keys (all under the cluster id):
//! - `/<cluster>/nodes/<node-id>`: a [`NodeRecord`] (JSON) attached to the node's lease, so it
//!   disappears when the node stops renewing it (dies, hangs, is cut off);
//! - `/<cluster>/counters/node_id`: the node id counter, incremented by compare-and-swap, so ids
//!   are unique without other coordination;
//! - `/<cluster>/head`: the head's address, claimed once (create-if-absent).
//!
//! A [`Membership`] keeps its lease alive from a dedicated OS thread, re-registering as a new
//! incarnation if the lease was lost, and publishes resource availability through a
//! [`ResourcePublisher`] at most about once a second.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{CliError, Result};
use crate::etcd::{Etcd, WatchEvent, Watcher};

/// Resources by name (`CPU`, `GPU`, custom), as amounts.
pub type Resources = BTreeMap<String, f64>;

/// What a node publishes about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Unique in the cluster, from the etcd counter.
    pub node_id: u64,
    /// `ip:port` of its listener.
    pub address: String,
    /// Whether it is the head.
    pub is_head: bool,
    /// Its resources.
    pub resources_total: Resources,
    /// Resources not in use, as last published.
    pub resources_available: Resources,
    /// 1 at first registration; +1 each time it re-registers after losing its lease.
    pub incarnation: u64,
    /// When the node started, milliseconds since the Unix epoch.
    pub start_time_ms: u64,
    /// The daemon's pid on its machine.
    pub pid: u32,
    /// What runs there, as last published.
    #[serde(default)]
    pub activity: NodeActivity,
}

/// What runs on a node, published with its availability (at most about once a second).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeActivity {
    /// Worker processes.
    pub workers: u64,
    /// Live actors, by class.
    pub actors: BTreeMap<String, u64>,
    /// Bytes of objects copied to this node from others.
    pub bytes_pulled: u64,
    /// Bytes of objects copied from this node to others.
    pub bytes_served: u64,
    /// Resources in use here by tasks other nodes sent, by the sending node's id: each sender
    /// tells its own running work from others' in this publication.
    #[serde(default)]
    pub in_use_by: BTreeMap<u64, Resources>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `/<cluster>/nodes/`.
pub fn nodes_prefix(cluster_id: &str) -> String {
    format!("/{cluster_id}/nodes/")
}

/// `/<cluster>/nodes/<node-id>`.
pub fn node_key(cluster_id: &str, node_id: u64) -> String {
    format!("/{cluster_id}/nodes/{node_id}")
}

/// How long a joining node waits for an unreachable etcd (issue 11: joins wait through an
/// outage and resume when etcd returns), under `start`'s own wait for the node.
pub const JOIN_WAIT_FOR_ETCD: Duration = Duration::from_secs(90);

/// Runs `f` until it succeeds, retrying etcd's errors (and failures to reach it) with backoff
/// for up to `wait`.
pub fn waiting_for_etcd<T>(
    what: &str,
    wait: Duration,
    mut f: impl FnMut() -> Result<T>,
) -> Result<T> {
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(100);
    loop {
        match f() {
            Err(e @ (CliError::Etcd { .. } | CliError::Http { .. }))
                if Instant::now() < deadline =>
            {
                tracing::warn!("{what}: {e}; waiting for etcd");
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

/// A fresh node id for `cluster_id` (compare-and-swap counter).
pub fn allocate_node_id(etcd: &Etcd, cluster_id: &str) -> Result<u64> {
    etcd.increment(format!("/{cluster_id}/counters/node_id").as_bytes())
}

/// The nodes registered now (alive: their lease is current) and the store revision read at.
pub fn list_nodes(etcd: &Etcd, cluster_id: &str) -> Result<(Vec<NodeRecord>, i64)> {
    let (kvs, revision) = etcd.get_prefix(nodes_prefix(cluster_id).as_bytes())?;
    let mut nodes = Vec::with_capacity(kvs.len());
    for kv in kvs {
        match serde_json::from_slice::<NodeRecord>(&kv.value) {
            Ok(n) => nodes.push(n),
            Err(e) => tracing::warn!(
                "ignoring malformed node record {}: {e}",
                String::from_utf8_lossy(&kv.key)
            ),
        }
    }
    nodes.sort_by_key(|n| n.node_id);
    Ok((nodes, revision))
}

/// A change of membership.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeEvent {
    /// A node registered or updated its record.
    Up(NodeRecord),
    /// A node's record went away (stopped, or lease expired: dead).
    Down {
        /// Its id.
        node_id: u64,
    },
    /// Events were missed (compaction); re-read with [`list_nodes`].
    Resync,
}

/// Turns a raw watch event on the nodes prefix into a [`NodeEvent`].
pub fn node_event(cluster_id: &str, event: WatchEvent) -> Option<NodeEvent> {
    let prefix = nodes_prefix(cluster_id);
    let id_of = |key: &[u8]| -> Option<u64> {
        std::str::from_utf8(key)
            .ok()?
            .strip_prefix(&prefix)?
            .parse()
            .ok()
    };
    match event {
        WatchEvent::Put(kv) => serde_json::from_slice(&kv.value).ok().map(NodeEvent::Up),
        WatchEvent::Delete { key, .. } => id_of(&key).map(|node_id| NodeEvent::Down { node_id }),
        WatchEvent::Compacted { .. } => Some(NodeEvent::Resync),
    }
}

/// Watches node changes from `from_revision` (use the revision of [`list_nodes`] + 1).
pub fn watch_nodes(etcd: &Etcd, cluster_id: &str, from_revision: i64) -> Watcher {
    etcd.watch_prefix(nodes_prefix(cluster_id).as_bytes(), from_revision)
}

struct Shared {
    etcd: Etcd,
    key: String,
    record: Mutex<NodeRecord>,
    lease: AtomicI64,
    ttl: Duration,
    /// Latest availability not yet published, and the stop flag.
    pending: Mutex<(Option<(Resources, NodeActivity)>, bool)>,
    /// Called with the next incarnation when etcd says the lease expired (this node was
    /// declared dead); without one, the node re-registers in place.
    on_lease_lost: Mutex<Option<LeaseLost>>,
    wake: Condvar,
}

impl Shared {
    fn record_json(&self) -> Vec<u8> {
        let record = self.record.lock().unwrap_or_else(|e| e.into_inner());
        serde_json::to_vec(&*record).expect("a NodeRecord always serializes")
    }

    fn stopped(&self) -> bool {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).1
    }

    /// Waits up to `d` or until stopped; returns whether stopped.
    fn sleep(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut guard = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        while !guard.1 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            guard = self
                .wake
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

/// What to do when this node's lease expired.
type LeaseLost = Box<dyn Fn(u64) + Send + Sync>;

/// Reads this node's current lease id.
#[derive(Clone)]
pub struct LeaseHandle {
    shared: Arc<Shared>,
}

impl LeaseHandle {
    /// The lease id now.
    pub fn id(&self) -> i64 {
        self.shared.lease.load(Ordering::SeqCst)
    }
}

/// This node's registration: its lease, kept alive, and its record.
pub struct Membership {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("key", &self.shared.key)
            .finish()
    }
}

/// Publishes this node's available resources and activity (the node manager calls
/// [`ResourcePublisher::publish`] as often as it likes; at most about one write a second
/// reaches etcd, the latest value wins).
#[derive(Clone)]
pub struct ResourcePublisher {
    shared: Arc<Shared>,
}

impl ResourcePublisher {
    /// Records `available` and `activity` to be published (never blocks on etcd).
    pub fn publish(&self, available: Resources, activity: NodeActivity) {
        let mut pending = self
            .shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        pending.0 = Some((available, activity));
        self.shared.wake.notify_all();
    }
}

impl Membership {
    /// Registers `record` (its `node_id` already allocated) under a new lease of `ttl`, and
    /// starts the keep-alive and publisher threads.
    pub fn register(
        etcd: Etcd,
        cluster_id: &str,
        record: NodeRecord,
        ttl: Duration,
    ) -> Result<Self> {
        let ttl_s = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let lease = etcd.lease_grant(ttl_s)?;
        let key = node_key(cluster_id, record.node_id);
        let shared = Arc::new(Shared {
            etcd,
            key,
            record: Mutex::new(record),
            lease: AtomicI64::new(lease.id),
            ttl: Duration::from_secs(u64::try_from(lease.ttl.max(1)).unwrap_or(1)),
            pending: Mutex::new((None, false)),
            wake: Condvar::new(),
            on_lease_lost: Mutex::new(None),
        });
        shared
            .etcd
            .put(shared.key.as_bytes(), &shared.record_json(), lease.id)?;
        let mut threads = Vec::new();
        let s = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("node-lease".into())
                .spawn(move || keep_alive_loop(&s))
                .map_err(|e| CliError::io("spawning the lease thread", e))?,
        );
        let s = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("node-resources".into())
                .spawn(move || publish_loop(&s))
                .map_err(|e| CliError::io("spawning the resource publisher", e))?,
        );
        Ok(Membership { shared, threads })
    }

    /// The node's id.
    pub fn node_id(&self) -> u64 {
        self.record().node_id
    }

    /// The node's record as last written.
    pub fn record(&self) -> NodeRecord {
        self.shared
            .record
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The current lease id.
    pub fn lease_id(&self) -> i64 {
        self.shared.lease.load(Ordering::SeqCst)
    }

    /// The lease as it is now and after any re-registration (for keys that must go with the
    /// node, such as its actors' names).
    pub fn lease(&self) -> LeaseHandle {
        LeaseHandle {
            shared: self.shared.clone(),
        }
    }

    /// Calls `f` with the next incarnation, from the lease thread, when etcd says this
    /// node's lease expired (it was declared dead while paused or cut off).
    pub fn on_lease_lost(&self, f: impl Fn(u64) + Send + Sync + 'static) {
        *self
            .shared
            .on_lease_lost
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Box::new(f));
    }

    /// A handle for publishing resource availability.
    pub fn publisher(&self) -> ResourcePublisher {
        ResourcePublisher {
            shared: self.shared.clone(),
        }
    }

    /// Stops the threads and revokes the lease, which deletes the node's record at once.
    pub fn shutdown(mut self) {
        self.stop_threads();
        let lease = self.lease_id();
        if let Err(e) = self.shared.etcd.lease_revoke(lease) {
            tracing::warn!("revoking the node's lease: {e}");
        }
    }

    fn stop_threads(&mut self) {
        {
            let mut pending = self
                .shared
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            pending.1 = true;
            self.shared.wake.notify_all();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

fn keep_alive_loop(s: &Shared) {
    let period = (s.ttl / 3).max(Duration::from_millis(300));
    let mut wait = period;
    loop {
        if s.sleep(wait) {
            return;
        }
        let lease = s.lease.load(Ordering::SeqCst);
        match s.etcd.lease_keep_alive(lease) {
            Ok(Some(_)) => wait = period,
            Ok(None) => {
                // The lease expired: this node was declared dead. Re-register as a new
                // incarnation (the node manager must treat its old work as lost).
                let incarnation = {
                    let mut r = s.record.lock().unwrap_or_else(|e| e.into_inner());
                    r.incarnation = r.incarnation.saturating_add(1);
                    r.incarnation
                };
                if let Some(f) = &*s.on_lease_lost.lock().unwrap_or_else(|e| e.into_inner()) {
                    f(incarnation);
                }
                tracing::warn!("node lease expired; re-registering as incarnation {incarnation}");
                let ttl_s = i64::try_from(s.ttl.as_secs().max(1)).unwrap_or(i64::MAX);
                match s.etcd.lease_grant(ttl_s) {
                    Ok(new) => {
                        s.lease.store(new.id, Ordering::SeqCst);
                        if let Err(e) = s.etcd.put(s.key.as_bytes(), &s.record_json(), new.id) {
                            tracing::warn!("re-registering the node: {e}");
                        }
                        wait = period;
                    }
                    Err(e) => {
                        tracing::warn!("granting a new lease: {e}");
                        wait = Duration::from_millis(500);
                    }
                }
            }
            Err(e) => {
                tracing::warn!("renewing the node lease: {e}");
                wait = Duration::from_millis(500).min(period);
            }
        }
    }
}

fn publish_loop(s: &Shared) {
    const MIN_INTERVAL: Duration = Duration::from_secs(1);
    let mut last = Instant::now() - MIN_INTERVAL;
    loop {
        let available = {
            let mut pending = s.pending.lock().unwrap_or_else(|e| e.into_inner());
            while pending.0.is_none() && !pending.1 {
                pending = s.wake.wait(pending).unwrap_or_else(|e| e.into_inner());
            }
            if pending.1 {
                return;
            }
            pending.0.take()
        };
        let Some((available, activity)) = available else {
            continue;
        };
        {
            let mut r = s.record.lock().unwrap_or_else(|e| e.into_inner());
            r.resources_available = available;
            r.activity = activity;
        }
        let since = last.elapsed();
        if since < MIN_INTERVAL && s.sleep(MIN_INTERVAL - since) {
            return;
        }
        // Take anything newer that arrived while waiting.
        if let Some((available, activity)) =
            s.pending.lock().unwrap_or_else(|e| e.into_inner()).0.take()
        {
            let mut r = s.record.lock().unwrap_or_else(|e| e.into_inner());
            r.resources_available = available;
            r.activity = activity;
        }
        let lease = s.lease.load(Ordering::SeqCst);
        if let Err(e) = s.etcd.put(s.key.as_bytes(), &s.record_json(), lease) {
            tracing::warn!("publishing available resources: {e}");
        }
        last = Instant::now();
        if s.stopped() {
            return;
        }
    }
}
