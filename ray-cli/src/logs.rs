//! `ray-rs logs <actor id | task id | pid> [--follow]`: what a worker printed.
//!
//! Every node keeps its workers' output (`<temp-dir>/logs/workers/worker-<pid>.out|.err`,
//! bounded: see `ray_core::__node::MAX_FILE_BYTES`). The command finds the worker from the
//! state rows (an actor's row and a task's row carry the node and the pid; a bare pid is looked
//! for on every live node), then asks that node (`Request::Logs` on its control service: TLS
//! and the cluster token, as `list`) for the output from the offsets it has printed so far, in
//! replies of at most 1 MiB per stream, until it has everything; `--follow` keeps asking four
//! times a second until the worker exits.

use std::io::Write;
use std::time::Duration;

use ray_core::__node::{LogQuery, LogReply, MAX_CHUNK_BYTES};
use ray_core::state::{ListOptions, StateKind, StateRows};

use crate::args::{LogsArgs, StatusArgs};
use crate::control::{Request, Response};
use crate::error::{CliError, Result};
use crate::node::{ask, fetch_status};
use crate::state::{Member, collect_from};

/// How often `--follow` asks for more.
const FOLLOW_PERIOD: Duration = Duration::from_millis(250);

/// The worker whose output to print.
struct Target {
    node: Member,
    pid: u32,
    /// What it is, for the header line.
    what: String,
}

/// `ray-rs logs`.
pub fn logs(args: LogsArgs) -> Result<()> {
    let report = fetch_status(&StatusArgs {
        address: args.attach.address.clone(),
        temp_dir: args.attach.temp_dir.clone(),
        format: crate::args::Format::Json,
    })?;
    let members = Member::live(&report);
    let asker = |at: &str, request: &Request| -> Result<(Response, std::net::SocketAddr)> {
        let at = crate::args::resolve("node address", at)?;
        ask(
            args.attach.address.as_deref(),
            &args.attach.temp_dir,
            Some(at),
            request,
        )
    };
    let (target, first) = find(&args, &members, &asker)?;
    eprintln!(
        "ray-rs: output of {}: worker pid {} on node {} ({})",
        target.what, target.pid, target.node.node_id, target.node.address
    );
    let mut reply = match first {
        Some(r) => r,
        None => fetch(&asker, &target, None, None)?,
    };
    loop {
        print_chunk(&reply);
        let more = reply.out.to < reply.out.end || reply.err.to < reply.err.end;
        if !more {
            if !args.follow {
                return Ok(());
            }
            if !reply.alive {
                eprintln!("ray-rs: worker pid {} has exited", target.pid);
                return Ok(());
            }
            std::thread::sleep(FOLLOW_PERIOD);
        }
        reply = fetch(&asker, &target, Some(reply.out.to), Some(reply.err.to))?;
    }
}

