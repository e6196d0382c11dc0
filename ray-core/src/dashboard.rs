//! The dashboard's server (feature `dashboard`): a small read-only HTTP/1.1 server on the node
//! manager's tokio runtime. It serves the page (`/`, assets embedded with `include_str!`), the
//! state API as JSON (`/api/{nodes,actors,tasks,objects,workers}?filter=k=v&limit=N`,
//! `/api/summary/{tasks,actors,objects}`, `/api/timeline`), live updates as server-sent events
//! (`/api/events`) and Prometheus metrics (`/metrics`). Only `GET` is answered: nothing here
//! can submit, cancel or kill anything. With a token (a cluster's), every request must carry
//! it (`Authorization: Bearer <token>`, or `?token=` for a browser), else 401.

use crate::error::{Error, Result};
use crate::node_manager::NodeManager;
use crate::state::{self, ListOptions, StateKind, StateQuery, StateRows};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const INDEX_HTML: &str = include_str!("dashboard/index.html");

/// Largest request head read.
const MAX_HEAD: usize = 16 * 1024;

/// How often the page gets a new snapshot.
const EVENT_PERIOD: Duration = Duration::from_millis(250);

/// Snapshots sent on one event stream before it ends (the browser reconnects).
const EVENTS_PER_STREAM: usize = 4;

static URL: Mutex<Option<String>> = Mutex::new(None);

/// The dashboard's URL while one is served by this process (`Config::dashboard`).
pub(crate) fn url() -> Option<String> {
    URL.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

pub(crate) fn clear_url() {
    *URL.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// Binds `addr` and serves the dashboard of `node` until its runtime stops. Returns the
/// address bound (port 0 picks one).
pub(crate) fn start(node: &NodeManager, addr: &str, token: Option<String>) -> Result<SocketAddr> {
    let parsed: SocketAddr = addr.parse().map_err(|e| Error::InvalidArgument {
        what: format!("dashboard address `{addr}`"),
        message: format!("{e}; write IP:PORT, e.g. 127.0.0.1:8265 (port 0 picks a free one)"),
    })?;
    let std_listener = std::net::TcpListener::bind(parsed)
        .map_err(|e| Error::io(format!("binding the dashboard to {addr}"), e))?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| Error::io("setting up the dashboard's socket", e))?;
    let bound = std_listener
        .local_addr()
        .map_err(|e| Error::io("reading the dashboard's address", e))?;
    let node = node.clone();
    let handle = node.handle();
    let _guard = handle.enter();
    let listener = TcpListener::from_std(std_listener)
        .map_err(|e| Error::io("setting up the dashboard's socket", e))?;
    handle.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let node = node.clone();
            let token = token.clone();
            tokio::spawn(async move {
                let _ = serve(stream, node, token).await;
            });
        }
    });
    Ok(bound)
}

/// Starts the single-node driver's dashboard and records its URL.
pub(crate) fn start_for_driver(node: &NodeManager, addr: &str) -> Result<String> {
    let bound = start(node, addr, None)?;
    let url = format!("http://{bound}");
    *URL.lock().unwrap_or_else(|e| e.into_inner()) = Some(url.clone());
    Ok(url)
}

struct Request {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    bearer: Option<String>,
}

async fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let (path, qs) = target.split_once('?').unwrap_or((&target, ""));
    let query = qs
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    let bearer = lines.find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if !k.trim().eq_ignore_ascii_case("authorization") {
            return None;
        }
        v.trim()
            .strip_prefix("Bearer ")
            .map(|t| t.trim().to_string())
    });
    Some(Request {
        method,
        path: path.to_string(),
        query,
        bearer,
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Equal without telling how much matched by the time taken.
fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    ctype: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.flush().await
}

async fn serve(
    mut stream: TcpStream,
    node: NodeManager,
    token: Option<String>,
) -> std::io::Result<()> {
    let Some(req) = read_request(&mut stream).await else {
        return Ok(());
    };
    if let Some(expected) = &token {
        let given = req.bearer.clone().or_else(|| {
            req.query
                .iter()
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v.clone())
        });
        if !given.is_some_and(|g| same_secret(&g, expected)) {
            return respond(
                &mut stream,
                "401 Unauthorized",
                "text/plain",
                "this dashboard needs the cluster's token: Authorization: Bearer <token> or ?token=<token>\n",
            )
            .await;
        }
    }
    if req.method != "GET" && req.method != "HEAD" {
        return respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            "the dashboard is read-only: only GET is served\n",
        )
        .await;
    }
    let json = "application/json";
    match req.path.as_str() {
        "/" | "/index.html" => {
            respond(
                &mut stream,
                "200 OK",
                "text/html; charset=utf-8",
                INDEX_HTML,
            )
            .await
        }
        "/metrics" => {
            let body = metrics(&node);
            respond(&mut stream, "200 OK", "text/plain; version=0.0.4", &body).await
        }
        "/api/timeline" => {
            let rows = rows_of(
                &node,
                StateKind::Tasks,
                ListOptions::new().limit(usize::MAX),
            );
            let StateRows::Tasks(rows) = rows else {
                unreachable!()
            };
            let body = state::timeline_json(&rows, state::now_us());
            respond(&mut stream, "200 OK", json, &body).await
        }
        "/api/events" => events(stream, node).await,
        "/api/snapshot.js" => {
            let body = format!("window.__snapshot = {};\n", snapshot(&node));
            respond(&mut stream, "200 OK", "text/javascript", &body).await
        }
        "/api/summary/tasks" | "/api/summary/actors" | "/api/summary/objects" => {
            let body = summary(&node, &req.path["/api/summary/".len()..]);
            respond(&mut stream, "200 OK", json, &body).await
        }
        p if p.starts_with("/api/") => {
            let kind = match StateKind::parse(&p["/api/".len()..]) {
                Ok(k) => k,
                Err(e) => {
                    return respond(
                        &mut stream,
                        "404 Not Found",
                        "text/plain",
                        &format!("{e}\n"),
                    )
                    .await;
                }
            };
            let mut opts = ListOptions::new();
            for (k, v) in &req.query {
                let parsed = match k.as_str() {
                    "filter" => opts.clone().parse_filter(v),
                    "limit" => v
                        .parse::<usize>()
                        .map(|n| opts.clone().limit(n))
                        .map_err(|_| Error::InvalidArgument {
                            what: format!("limit `{v}`"),
                            message: "a whole number of rows".into(),
                        }),
                    _ => Ok(opts.clone()),
                };
                opts = match parsed.and_then(|o| o.check(kind).map(|()| o)) {
                    Ok(o) => o,
                    Err(e) => {
                        return respond(
                            &mut stream,
                            "400 Bad Request",
                            "text/plain",
                            &format!("{e}\n"),
                        )
                        .await;
                    }
                };
            }
            let body = rows_json(&rows_of(&node, kind, opts));
            respond(&mut stream, "200 OK", json, &body).await
        }
        _ => respond(&mut stream, "404 Not Found", "text/plain", "not found\n").await,
    }
}

fn rows_of(node: &NodeManager, kind: StateKind, options: ListOptions) -> StateRows {
    let q = StateQuery { kind, options };
    node.lock().state_rows(&q)
}

fn rows_json(rows: &StateRows) -> String {
    let r = match rows {
        StateRows::Nodes(r) => serde_json::to_string(r),
        StateRows::Actors(r) => serde_json::to_string(r),
        StateRows::Tasks(r) => serde_json::to_string(r),
        StateRows::Objects(r) => serde_json::to_string(r),
        StateRows::Workers(r) => serde_json::to_string(r),
    };
    r.unwrap_or_else(|_| "[]".into())
}

fn all(node: &NodeManager, kind: StateKind) -> StateRows {
    rows_of(node, kind, ListOptions::new().limit(usize::MAX))
}

