//! The dashboard's server (feature `dashboard`): a small read-only HTTP/1.1 server on a tokio
//! runtime. It serves the page (`/`, assets embedded with `include_str!`), the state API as JSON
//! (`/api/{nodes,actors,tasks,objects,workers}?filter=k=v&limit=N`,
//! `/api/summary/{tasks,actors,objects}`, `/api/timeline`), a worker's output
//! (`/api/logs?pid=P&node=N&out=OFFSET&err=OFFSET`), live updates as server-sent events
//! (`/api/events`) and Prometheus metrics (`/metrics`). Only `GET` is answered: nothing here
//! can submit, cancel or kill anything. With a token (a cluster's), every request must carry
//! it (`Authorization: Bearer <token>`, or `?token=` for a browser), else 401.
//!
//! What it shows comes from a [`Source`]: the driver's own node manager in single-node mode
//! ([`start_for_driver`]), every node of a cluster on a `ray-rs` head (the daemon's source,
//! which asks each node over its control service). A node daemon's metrics listener is the
//! same server answering `/metrics` only ([`Mode::MetricsOnly`]).

mod metrics;

pub(crate) use metrics::metrics;

use crate::error::{Error, Result};
use crate::node_manager::NodeManager;
use crate::state::{self, ListOptions, StateKind, StateQuery, StateRows};
use crate::worker_logs::{LogQuery, LogReply, WorkerLogs};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const INDEX_HTML: &str = include_str!("dashboard/index.html");

/// Largest request head read.
const MAX_HEAD: usize = 16 * 1024;

/// How often the page gets a new snapshot.
const EVENT_PERIOD: Duration = Duration::from_millis(250);

/// Snapshots sent on one event stream before it ends (the browser reconnects).
const EVENTS_PER_STREAM: usize = 4;

/// Requests served at once; more are answered 503. Connections still sending their request
/// head count apart, at most this many too: a new one past that ends the oldest of them
/// (`pending_connections.rs`), so silent connections cannot block the listener.
const MAX_CONNECTIONS: usize = 64;

/// How long a connection has to send its whole request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

static URL: Mutex<Option<String>> = Mutex::new(None);

/// Where the dashboard's rows, metrics and logs come from. Called from blocking threads, so an
/// implementation may do blocking I/O (a cluster's asks every node).
pub trait Source: Send + Sync + 'static {
    /// Rows of `kind` (already checked against `options`).
    fn rows(&self, kind: StateKind, options: &ListOptions) -> Result<StateRows>;
    /// Prometheus text of the node serving the page.
    fn metrics(&self) -> Result<String>;
    /// Output of worker `query.pid` on `node` (`None`: this node, or wherever it is).
    fn logs(&self, node: Option<u32>, query: &LogQuery) -> Result<LogReply>;
}

/// What a server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The page, the JSON API, events and `/metrics`.
    Dashboard,
    /// `/metrics` only (a node daemon's metrics listener).
    MetricsOnly,
}

/// The dashboard's URL while one is served by this process (`Config::dashboard`).
pub(crate) fn url() -> Option<String> {
    URL.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

pub(crate) fn clear_url() {
    *URL.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// Binds `addr` (`IP:PORT`, port 0 picks a free one) for a dashboard or metrics server.
pub fn bind(addr: &str) -> Result<std::net::TcpListener> {
    let parsed: SocketAddr = addr.parse().map_err(|e| Error::InvalidArgument {
        what: format!("dashboard address `{addr}`"),
        message: format!("{e}; write IP:PORT, e.g. 127.0.0.1:8265 (port 0 picks a free one)"),
    })?;
    let listener = std::net::TcpListener::bind(parsed).map_err(|e| {
        Error::io(
            format!("binding {addr} (another port, or 0 for any free one, avoids a port in use)"),
            e,
        )
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::io("setting up the dashboard's socket", e))?;
    Ok(listener)
}

/// Serves `source` on `listener` from `handle`'s runtime until it stops. With `token`, every
/// request must carry it.
pub fn serve_on(
    handle: &tokio::runtime::Handle,
    listener: std::net::TcpListener,
    source: Arc<dyn Source>,
    token: Option<String>,
    mode: Mode,
) -> Result<SocketAddr> {
    let bound = listener
        .local_addr()
        .map_err(|e| Error::io("reading the dashboard's address", e))?;
    let _guard = handle.enter();
    let listener = TcpListener::from_std(listener)
        .map_err(|e| Error::io("setting up the dashboard's socket", e))?;
    let server = Arc::new(Server {
        source,
        token,
        mode,
        snapshot: Mutex::new(None),
    });
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let reading = Arc::new(Mutex::new(
        crate::pending_connections::PendingConnections::new(MAX_CONNECTIONS),
    ));
    handle.spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let (n, ended) = reading.lock().unwrap_or_else(|e| e.into_inner()).begin();
            let (server, permits, reading) = (server.clone(), permits.clone(), reading.clone());
            tokio::spawn(async move {
                let req = tokio::select! {
                    r = tokio::time::timeout(HEAD_TIMEOUT, read_request(&mut stream)) => {
                        r.ok().flatten()
                    }
                    _ = ended => None,
                };
                reading.lock().unwrap_or_else(|e| e.into_inner()).end(n);
                let Some(req) = req else {
                    return;
                };
                let Ok(permit) = permits.try_acquire_owned() else {
                    let _ = respond(
                        &mut stream,
                        "503 Service Unavailable",
                        "text/plain",
                        "too many requests at once; try again\n",
                    )
                    .await;
                    return;
                };
                let _ = server.serve(stream, req).await;
                drop(permit);
            });
        }
    });
    Ok(bound)
}

