//! `ray-rs list`, `summary` and `timeline`: the state API of every live node of a cluster.
//!
//! The command asks one node for the cluster's status (which nodes are alive, where they
//! listen), then each live node for its rows (`Request::State` on the node's control service:
//! TLS and the cluster token, as `status`), and merges them. A task sent from one node to run
//! on another is listed by both (`SUBMITTED_TO_NODE`, later `FINISHED` without a worker, at the
//! sender): the row of the node that ran it, which knows its worker, wins; likewise an actor's
//! row on its own node wins over its creator's `REMOTE` row.

use std::collections::BTreeMap;
use std::path::Path;

use ray_core::state::{
    ActorRow, ListOptions, NodeRow, ObjectRow, StateKind, StateRows, TaskRow, TaskStatus, WorkerRow,
};
use serde_json::Value;

use crate::args::{
    Attach, ListArgs, ListFormat, MemoryArgs, StatusArgs, SummaryArgs, TimelineArgs,
};
use crate::control::{Request, Response};
use crate::error::{CliError, Result};
use crate::node::{ask, fetch_status};

/// All rows of `kind` from every live node, merged (at most `options`' limit).
fn collect(attach: &Attach, kind: StateKind, options: &ListOptions) -> Result<StateRows> {
    let report = fetch_status(&StatusArgs {
        address: attach.address.clone(),
        temp_dir: attach.temp_dir.clone(),
        format: crate::args::Format::Json,
    })?;
    let nodes = Member::live(&report);
    collect_from(&nodes, kind, options, false, |_, at, request| {
        let at = crate::args::resolve("node address", at)?;
        ask(
            attach.address.as_deref(),
            &attach.temp_dir,
            Some(at),
            request,
        )
    })
}

/// A live node to ask.
#[derive(Debug, Clone)]
pub struct Member {
    /// Its id.
    pub node_id: u64,
    /// Its control service's address.
    pub address: String,
    /// Whether it is the head.
    pub is_head: bool,
}

impl Member {
    /// The live nodes of a status report.
    pub fn live(report: &crate::control::StatusReport) -> Vec<Member> {
        report
            .nodes
            .iter()
            .filter(|n| n.alive)
            .map(|n| Member {
                node_id: n.node_id,
                address: n.address.clone(),
                is_head: n.is_head,
            })
            .collect()
    }
}

/// Asks each of `nodes` for its rows of `kind` with `ask(node_id, address, request)` (which
/// returns the reply and the address asked) and merges them. `lenient`: a node that does not
/// answer is left out with a warning (a dashboard's view while a node dies) instead of failing
/// the whole answer.
pub fn collect_from(
    nodes: &[Member],
    kind: StateKind,
    options: &ListOptions,
    lenient: bool,
    mut ask: impl FnMut(u64, &str, &Request) -> Result<(Response, std::net::SocketAddr)>,
) -> Result<StateRows> {
    let mut answers = Vec::new();
    for node in nodes {
        let request = Request::State {
            kind,
            options: options.clone(),
        };
        let (reply, addr) = match ask(node.node_id, &node.address, &request) {
            Ok(r) => r,
            Err(e) if lenient => {
                tracing::warn!("node {} at {} left out: {e}", node.node_id, node.address);
                continue;
            }
            Err(e) => return Err(e),
        };
        match reply {
            Response::State(rows) => {
                let mut rows = *rows;
                // A node calls itself the head of its own answer; the cluster has one.
                if let StateRows::Nodes(r) = &mut rows {
                    for row in r.iter_mut() {
                        row.is_head = node.is_head;
                    }
                }
                answers.push((node.node_id, rows));
            }
            _ => {
                return Err(CliError::Protocol {
                    peer: addr.to_string(),
                    detail: "unexpected reply to State".into(),
                });
            }
        }
    }
    Ok(merge(kind, answers, options.effective_limit()))
}

