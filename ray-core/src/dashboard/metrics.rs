//! Prometheus text (format 0.0.4) of one node manager, with Ray's metric names where Ray has
//! them: `ray_tasks` and `ray_actors` by state, `ray_object_store_memory`, `ray_resources` by
//! state, and the machine's CPU and memory.

use super::all;
use crate::node_manager::NodeManager;
use crate::state::{self, StateKind, StateRows};
use std::fmt::Write as _;
use std::sync::Mutex;

/// Prometheus text format (version 0.0.4), with Ray's metric names where Ray has them.
pub(crate) fn metrics(node: &NodeManager) -> String {
    let StateRows::Tasks(tasks) = all(node, StateKind::Tasks) else {
        unreachable!()
    };
    let StateRows::Actors(actors) = all(node, StateKind::Actors) else {
        unreachable!()
    };
    let StateRows::Nodes(nodes) = all(node, StateKind::Nodes) else {
        unreachable!()
    };
    let (finished_total, failed_total, node_id) = {
        let st = node.lock();
        (
            st.events.finished_total,
            st.events.failed_total,
            st.node.as_u32(),
        )
    };
    let mut out = String::new();
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    family(
        &mut out,
        "ray_tasks",
        "gauge",
        "Tasks and actor calls by state and name (finished ones: those still kept).",
    );
    let summary = state::summarize_task_rows(&tasks);
    for (name, states) in &summary.by_name {
        for (s, n) in states {
            let _ = writeln!(
                out,
                "ray_tasks{{State=\"{s}\",Name={},NodeId=\"{node_id}\"}} {n}",
                label(name)
            );
        }
    }
    family(
        &mut out,
        "ray_tasks_finished_total",
        "counter",
        "Tasks and actor calls that finished since the node started.",
    );
    let _ = writeln!(
        out,
        "ray_tasks_finished_total{{NodeId=\"{node_id}\"}} {finished_total}"
    );
    family(
        &mut out,
        "ray_tasks_failed_total",
        "counter",
        "Tasks and actor calls that failed since the node started.",
    );
    let _ = writeln!(
        out,
        "ray_tasks_failed_total{{NodeId=\"{node_id}\"}} {failed_total}"
    );
    family(&mut out, "ray_actors", "gauge", "Actors by state.");
    let mut by_state: std::collections::BTreeMap<&str, usize> = Default::default();
    for a in &actors {
        *by_state.entry(a.state.as_str()).or_default() += 1;
    }
    for (s, n) in by_state {
        let _ = writeln!(out, "ray_actors{{State=\"{s}\",NodeId=\"{node_id}\"}} {n}");
    }
    // Each family's samples follow its own HELP and TYPE (the format wants them together).
    let own: Vec<_> = nodes.iter().filter(|n| n.is_head).collect();
    family(
        &mut out,
        "ray_object_store_memory",
        "gauge",
        "Bytes of the node's shared-memory object store in use.",
    );
    for n in &own {
        let _ = writeln!(
            out,
            "ray_object_store_memory{{Location=\"MMAP_SHM\",NodeId=\"{}\"}} {}",
            n.node_id, n.object_store_used_bytes
        );
    }
    family(
        &mut out,
        "ray_object_store_available_memory",
        "gauge",
        "Bytes of the node's object store free.",
    );
    for n in &own {
        let _ = writeln!(
            out,
            "ray_object_store_available_memory{{NodeId=\"{}\"}} {}",
            n.node_id,
            n.object_store_capacity_bytes
                .saturating_sub(n.object_store_used_bytes)
        );
    }
    family(
        &mut out,
        "ray_resources",
        "gauge",
        "Logical resources by name and state (USED or AVAILABLE; their sum is the total).",
    );
    for n in &own {
        for (r, total) in &n.resources_total {
            let free = n.resources_available.get(r).copied().unwrap_or(0.0);
            for (state, v) in [("USED", total - free), ("AVAILABLE", free)] {
                let _ = writeln!(
                    out,
                    "ray_resources{{Name={},State=\"{state}\",NodeId=\"{}\"}} {v}",
                    label(r),
                    n.node_id,
                );
            }
        }
    }
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    family(
        &mut out,
        "ray_node_cpu_count",
        "gauge",
        "CPUs of the machine.",
    );
    let _ = writeln!(out, "ray_node_cpu_count{{NodeId=\"{node_id}\"}} {cpus}");
    if let Some(percent) = cpu_utilization() {
        family(
            &mut out,
            "ray_node_cpu_utilization",
            "gauge",
            "CPU use of the machine in percent, since the previous scrape (since boot at first).",
        );
        let _ = writeln!(
            out,
            "ray_node_cpu_utilization{{NodeId=\"{node_id}\"}} {percent:.2}"
        );
    }
    if let Some((total, avail)) = meminfo() {
        family(
            &mut out,
            "ray_node_mem_total",
            "gauge",
            "Memory of the machine in bytes.",
        );
        let _ = writeln!(out, "ray_node_mem_total{{NodeId=\"{node_id}\"}} {total}");
        family(
            &mut out,
            "ray_node_mem_used",
            "gauge",
            "Memory of the machine in use, in bytes.",
        );
        let _ = writeln!(
            out,
            "ray_node_mem_used{{NodeId=\"{node_id}\"}} {}",
            total.saturating_sub(avail)
        );
    }
    out
}

/// The machine's busy share of CPU time in percent since the previous call (since boot at the
/// first), from the `cpu` line of /proc/stat.
fn cpu_utilization() -> Option<f64> {
    static LAST: Mutex<Option<(u64, u64)>> = Mutex::new(None);
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    // idle + iowait
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    let busy = total.saturating_sub(idle);
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    let (b0, t0) = last.unwrap_or((0, 0));
    *last = Some((busy, total));
    let dt = total.saturating_sub(t0);
    if dt == 0 {
        return Some(0.0);
    }
    Some(100.0 * busy.saturating_sub(b0) as f64 / dt as f64)
}

/// (total, available) bytes from /proc/meminfo.
fn meminfo() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    };
    Some((field("MemTotal:")?, field("MemAvailable:")?))
}

/// A label value, quoted and escaped.
fn label(v: &str) -> String {
    let mut s = String::from("\"");
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}
