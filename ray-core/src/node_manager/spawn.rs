//! Starting worker processes, forwarding their output, and noticing when they exit.
//!
//! Workers are started from one long-lived thread (so `PR_SET_PDEATHSIG`, which fires when the
//! *thread* that forked a child ends, only fires when the node manager's process ends). Each
//! worker inherits one end of a fresh socket pair — its connection to the node manager, the
//! only way in — and the object store's file; both are close-on-exec everywhere else. Each
//! worker gets a monitor task that prefixes its stdout/stderr lines like Ray
//! (`(Counter pid=4242) hello`), kills it on request, and reports its exit. The spawner thread
//! also samples the workers' memory once a second (for the report of an OOM kill): on a plain
//! thread, because a periodic tokio timer per worker measurably slows every call (tokio's
//! workers then wake each other far more often).

use super::exits::Watch;
use super::runtime::{Inner, serve_worker};
use crate::ids::ProcId;
use std::collections::HashMap;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// What is known about each running worker's memory, by pid.
type Watches = Arc<Mutex<HashMap<u32, Watch>>>;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

/// Environment variables a worker process is started with. `RAY_RS_NODE_FD` (its end of the
/// socket pair) is what makes the process a worker.
pub(crate) const ENV_NODE_FD: &str = "RAY_RS_NODE_FD";
pub(crate) const ENV_PARENT_PID: &str = "RAY_RS_PARENT_PID";
pub(crate) const ENV_STORE_FD: &str = "RAY_RS_STORE_FD";
pub(crate) const ENV_STORE_SIZE: &str = "RAY_RS_STORE_SIZE";
pub(crate) const ENV_INLINE_MAX: &str = "RAY_RS_INLINE_MAX";
/// Comma-separated logical GPU ids given to the worker (read by ray-gpu).
pub const ENV_GPU_IDS: &str = "RAY_RS_GPU_IDS";

pub(crate) struct SpawnRequest {
    pub proc: ProcId,
    pub gpu_ids: Vec<usize>,
    /// The executable: its job's.
    pub exe: PathBuf,
    pub killer: Arc<tokio::sync::Notify>,
    /// Where its output goes.
    pub log_sink: LogSink,
}

/// Where a worker's output lines go.
#[derive(Clone)]
pub(crate) enum LogSink {
    /// This process's stdout and stderr.
    Here,
    /// The connection of a driver attached to this node.
    Driver(crate::ids::ProcId, crate::transport::Conn),
    /// The node of the job's driver, over this node's session there; `tag` says where the
    /// line was printed.
    Node {
        inner: Weak<Inner>,
        node: crate::ids::NodeId,
        job: crate::ids::JobId,
        tag: String,
    },
}

/// Longest line forwarded as one; a longer one is cut into pieces of this size.
const MAX_LINE: u64 = 64 * 1024;

/// A worker writes this, then a name and a newline, to stdout and stderr when it starts a task
/// or becomes an actor; the forwarder uses it as the prefix of the lines that follow on that
/// stream and does not print it. In-band, so a prefix is never ahead of or behind its lines.
pub(crate) const LABEL_MARKER: &[u8] = b"\0ray-label:";

pub(crate) struct SpawnerConfig {
    pub log_to_driver: bool,
    /// Where each worker's output is also kept (a node daemon's, or a driver's with a
    /// dashboard).
    pub worker_logs: Option<Arc<crate::worker_logs::WorkerLogs>>,
    pub store_fd: std::os::fd::RawFd,
    pub store_size: u64,
    pub inline_max: usize,
}

