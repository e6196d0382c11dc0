//! Summaries of the state API's rows (Ray's `ray summary tasks|actors|objects`).

use super::*;

/// Tasks counted by name and state (Ray's `ray summary tasks`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TaskSummary {
    /// For each function or `Class.method`, how many are in each state.
    pub by_name: BTreeMap<String, BTreeMap<TaskStatus, usize>>,
    /// Tasks counted in all.
    pub total: usize,
}

/// Counts tasks (live, and finished ones still in the ring) by name and state.
pub fn summarize_tasks() -> Result<TaskSummary> {
    let rows = tasks(&ListOptions::new().limit(usize::MAX))?;
    Ok(summarize_task_rows(&rows))
}

/// Counts `rows` by name and state.
pub fn summarize_task_rows(rows: &[TaskRow]) -> TaskSummary {
    let mut s = TaskSummary::default();
    for r in rows {
        *s.by_name
            .entry(r.name.clone())
            .or_default()
            .entry(r.state)
            .or_default() += 1;
        s.total += 1;
    }
    s
}

/// Actors counted by class and state (Ray's `ray summary actors`).
pub fn summarize_actors() -> Result<BTreeMap<String, BTreeMap<String, usize>>> {
    let rows = actors(&ListOptions::new().limit(usize::MAX))?;
    Ok(summarize_actor_rows(&rows))
}

/// Counts `rows` by class and state.
pub fn summarize_actor_rows(rows: &[ActorRow]) -> BTreeMap<String, BTreeMap<String, usize>> {
    let mut s: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for r in rows {
        *s.entry(r.class_name.clone())
            .or_default()
            .entry(r.state.clone())
            .or_default() += 1;
    }
    s
}

/// Objects counted and sized by state and location (Ray's `ray summary objects`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ObjectSummary {
    /// Objects in all.
    pub total: usize,
    /// Their bytes in all (made ones).
    pub total_bytes: u64,
    /// Count and bytes by state (`READY`, `PENDING`, `SPILLED`, `FAILED`).
    pub by_state: BTreeMap<String, (usize, u64)>,
    /// Count and bytes by location (`inline`, `store`, `spilled`, `node N`).
    pub by_location: BTreeMap<String, (usize, u64)>,
}

/// Counts the objects of the directory by state and location.
pub fn summarize_objects() -> Result<ObjectSummary> {
    let rows = objects(&ListOptions::new().limit(usize::MAX))?;
    Ok(summarize_object_rows(&rows))
}

/// Counts `rows` by state and location.
pub fn summarize_object_rows(rows: &[ObjectRow]) -> ObjectSummary {
    let mut s = ObjectSummary::default();
    for r in rows {
        let n = r.size_bytes.unwrap_or(0);
        s.total += 1;
        s.total_bytes += n;
        let e = s.by_state.entry(r.state.clone()).or_default();
        e.0 += 1;
        e.1 += n;
        let e = s.by_location.entry(r.location.clone()).or_default();
        e.0 += 1;
        e.1 += n;
    }
    s
}