fn summary(node: &NodeManager, what: &str) -> String {
    let r = match (what, all(node, StateKind::from_summary(what))) {
        ("tasks", StateRows::Tasks(rows)) => {
            serde_json::to_string(&state::summarize_task_rows(&rows))
        }
        ("objects", StateRows::Objects(rows)) => {
            serde_json::to_string(&state::summarize_object_rows(&rows))
        }
        (_, StateRows::Actors(rows)) => serde_json::to_string(&state::summarize_actor_rows(&rows)),
        _ => Ok("{}".into()),
    };
    r.unwrap_or_else(|_| "{}".into())
}

/// What the page shows, in one JSON object.
fn snapshot(node: &NodeManager) -> String {
    let StateRows::Tasks(tasks) = all(node, StateKind::Tasks) else {
        unreachable!()
    };
    let failed: Vec<_> = tasks
        .iter()
        .rev()
        .filter(|t| t.state == state::TaskStatus::Failed)
        .take(50)
        .collect();
    let summary = state::summarize_task_rows(&tasks);
    let StateRows::Objects(objects) = all(node, StateKind::Objects) else {
        unreachable!()
    };
    let objects_summary = state::summarize_object_rows(&objects);
    let top_objects: Vec<_> = objects.iter().take(20).collect();
    let nodes = rows_json(&all(node, StateKind::Nodes));
    let actors = rows_json(&all(node, StateKind::Actors));
    let workers = rows_json(&all(node, StateKind::Workers));
    format!(
        "{{\"nodes\":{nodes},\"actors\":{actors},\"workers\":{workers},\"task_summary\":{},\"failed\":{},\"objects\":{},\"object_summary\":{}}}",
        serde_json::to_string(&summary).unwrap_or_default(),
        serde_json::to_string(&failed).unwrap_or_default(),
        serde_json::to_string(&top_objects).unwrap_or_default(),
        serde_json::to_string(&objects_summary).unwrap_or_default(),
    )
}

/// Server-sent events: a snapshot now and every [`EVENT_PERIOD`], [`EVENTS_PER_STREAM`] times;
/// then the stream ends and the browser's `EventSource` reconnects by itself after `retry`
/// milliseconds. Short streams keep a stuck or idle page from holding a connection forever, and
/// let headless browsers' virtual time (which waits for open requests) move on.
async fn events(mut stream: TcpStream, node: NodeManager) -> std::io::Result<()> {
    stream
        .write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
              Connection: close\r\n\r\nretry: 250\n\n",
        )
        .await?;
    for i in 0..EVENTS_PER_STREAM {
        if i > 0 {
            tokio::time::sleep(EVENT_PERIOD).await;
        }
        let data = snapshot(&node);
        stream
            .write_all(format!("data: {data}\n\n").as_bytes())
            .await?;
        stream.flush().await?;
    }
    Ok(())
}

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
    family(
        &mut out,
        "ray_object_store_memory",
        "gauge",
        "Bytes of the node's shared-memory object store in use.",
    );
    family(
        &mut out,
        "ray_object_store_available_memory",
        "gauge",
        "Bytes of the node's object store free.",
    );
    family(
        &mut out,
        "ray_resources",
        "gauge",
        "Logical resources by name and state (USED or AVAILABLE).",
    );
    for n in nodes.iter().filter(|n| n.is_head) {
        let _ = writeln!(
            out,
            "ray_object_store_memory{{Location=\"MMAP_SHM\",NodeId=\"{}\"}} {}",
            n.node_id, n.object_store_used_bytes
        );
        let _ = writeln!(
            out,
            "ray_object_store_available_memory{{NodeId=\"{}\"}} {}",
            n.node_id,
            n.object_store_capacity_bytes
                .saturating_sub(n.object_store_used_bytes)
        );
        for (r, total) in &n.resources_total {
            let free = n.resources_available.get(r).copied().unwrap_or(0.0);
            let _ = writeln!(
                out,
                "ray_resources{{Name={},State=\"USED\",NodeId=\"{}\"}} {}",
                label(r),
                n.node_id,
                total - free
            );
            let _ = writeln!(
                out,
                "ray_resources{{Name={},State=\"AVAILABLE\",NodeId=\"{}\"}} {}",
                label(r),
                n.node_id,
                free
            );
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