/// Merges the nodes' answers: each node's own row for nodes; for tasks and actors, the row of
/// the node that runs them; at most `limit` rows.
fn merge(kind: StateKind, answers: Vec<(u64, StateRows)>, limit: usize) -> StateRows {
    let mut nodes: Vec<NodeRow> = Vec::new();
    let mut tasks: BTreeMap<String, TaskRow> = BTreeMap::new();
    let mut actors: BTreeMap<String, ActorRow> = BTreeMap::new();
    let mut objects: BTreeMap<String, ObjectRow> = BTreeMap::new();
    let mut workers: Vec<WorkerRow> = Vec::new();
    for (node_id, rows) in answers {
        match rows {
            StateRows::Nodes(rows) => {
                nodes.extend(rows.into_iter().filter(|r| u64::from(r.node_id) == node_id));
            }
            StateRows::Tasks(rows) => {
                // The node that ran a task knows its worker; the one that sent it does not.
                let rank = |r: &TaskRow| {
                    u8::from(r.state != TaskStatus::SubmittedToNode)
                        + 2 * u8::from(r.worker_pid.is_some())
                };
                for r in rows {
                    match tasks.get(&r.task_id) {
                        Some(old) if rank(old) >= rank(&r) => {}
                        _ => {
                            tasks.insert(r.task_id.clone(), r);
                        }
                    }
                }
            }
            StateRows::Actors(rows) => {
                for r in rows {
                    let remote = r.state == "REMOTE";
                    match actors.get(&r.actor_id) {
                        Some(old) if remote || old.state != "REMOTE" => {}
                        _ => {
                            actors.insert(r.actor_id.clone(), r);
                        }
                    }
                }
            }
            StateRows::Objects(rows) => {
                for r in rows {
                    let elsewhere = r.location.starts_with("node ");
                    match objects.get(&r.object_id) {
                        Some(old) if elsewhere || !old.location.starts_with("node ") => {}
                        _ => {
                            objects.insert(r.object_id.clone(), r);
                        }
                    }
                }
            }
            StateRows::Workers(rows) => workers.extend(rows),
            _ => {}
        }
    }
    match kind {
        StateKind::Nodes => StateRows::Nodes(nodes.into_iter().take(limit).collect()),
        StateKind::Tasks => {
            let mut rows: Vec<TaskRow> = tasks.into_values().collect();
            rows.sort_by_key(|r| r.submitted_us);
            StateRows::Tasks(rows.into_iter().take(limit).collect())
        }
        StateKind::Actors => StateRows::Actors(actors.into_values().take(limit).collect()),
        StateKind::Objects => StateRows::Objects(objects.into_values().take(limit).collect()),
        StateKind::Workers => StateRows::Workers(workers.into_iter().take(limit).collect()),
    }
}

fn kind_of(text: &str, allowed: &[StateKind]) -> Result<StateKind> {
    let names: Vec<&str> = allowed.iter().map(|k| k.as_str()).collect();
    let bad = || CliError::BadArg {
        flag: "KIND",
        value: text.to_string(),
        reason: format!("expected one of {}", names.join(", ")),
    };
    let kind = StateKind::parse(text).map_err(|_| bad())?;
    if !allowed.contains(&kind) {
        return Err(bad());
    }
    Ok(kind)
}

fn json(value: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string_pretty(value).map_err(|e| CliError::NodeManager(e.to_string()))
}

/// The columns a table shows for `kind`.
fn columns(kind: StateKind) -> &'static [&'static str] {
    match kind {
        StateKind::Nodes => &[
            "node_id",
            "state",
            "resources_total",
            "resources_available",
            "object_store_used_bytes",
            "workers",
        ],
        StateKind::Actors => &[
            "actor_id",
            "class_name",
            "state",
            "name",
            "node_id",
            "pid",
            "restarts",
            "death_cause",
        ],
        StateKind::Tasks => &[
            "task_id",
            "name",
            "state",
            "node_id",
            "worker_pid",
            "attempts",
            "error",
        ],
        StateKind::Objects => &[
            "object_id",
            "state",
            "location",
            "size_bytes",
            "holders",
            "producer",
        ],
        StateKind::Workers => &[
            "pid", "state", "node_id", "job_id", "task_id", "actor_id", "gpu_ids",
        ],
    }
}

/// A JSON value as one table cell.
fn cell(v: Option<&Value>) -> String {
    let text = match v {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| cell(Some(x)))
            .collect::<Vec<_>>()
            .join(","),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, x)| format!("{k}={}", cell(Some(x))))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    };
    // One line per row, and no unbounded cells.
    let line = text.replace('\n', " ");
    match line.char_indices().nth(80) {
        Some((i, _)) => format!("{}...", &line[..i]),
        None => line,
    }
}

fn print_table(kind: StateKind, rows: &Value) {
    let cols = columns(kind);
    let rows: Vec<Vec<String>> = rows
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| cols.iter().map(|c| cell(r.get(*c))).collect())
                .collect()
        })
        .unwrap_or_default();
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
                .max(c.len())
        })
        .collect();
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    println!("{}", line(cols.iter().map(|c| c.to_uppercase()).collect()));
    for r in rows {
        println!("{}", line(r));
    }
}

fn rows_json(rows: &StateRows) -> Result<Value> {
    let v = match rows {
        StateRows::Nodes(r) => serde_json::to_value(r),
        StateRows::Actors(r) => serde_json::to_value(r),
        StateRows::Tasks(r) => serde_json::to_value(r),
        StateRows::Objects(r) => serde_json::to_value(r),
        StateRows::Workers(r) => serde_json::to_value(r),
        _ => Ok(Value::Array(Vec::new())),
    };
    v.map_err(|e| CliError::NodeManager(e.to_string()))
}