/// The single-node driver's own rows, metrics and (with a dashboard) workers' output.
struct Local {
    node: NodeManager,
    logs: Option<Arc<WorkerLogs>>,
}

impl Source for Local {
    fn rows(&self, kind: StateKind, options: &ListOptions) -> Result<StateRows> {
        Ok(rows_of(&self.node, kind, options.clone()))
    }

    fn metrics(&self) -> Result<String> {
        Ok(metrics(&self.node))
    }

    fn logs(&self, _node: Option<u32>, query: &LogQuery) -> Result<LogReply> {
        let node_id = self.node.lock().node.as_u32();
        let alive = self.node.worker_pids().contains(&query.pid);
        crate::worker_logs::local_logs(self.logs.as_deref(), node_id, alive, query)
    }
}

/// Starts the single-node driver's dashboard and records its URL.
pub(crate) fn start_for_driver(
    node: &NodeManager,
    addr: &str,
    logs: Option<Arc<WorkerLogs>>,
) -> Result<String> {
    let listener = bind(addr)?;
    let source = Arc::new(Local {
        node: node.clone(),
        logs,
    });
    let bound = serve_on(&node.handle(), listener, source, None, Mode::Dashboard)?;
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
        let n = stream.read(&mut chunk).await.ok()?;
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

struct Server {
    source: Arc<dyn Source>,
    token: Option<String>,
    mode: Mode,
    /// The last snapshot and when it was made: every page open at once shares one per period
    /// (a cluster's costs a request to each node).
    snapshot: Mutex<Option<(Instant, Arc<String>)>>,
}

/// Runs `f` on a blocking thread (a source may do blocking I/O).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

const JSON: &str = "application/json";

impl Server {
    async fn serve(self: Arc<Self>, mut stream: TcpStream, req: Request) -> std::io::Result<()> {
        if let Some(expected) = &self.token {
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
                    "this server needs the cluster's token (the node's <temp-dir>/auth_token, or \
                     RAY_RS_AUTH_TOKEN): send `Authorization: Bearer <token>`, or add \
                     ?token=<token> to the URL in a browser\n",
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
        if self.mode == Mode::MetricsOnly && req.path != "/metrics" {
            return respond(
                &mut stream,
                "404 Not Found",
                "text/plain",
                "this is a node's metrics listener: only /metrics is served here (the \
                 dashboard is on the head)\n",
            )
            .await;
        }
        let source = self.source.clone();
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
            "/metrics" => match blocking(move || source.metrics()).await {
                Some(Ok(body)) => {
                    respond(&mut stream, "200 OK", "text/plain; version=0.0.4", &body).await
                }
                other => failed(&mut stream, other).await,
            },
            "/api/timeline" => {
                let all = ListOptions::new().limit(usize::MAX);
                match blocking(move || source.rows(StateKind::Tasks, &all)).await {
                    Some(Ok(StateRows::Tasks(rows))) => {
                        let body = state::timeline_json(&rows, state::now_us());
                        respond(&mut stream, "200 OK", JSON, &body).await
                    }
                    Some(Err(e)) => failed(&mut stream, Some(Err::<(), _>(e))).await,
                    _ => failed::<()>(&mut stream, None).await,
                }
            }
            "/api/events" => self.events(stream).await,
            "/api/snapshot.js" => match self.snapshot().await {
                Ok(s) => {
                    let body = format!("window.__snapshot = {s};\n");
                    respond(&mut stream, "200 OK", "text/javascript", &body).await
                }
                Err(e) => failed(&mut stream, Some(Err::<(), _>(e))).await,
            },
            "/api/logs" => match log_query(&req.query) {
                Ok((node, query)) => match blocking(move || source.logs(node, &query)).await {
                    Some(Ok(reply)) => {
                        let body = serde_json::to_string(&reply).unwrap_or_default();
                        respond(&mut stream, "200 OK", JSON, &body).await
                    }
                    other => failed(&mut stream, other).await,
                },
                Err(e) => {
                    respond(
                        &mut stream,
                        "400 Bad Request",
                        "text/plain",
                        &format!("{e}\n"),
                    )
                    .await
                }
            },
            p @ ("/api/summary/tasks" | "/api/summary/actors" | "/api/summary/objects") => {
                let what = p["/api/summary/".len()..].to_string();
                match blocking(move || summary(&*source, &what)).await {
                    Some(Ok(body)) => respond(&mut stream, "200 OK", JSON, &body).await,
                    other => failed(&mut stream, other).await,
                }
            }
            p if p.starts_with("/api/") => {
                let (kind, opts) = match list_query(&p["/api/".len()..], &req.query) {
                    Ok(q) => q,
                    Err((status, e)) => {
                        return respond(&mut stream, status, "text/plain", &format!("{e}\n")).await;
                    }
                };
                match blocking(move || source.rows(kind, &opts)).await {
                    Some(Ok(rows)) => respond(&mut stream, "200 OK", JSON, &rows_json(&rows)).await,
                    other => failed(&mut stream, other).await,
                }
            }
            _ => respond(&mut stream, "404 Not Found", "text/plain", "not found\n").await,
        }
    }

    /// The page's snapshot, made at most once per [`EVENT_PERIOD`] for all pages.
    async fn snapshot(&self) -> Result<Arc<String>> {
        {
            let cached = self.snapshot.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, s)) = &*cached
                && at.elapsed() < EVENT_PERIOD
            {
                return Ok(s.clone());
            }
        }
        let source = self.source.clone();
        let made = blocking(move || snapshot(&*source))
            .await
            .unwrap_or_else(|| Err(internal("the snapshot's thread ended")))?;
        let made = Arc::new(made);
        *self.snapshot.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), made.clone()));
        Ok(made)
    }

    /// Server-sent events: a snapshot now and every [`EVENT_PERIOD`], [`EVENTS_PER_STREAM`]
    /// times; then the stream ends and the browser's `EventSource` reconnects by itself after
    /// `retry` milliseconds. Short streams keep a stuck or idle page from holding a connection
    /// forever, and let headless browsers' virtual time (which waits for open requests) move
    /// on.
    async fn events(&self, mut stream: TcpStream) -> std::io::Result<()> {
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
            let data = match self.snapshot().await {
                Ok(s) => s,
                Err(e) => {
                    // The page shows it and the browser tries again.
                    let msg = serde_json::to_string(&e.to_string()).unwrap_or_default();
                    stream
                        .write_all(format!("event: failure\ndata: {msg}\n\n").as_bytes())
                        .await?;
                    return stream.flush().await;
                }
            };
            stream
                .write_all(format!("data: {data}\n\n").as_bytes())
                .await?;
            stream.flush().await?;
        }
        Ok(())
    }
}

