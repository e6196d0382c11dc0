//! Actor names in etcd: the cluster's [`NameDirectory`], through which named actors are
//! unique across every node and found from any driver.
//!
//! `/<cluster>/names/<hex namespace>/<hex name>` holds the record the node manager encoded (an
//! actor id and its class; opaque here). A name is claimed with compare-and-swap on the key's
//! absence, so exactly one of two racing claims wins, attached to the claiming node's lease, so
//! that the names of a dead node's actors go with it; it is released only while it still holds
//! the releaser's record. Names are hex-encoded so that no namespace or name can reach another
//! key (a `/` in a name stays inside its own key).
//!
//! etcd may be down for a while (issue 11: registrations wait and resume when it returns):
//! each call is retried with backoff for up to [`WAIT_FOR_ETCD`] before the caller gets the
//! error.

use crate::etcd::Etcd;
use crate::membership::LeaseHandle;
use ray_core::__node::NameDirectory;
use std::time::{Duration, Instant};

/// How long a name operation waits for etcd to come back.
pub const WAIT_FOR_ETCD: Duration = Duration::from_secs(120);

/// Records fetched from etcd per list, at most.
const MAX_LISTED: usize = 100_000;

/// The etcd-backed directory of one node.
pub struct EtcdNames {
    etcd: Etcd,
    cluster_id: String,
    lease: LeaseHandle,
}

impl EtcdNames {
    /// The directory of `cluster_id`, whose claims go under `lease`.
    pub fn new(etcd: Etcd, cluster_id: &str, lease: LeaseHandle) -> Self {
        EtcdNames {
            etcd,
            cluster_id: cluster_id.to_string(),
            lease,
        }
    }

    fn namespace_prefix(&self, namespace: &str) -> String {
        format!("/{}/names/{}/", self.cluster_id, hex(namespace))
    }

    fn key(&self, namespace: &str, name: &str) -> String {
        format!("{}{}", self.namespace_prefix(namespace), hex(name))
    }

    /// Runs `f` until it succeeds or etcd has been unreachable for [`WAIT_FOR_ETCD`].
    fn retrying<T>(
        &self,
        what: &str,
        mut f: impl FnMut() -> crate::Result<T>,
    ) -> Result<T, String> {
        let deadline = Instant::now() + WAIT_FOR_ETCD;
        let mut pause = Duration::from_millis(50);
        loop {
            match f() {
                Ok(v) => return Ok(v),
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!("{what}: {e} (gave up after {WAIT_FOR_ETCD:?})"));
                }
                Err(e) => {
                    tracing::warn!("{what}: {e}; retrying");
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

impl NameDirectory for EtcdNames {
    fn claim(&self, namespace: &str, name: &str, record: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let key = self.key(namespace, name);
        self.retrying("claiming an actor name in etcd", || {
            loop {
                if self
                    .etcd
                    .create_if_absent(key.as_bytes(), record, self.lease.id())?
                {
                    return Ok(None);
                }
                // Taken: by whom (unless it was released meanwhile: then claim again).
                if let Some(kv) = self.etcd.get(key.as_bytes())? {
                    return Ok(Some(kv.value));
                }
            }
        })
    }

    fn lookup(&self, namespace: &str, name: &str) -> Result<Option<Vec<u8>>, String> {
        let key = self.key(namespace, name);
        self.retrying("looking up an actor name in etcd", || {
            Ok(self.etcd.get(key.as_bytes())?.map(|kv| kv.value))
        })
    }

    fn release(&self, namespace: &str, name: &str, record: &[u8]) -> Result<(), String> {
        let key = self.key(namespace, name);
        self.retrying("releasing an actor name in etcd", || {
            self.etcd
                .delete_if_value(key.as_bytes(), record)
                .map(|_| ())
        })
    }

    fn list(&self, namespace: &str) -> Result<Vec<Vec<u8>>, String> {
        let prefix = self.namespace_prefix(namespace);
        self.retrying("listing actor names in etcd", || {
            let (kvs, _) = self.etcd.get_prefix(prefix.as_bytes())?;
            Ok(kvs
                .into_iter()
                .take(MAX_LISTED)
                .map(|kv| kv.value)
                .collect())
        })
    }
}