fn print_chunk(reply: &LogReply) {
    let skipped = reply.out.skipped + reply.err.skipped;
    if skipped > 0 {
        eprintln!(
            "ray-rs: {skipped} bytes of worker pid {}'s output were rotated away before they were read",
            reply.pid
        );
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(reply.out.text.as_bytes());
    let _ = out.flush();
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(reply.err.text.as_bytes());
    let _ = err.flush();
}

type Asker<'a> = dyn Fn(&str, &Request) -> Result<(Response, std::net::SocketAddr)> + 'a;

fn fetch(
    asker: &Asker<'_>,
    target: &Target,
    out_from: Option<u64>,
    err_from: Option<u64>,
) -> Result<LogReply> {
    let query = LogQuery {
        pid: target.pid,
        out_from,
        err_from,
        max_bytes: MAX_CHUNK_BYTES,
    };
    let (reply, addr) = asker(&target.node.address, &Request::Logs { query })?;
    match reply {
        Response::Logs(r) => Ok(r),
        _ => Err(CliError::Protocol {
            peer: addr.to_string(),
            detail: "unexpected reply to Logs".into(),
        }),
    }
}

/// The worker `args.target` names, and its first reply when finding it asked for one.
fn find(
    args: &LogsArgs,
    members: &[Member],
    asker: &Asker<'_>,
) -> Result<(Target, Option<LogReply>)> {
    let text = args.target.trim();
    let nodes: Vec<&Member> = members
        .iter()
        .filter(|m| args.node.is_none_or(|n| u64::from(n) == m.node_id))
        .collect();
    if let Some(n) = args.node
        && nodes.is_empty()
    {
        return Err(CliError::BadArg {
            flag: "--node",
            value: n.to_string(),
            reason: format!(
                "no live node has that id; live nodes: {}",
                members
                    .iter()
                    .map(|m| m.node_id.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    if let Ok(pid) = text.parse::<u32>() {
        let mut found = Vec::new();
        let mut why = Vec::new();
        for node in &nodes {
            let query = LogQuery::all(pid);
            match asker(&node.address, &Request::Logs { query }) {
                Ok((Response::Logs(r), _)) => found.push(((*node).clone(), r)),
                Ok(_) => why.push(format!("node {}: unexpected reply", node.node_id)),
                Err(CliError::Remote { .. }) => {}
                Err(e) => why.push(format!("node {}: {e}", node.node_id)),
            }
        }
        return match found.len() {
            1 => {
                let (node, reply) = found.remove(0);
                Ok((
                    Target {
                        node,
                        pid,
                        what: format!("worker pid {pid}"),
                    },
                    Some(reply),
                ))
            }
            0 => Err(CliError::NotFound {
                what: format!("worker pid {pid}"),
                detail: format!(
                    "no node of the cluster's {} live node(s) ran a worker with that pid, or its \
                     output was removed (each node keeps the newest {} exited workers' logs); \
                     `ray-rs list workers` shows the pids of running workers{}",
                    nodes.len(),
                    ray_core::__node::KEEP_EXITED,
                    if why.is_empty() {
                        String::new()
                    } else {
                        format!(" (not asked: {})", why.join("; "))
                    }
                ),
            }),
            _ => Err(CliError::NotFound {
                what: format!("one worker with pid {pid}"),
                detail: format!(
                    "workers with that pid ran on nodes {}; name one with --node NODE_ID",
                    found
                        .iter()
                        .map(|(n, _)| n.node_id.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
        };
    }
    let rows = |kind: StateKind, key: &str| -> Result<StateRows> {
        let options = ListOptions::new().filter(key, text);
        let nodes: Vec<Member> = nodes.iter().map(|m| (*m).clone()).collect();
        collect_from(&nodes, kind, &options, false, |_, at, r| asker(at, r))
    };
    let node_of = |id: u32| -> Result<Member> {
        members
            .iter()
            .find(|m| m.node_id == u64::from(id))
            .cloned()
            .ok_or_else(|| CliError::NotFound {
                what: format!("node {id}"),
                detail: format!(
                    "`{text}` ran on node {id}, which is no longer a live member of the \
                     cluster; its output went with it"
                ),
            })
    };
    if let StateRows::Actors(actors) = rows(StateKind::Actors, "actor_id")?
        && let Some(a) = actors.first()
    {
        let pid = a.pid.ok_or_else(|| CliError::NotFound {
            what: format!("a worker of actor {text}"),
            detail: format!(
                "the actor is {} and has no worker process{}",
                a.state,
                a.death_cause
                    .as_deref()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default()
            ),
        })?;
        let what = format!("actor {text} ({})", a.class_name);
        return Ok((
            Target {
                node: node_of(a.node_id)?,
                pid,
                what,
            },
            None,
        ));
    }
    if let StateRows::Tasks(tasks) = rows(StateKind::Tasks, "task_id")?
        && let Some(t) = tasks.first()
    {
        let pid = t.worker_pid.ok_or_else(|| CliError::NotFound {
            what: format!("a worker of task {text}"),
            detail: format!("the task is {} and has not run in a worker", t.state),
        })?;
        let what = format!(
            "task {text} ({}; the worker's whole output, other tasks it ran included)",
            t.name
        );
        return Ok((
            Target {
                node: node_of(t.node_id)?,
                pid,
                what,
            },
            None,
        ));
    }
    Err(CliError::NotFound {
        what: format!("actor or task `{text}`"),
        detail: format!(
            "none of the cluster's {} live node(s) knows an actor or task with that id (finished \
             tasks are remembered while they are among a node's newest 10000); ids are as \
             `ray-rs list actors` and `ray-rs list tasks` print them, and a worker's pid is a \
             number",
            nodes.len()
        ),
    })
}
