//! Jobs in etcd: each driver attached to a node is recorded under `/<cluster>/jobs/<id>` when
//! it attaches (claimed with compare-and-swap, so an id is recorded once) and marked finished
//! when it goes (compare-and-swap on the record read, so a concurrent writer is never
//! overwritten). Records outlive their node, for `ray-rs status`; a job still marked running
//! whose node is gone shows as failed.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::etcd::Etcd;

/// A job as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// `node.index`, unique in the cluster.
    pub id: String,
    /// The driver's program name.
    pub name: String,
    /// The node its driver attached to.
    pub node_id: u64,
    /// The driver's pid on its machine.
    pub driver_pid: u32,
    /// When it started, milliseconds since the Unix epoch.
    pub start_time_ms: u64,
    /// When its driver went, if it has.
    pub end_time_ms: Option<u64>,
}

fn encode(job: &JobRecord) -> Vec<u8> {
    // Strings and numbers only: serializing cannot fail.
    serde_json::to_vec(job).unwrap_or_default()
}

/// `/<cluster>/jobs/`.
pub fn jobs_prefix(cluster_id: &str) -> String {
    format!("/{cluster_id}/jobs/")
}

fn job_key(cluster_id: &str, id: &str) -> String {
    format!("{}{id}", jobs_prefix(cluster_id))
}

/// Records a job that started. False if a record of that id exists already.
pub fn record_start(etcd: &Etcd, cluster_id: &str, job: &JobRecord) -> Result<bool> {
    etcd.create_if_absent(job_key(cluster_id, &job.id).as_bytes(), &encode(job), 0)
}

/// Marks job `id` finished at `end_time_ms` (unless another writer changed it meanwhile:
/// then it is read again and retried a few times).
pub fn record_end(etcd: &Etcd, cluster_id: &str, id: &str, end_time_ms: u64) -> Result<()> {
    let key = job_key(cluster_id, id);
    for _ in 0..5 {
        let Some(kv) = etcd.get(key.as_bytes())? else {
            return Ok(());
        };
        let Ok(mut job) = serde_json::from_slice::<JobRecord>(&kv.value) else {
            return Ok(());
        };
        if job.end_time_ms.is_some() {
            return Ok(());
        }
        job.end_time_ms = Some(end_time_ms);
        if etcd.compare_and_swap(key.as_bytes(), kv.mod_revision, &encode(&job), 0)? {
            return Ok(());
        }
    }
    Ok(())
}

/// Every recorded job, oldest first.
pub fn list(etcd: &Etcd, cluster_id: &str) -> Result<Vec<JobRecord>> {
    let (kvs, _) = etcd.get_prefix(jobs_prefix(cluster_id).as_bytes())?;
    let mut jobs: Vec<JobRecord> = kvs
        .iter()
        .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
        .collect();
    jobs.sort_by_key(|j| (j.start_time_ms, j.node_id));
    Ok(jobs)
}