fn internal(what: &str) -> Error {
    Error::InvalidArgument {
        what: "dashboard request".into(),
        message: format!("{what} (an internal error; the server's log may say more)"),
    }
}

/// Answers a failed source call: 404 for an unknown worker, 502 when the source failed.
async fn failed<T>(stream: &mut TcpStream, r: Option<Result<T>>) -> std::io::Result<()> {
    let (status, text) = match r {
        Some(Err(e @ Error::InvalidArgument { .. })) => ("404 Not Found", e.to_string()),
        Some(Err(e)) => ("502 Bad Gateway", e.to_string()),
        _ => (
            "500 Internal Server Error",
            "the request's thread ended early".to_string(),
        ),
    };
    respond(stream, status, "text/plain", &format!("{text}\n")).await
}

/// `/api/logs`'s query: `pid` (required), `node`, `out` and `err` offsets, `max`.
fn log_query(q: &[(String, String)]) -> Result<(Option<u32>, LogQuery)> {
    let num = |k: &str| -> Result<Option<u64>> {
        match q.iter().find(|(key, _)| key == k) {
            None => Ok(None),
            Some((_, v)) if v.is_empty() => Ok(None),
            Some((_, v)) => v.parse().map(Some).map_err(|_| Error::InvalidArgument {
                what: format!("{k} `{v}`"),
                message: "a whole number".into(),
            }),
        }
    };
    let pid = num("pid")?.ok_or_else(|| Error::InvalidArgument {
        what: "logs request".into(),
        message: "name the worker: /api/logs?pid=PID[&node=N][&out=OFFSET&err=OFFSET]".into(),
    })?;
    let small = |k: &str, v: u64| {
        u32::try_from(v).map_err(|_| Error::InvalidArgument {
            what: format!("{k} `{v}`"),
            message: "too large".into(),
        })
    };
    Ok((
        num("node")?.map(|n| small("node", n)).transpose()?,
        LogQuery {
            pid: small("pid", pid)?,
            out_from: num("out")?,
            err_from: num("err")?,
            max_bytes: num("max")?
                .map(|m| m as usize)
                .unwrap_or(crate::worker_logs::MAX_CHUNK_BYTES),
        },
    ))
}