/// `ray-rs list KIND [--filter K=V]... [--limit N] [--format table|json]`.
pub fn list(args: ListArgs) -> Result<()> {
    let all = [
        StateKind::Nodes,
        StateKind::Actors,
        StateKind::Tasks,
        StateKind::Objects,
        StateKind::Workers,
    ];
    let kind = kind_of(&args.kind, &all)?;
    let mut options = ListOptions::new();
    for f in &args.filters {
        options = options.parse_filter(f).map_err(|e| CliError::BadArg {
            flag: "--filter",
            value: f.clone(),
            reason: e.to_string(),
        })?;
    }
    if let Some(n) = args.limit {
        options = options.limit(n);
    }
    let rows = rows_json(&collect(&args.attach, kind, &options)?)?;
    match args.format {
        ListFormat::Json => println!("{}", json(&rows)?),
        ListFormat::Table => print_table(kind, &rows),
    }
    Ok(())
}

/// `ray-rs summary tasks|actors|objects`.
pub fn summary(args: SummaryArgs) -> Result<()> {
    let kind = kind_of(
        &args.kind,
        &[StateKind::Tasks, StateKind::Actors, StateKind::Objects],
    )?;
    let options = ListOptions::new().limit(usize::MAX);
    let rows = collect(&args.attach, kind, &options)?;
    let summary = match &rows {
        StateRows::Tasks(r) => serde_json::to_value(ray_core::state::summarize_task_rows(r)),
        StateRows::Actors(r) => serde_json::to_value(ray_core::state::summarize_actor_rows(r)),
        StateRows::Objects(r) => serde_json::to_value(ray_core::state::summarize_object_rows(r)),
        _ => Ok(Value::Null),
    }
    .map_err(|e| CliError::NodeManager(e.to_string()))?;
    match args.format {
        ListFormat::Json => println!("{}", json(&summary)?),
        ListFormat::Table => print_summary(&summary, "")?,
    }
    Ok(())
}

/// A summary as indented `name: count` lines.
fn print_summary(v: &Value, indent: &str) -> Result<()> {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if x.is_object() {
                    println!("{indent}{k}:");
                    print_summary(x, &format!("{indent}  "))?;
                } else {
                    println!("{indent}{k}: {}", cell(Some(x)));
                }
            }
        }
        other => println!("{indent}{}", cell(Some(other))),
    }
    Ok(())
}

/// `ray-rs timeline -o FILE`.
pub fn timeline(args: TimelineArgs) -> Result<()> {
    let options = ListOptions::new().limit(usize::MAX);
    let StateRows::Tasks(rows) = collect(&args.attach, StateKind::Tasks, &options)? else {
        return Err(CliError::NodeManager("no task rows".into()));
    };
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    let text = ray_core::state::timeline_json(&rows, now_us);
    write(&args.output, &text)?;
    eprintln!(
        "ray-rs: wrote {} calls to {} (open it in https://ui.perfetto.dev or chrome://tracing)",
        rows.len(),
        args.output.display()
    );
    Ok(())
}

/// `ray-rs memory`.
pub fn memory(args: MemoryArgs) -> Result<()> {
    let all = ListOptions::new().limit(usize::MAX);
    let nodes = rows_json(&collect(&args.attach, StateKind::Nodes, &all)?)?;
    let StateRows::Objects(mut objects) = collect(&args.attach, StateKind::Objects, &all)? else {
        return Err(CliError::NodeManager("no object rows".into()));
    };
    let count = objects.len();
    let total: u64 = objects.iter().filter_map(|o| o.size_bytes).sum();
    objects.sort_by_key(|o| std::cmp::Reverse(o.size_bytes.unwrap_or(0)));
    objects.truncate(args.limit);
    let objects = rows_json(&StateRows::Objects(objects))?;
    match args.format {
        ListFormat::Json => {
            let v = serde_json::json!({
                "nodes": nodes,
                "objects": objects,
                "object_count": count,
                "object_bytes": total,
            });
            println!("{}", json(&v)?);
        }
        ListFormat::Table => {
            for n in nodes.as_array().into_iter().flatten() {
                println!(
                    "node {}: object store {} of {} bytes in use, {} objects spilled so far",
                    cell(n.get("node_id")),
                    cell(n.get("object_store_used_bytes")),
                    cell(n.get("object_store_capacity_bytes")),
                    cell(n.get("spilled_objects")),
                );
            }
            println!("{count} objects, {total} bytes; the largest:");
            print_table(StateKind::Objects, &objects);
        }
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| CliError::io(format!("writing {}", path.display()), e))
}