/// Runs on the spawner thread until the channel closes.
pub(crate) fn spawner_main(
    rx: std::sync::mpsc::Receiver<SpawnRequest>,
    node: Weak<Inner>,
    rt: tokio::runtime::Handle,
    cfg: SpawnerConfig,
) {
    let parent_pid = std::process::id().to_string();
    let own_exe = std::env::current_exe().ok();
    let watches: Watches = Arc::default();
    loop {
        let req = match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(req) => req,
            Err(RecvTimeoutError::Timeout) => {
                let mut w = watches.lock().unwrap_or_else(|e| e.into_inner());
                for (pid, watch) in w.iter_mut() {
                    watch.sample(*pid);
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let _enter = rt.enter();
        // A worker of this process's own executable shows under that name (not /proc/self/exe).
        let display = match (&own_exe, req.exe == std::path::Path::new("/proc/self/exe")) {
            (Some(own), true) => own.clone(),
            _ => req.exe.clone(),
        };
        let started = spawn_one(&cfg, &display, &parent_pid, &req);
        let Some(n) = node.upgrade() else { return };
        match started {
            Ok((child, conn)) => {
                let pid = child.id().unwrap_or(0);
                n.run(|st| st.set_pid(req.proc, pid));
                serve_worker(&n, req.proc, conn);
                watches
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(pid, Watch::start(pid));
                let out = Output {
                    log: cfg.log_to_driver,
                    keep: cfg.worker_logs.clone(),
                };
                let monitor = monitor(child, req, node.clone(), watches.clone(), out);
                rt.spawn(monitor);
            }
            Err(e) => {
                let cause = format!(
                    "could not be started from {}: {}",
                    req.exe.display(),
                    crate::error::Error::io("starting a worker", e)
                );
                n.run(|st| st.spawn_failed(req.proc, &cause));
            }
        }
    }
}

fn spawn_one(
    cfg: &SpawnerConfig,
    display: &std::path::Path,
    parent_pid: &str,
    req: &SpawnRequest,
) -> std::io::Result<(tokio::process::Child, std::os::unix::net::UnixStream)> {
    // Both ends are close-on-exec; the child's end is made inheritable in the child only.
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    let ids: Vec<String> = req.gpu_ids.iter().map(|g| g.to_string()).collect();
    let ids = ids.join(",");
    let mut cmd = tokio::process::Command::new(&req.exe);
    cmd.arg0(display)
        .arg("--ray-worker")
        .env(ENV_NODE_FD, theirs.as_raw_fd().to_string())
        .env(ENV_PARENT_PID, parent_pid)
        .env(ENV_GPU_IDS, &ids)
        // Ray's rule: a worker sees exactly the GPUs it was given, none if it asked for none.
        .env("CUDA_VISIBLE_DEVICES", &ids)
        .env(ENV_STORE_FD, cfg.store_fd.to_string())
        .env(ENV_STORE_SIZE, cfg.store_size.to_string())
        .env(ENV_INLINE_MAX, cfg.inline_max.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // The cluster token a node daemon was started with is not the work's to see (nor its
    // subprocesses', core dumps' or /proc's): a worker speaks only to its node, over the socket
    // pair.
    #[cfg(feature = "cluster")]
    cmd.env_remove(ray_net::TOKEN_ENV);
    let inherit = [cfg.store_fd, theirs.as_raw_fd()];
    // SAFETY: runs in the child between fork and exec; fcntl is async-signal-safe. It lets the
    // object store's fd and the child's end of its socket pair (both close-on-exec in this
    // process) survive into this worker only.
    unsafe {
        cmd.pre_exec(move || {
            for fd in inherit {
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    drop(theirs);
    Ok((child, ours))
}

/// What happens to a worker's output besides reading its labels.
struct Output {
    /// Forwarded to the driver.
    log: bool,
    /// Kept in the node's worker log files.
    keep: Option<Arc<crate::worker_logs::WorkerLogs>>,
}

async fn monitor(
    mut child: tokio::process::Child,
    req: SpawnRequest,
    node: Weak<Inner>,
    watches: Watches,
    output: Output,
) {
    let pid = child.id().unwrap_or(0);
    let sink = req.log_sink.clone();
    let log = output.log;
    let keep = |is_err| output.keep.as_ref().and_then(|k| k.writer(pid, is_err));
    let out = child.stdout.take().map(|s| {
        let file = keep(false);
        tokio::spawn(forward(s, pid, false, log, file, sink.clone()))
    });
    let err = child.stderr.take().map(|s| {
        let file = keep(true);
        tokio::spawn(forward(s, pid, true, log, file, sink))
    });
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            _ = req.killer.notified() => { let _ = child.start_kill(); }
        }
    };
    let watch = watches
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&pid)
        .unwrap_or_default();
    // Let the forwarders print what the worker wrote last (they end at EOF on the pipes).
    for handle in [out, err].into_iter().flatten() {
        let _ = tokio::time::timeout(Duration::from_millis(500), handle).await;
    }
    let cause = watch.describe(status);
    if let Some(keep) = &output.keep {
        keep.exited(pid);
    }
    if let Some(n) = node.upgrade() {
        n.run(|st| st.process_exited(req.proc, cause));
    }
}

/// Copies a worker's output to `sink`, a whole line at a time (at most [`MAX_LINE`] bytes),
/// with Ray's prefix, and to its log file (`file`) as written.
async fn forward<R: AsyncRead + Unpin>(
    r: R,
    pid: u32,
    is_err: bool,
    log: bool,
    mut file: Option<crate::worker_logs::LogWriter>,
    sink: LogSink,
) {
    let mut r = BufReader::with_capacity(16 * 1024, r);
    let mut line = Vec::with_capacity(256);
    let mut name = String::new();
    let tag = match &sink {
        LogSink::Node { tag, .. } => format!(", {tag}"),
        _ => String::new(),
    };
    loop {
        line.clear();
        match (&mut r).take(MAX_LINE).read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        if let Some(label) = line.strip_prefix(LABEL_MARKER) {
            name = String::from_utf8_lossy(label).into_owned();
            continue;
        }
        if let Some(f) = &mut file {
            f.line(&line);
        }
        if !log {
            continue;
        }
        let mut out = Vec::with_capacity(line.len() + name.len() + tag.len() + 24);
        if name.is_empty() {
            let _ = write!(out, "(pid={pid}{tag}) ");
        } else {
            let _ = write!(out, "({name} pid={pid}{tag}) ");
        }
        out.extend_from_slice(&line);
        out.push(b'\n');
        match &sink {
            LogSink::Here if is_err => {
                let _ = std::io::stderr().lock().write_all(&out);
            }
            LogSink::Here => {
                let mut so = std::io::stdout().lock();
                let _ = so.write_all(&out);
                let _ = so.flush();
            }
            LogSink::Driver(driver, conn) => super::remote::send_log(conn, *driver, is_err, out),
            LogSink::Node {
                inner, node, job, ..
            } => {
                let Some(n) = inner.upgrade() else { return };
                let msg = crate::protocol::worker::FromWorker::Log {
                    job: *job,
                    stderr: is_err,
                    line: out,
                };
                n.send_node_now(*node, msg);
            }
        }
    }
}