/// `/api/<kind>?filter=..&limit=..`, checked; else the status and error to answer.
fn list_query(
    kind: &str,
    q: &[(String, String)],
) -> std::result::Result<(StateKind, ListOptions), (&'static str, Error)> {
    let kind = StateKind::parse(kind).map_err(|e| ("404 Not Found", e))?;
    let mut opts = ListOptions::new();
    for (k, v) in q {
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
        opts = parsed
            .and_then(|o| o.check(kind).map(|()| o))
            .map_err(|e| ("400 Bad Request", e))?;
    }
    Ok((kind, opts))
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

/// Every row of `kind` this process's node manager has.
pub(crate) fn all(node: &NodeManager, kind: StateKind) -> StateRows {
    rows_of(node, kind, ListOptions::new().limit(usize::MAX))
}

fn all_of(source: &dyn Source, kind: StateKind) -> Result<StateRows> {
    source.rows(kind, &ListOptions::new().limit(usize::MAX))
}

fn summary(source: &dyn Source, what: &str) -> Result<String> {
    let r = match (what, all_of(source, StateKind::from_summary(what))?) {
        ("tasks", StateRows::Tasks(rows)) => {
            serde_json::to_string(&state::summarize_task_rows(&rows))
        }
        ("objects", StateRows::Objects(rows)) => {
            serde_json::to_string(&state::summarize_object_rows(&rows))
        }
        (_, StateRows::Actors(rows)) => serde_json::to_string(&state::summarize_actor_rows(&rows)),
        _ => Ok("{}".into()),
    };
    Ok(r.unwrap_or_else(|_| "{}".into()))
}

/// What the page shows, in one JSON object.
fn snapshot(source: &dyn Source) -> Result<String> {
    let StateRows::Tasks(tasks) = all_of(source, StateKind::Tasks)? else {
        return Err(internal("task rows of another kind"));
    };
    let failed: Vec<_> = tasks
        .iter()
        .rev()
        .filter(|t| t.state == state::TaskStatus::Failed)
        .take(50)
        .collect();
    let summary = state::summarize_task_rows(&tasks);
    let StateRows::Objects(objects) = all_of(source, StateKind::Objects)? else {
        return Err(internal("object rows of another kind"));
    };
    let objects_summary = state::summarize_object_rows(&objects);
    let top_objects: Vec<_> = objects.iter().take(20).collect();
    let nodes = rows_json(&all_of(source, StateKind::Nodes)?);
    let actors = rows_json(&all_of(source, StateKind::Actors)?);
    let workers = rows_json(&all_of(source, StateKind::Workers)?);
    Ok(format!(
        "{{\"nodes\":{nodes},\"actors\":{actors},\"workers\":{workers},\"task_summary\":{},\"failed\":{},\"objects\":{},\"object_summary\":{}}}",
        serde_json::to_string(&summary).unwrap_or_default(),
        serde_json::to_string(&failed).unwrap_or_default(),
        serde_json::to_string(&top_objects).unwrap_or_default(),
        serde_json::to_string(&objects_summary).unwrap_or_default(),
    ))
}
