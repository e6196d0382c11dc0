//! Starting worker processes, forwarding their output, and noticing when they exit.
//!
//! Workers are started from one long-lived thread (so `PR_SET_PDEATHSIG`, which fires when the
//! *thread* that forked a child ends, only fires when the driver process ends). Each worker gets
//! a monitor task that prefixes its stdout/stderr lines like Ray (`(Counter pid=4242) hello`),
//! kills it on request, and reports its exit to the node manager.

use super::Head;
use crate::ids::ProcIndex;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// Environment variables a worker process is started with.
pub(crate) const ENV_HEAD: &str = "RAY_RS_HEAD";
pub(crate) const ENV_PROC: &str = "RAY_RS_PROC";
pub(crate) const ENV_TOKEN: &str = "RAY_RS_TOKEN";
pub(crate) const ENV_DRIVER_PID: &str = "RAY_RS_DRIVER_PID";
pub(crate) const ENV_STORE_FD: &str = "RAY_RS_STORE_FD";
pub(crate) const ENV_STORE_SIZE: &str = "RAY_RS_STORE_SIZE";
pub(crate) const ENV_INLINE_MAX: &str = "RAY_RS_INLINE_MAX";
/// Comma-separated logical GPU ids given to the worker (read by ray-gpu).
pub const ENV_GPU_IDS: &str = "RAY_RS_GPU_IDS";

pub(crate) struct SpawnRequest {
    pub proc: ProcIndex,
    pub gpu_ids: Vec<usize>,
    pub killer: Arc<tokio::sync::Notify>,
}

/// A worker writes this, then a name and a newline, to stdout and stderr when it starts a task
/// or becomes an actor; the forwarder uses it as the prefix of the lines that follow on that
/// stream and does not print it. In-band, so a prefix is never ahead of or behind its lines.
pub(crate) const LABEL_MARKER: &[u8] = b"\0ray-label:";

pub(crate) struct SpawnerConfig {
    pub exe: PathBuf,
    pub socket: String,
    pub token: u64,
    pub log_to_driver: bool,
    pub store_fd: std::os::fd::RawFd,
    pub store_size: u64,
    pub inline_max: usize,
}

/// Runs on the spawner thread until the channel closes.
pub(crate) fn spawner_main(
    rx: std::sync::mpsc::Receiver<SpawnRequest>,
    head: Weak<Head>,
    rt: tokio::runtime::Handle,
    cfg: SpawnerConfig,
) {
    let driver_pid = std::process::id().to_string();
    let display = std::env::current_exe().unwrap_or_else(|_| cfg.exe.clone());
    for req in rx {
        let _enter = rt.enter();
        let ids: Vec<String> = req.gpu_ids.iter().map(|g| g.to_string()).collect();
        let ids = ids.join(",");
        let mut cmd = tokio::process::Command::new(&cfg.exe);
        cmd.arg0(&display)
            .arg("--ray-worker")
            .env(ENV_HEAD, &cfg.socket)
            .env(ENV_PROC, req.proc.to_string())
            .env(ENV_TOKEN, format!("{:016x}", cfg.token))
            .env(ENV_DRIVER_PID, &driver_pid)
            .env(ENV_GPU_IDS, &ids)
            .env(ENV_STORE_FD, cfg.store_fd.to_string())
            .env(ENV_STORE_SIZE, cfg.store_size.to_string())
            .env(ENV_INLINE_MAX, cfg.inline_max.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !req.gpu_ids.is_empty() {
            cmd.env("CUDA_VISIBLE_DEVICES", &ids);
        }
        let store_fd = cfg.store_fd;
        // SAFETY: runs in the child between fork and exec; fcntl is async-signal-safe. It lets
        // the object store's fd (close-on-exec in the driver) survive into this worker only.
        unsafe {
            cmd.pre_exec(move || {
                if libc::fcntl(store_fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        match cmd.spawn() {
            Ok(child) => {
                let pid = child.id().unwrap_or(0);
                if let Some(h) = head.upgrade() {
                    h.set_pid(req.proc, pid);
                }
                rt.spawn(monitor(child, req, head.clone(), cfg.log_to_driver));
            }
            Err(e) => {
                if let Some(h) = head.upgrade() {
                    h.worker_exited(
                        req.proc,
                        format!("could not be started from {}: {e}", cfg.exe.display()),
                    );
                }
            }
        }
    }
}

async fn monitor(mut child: tokio::process::Child, req: SpawnRequest, head: Weak<Head>, log: bool) {
    let pid = child.id().unwrap_or(0);
    let out = child
        .stdout
        .take()
        .map(|s| tokio::spawn(forward(s, pid, false, log)));
    let err = child
        .stderr
        .take()
        .map(|s| tokio::spawn(forward(s, pid, true, log)));
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            _ = req.killer.notified() => { let _ = child.start_kill(); }
        }
    };
    // Let the forwarders print what the worker wrote last (they end at EOF on the pipes).
    for handle in [out, err].into_iter().flatten() {
        let _ = tokio::time::timeout(Duration::from_millis(500), handle).await;
    }
    let cause = match status {
        Ok(s) => match (s.signal(), s.code()) {
            (Some(sig), _) => format!("was killed by signal {sig} ({})", signal_name(sig)),
            (None, Some(code)) => format!("exited with code {code}"),
            (None, None) => "exited".to_string(),
        },
        Err(e) => format!("ended in an unknown way ({e})"),
    };
    if let Some(h) = head.upgrade() {
        h.worker_exited(req.proc, cause);
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGTERM => "SIGTERM",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGINT => "SIGINT",
        libc::SIGPIPE => "SIGPIPE",
        _ => "signal",
    }
}

/// Copies a worker's output to the driver's, a whole line at a time, with Ray's prefix.
async fn forward<R: AsyncRead + Unpin>(r: R, pid: u32, is_err: bool, log: bool) {
    let mut r = BufReader::with_capacity(16 * 1024, r);
    let mut line = Vec::with_capacity(256);
    let mut name = String::new();
    loop {
        line.clear();
        match r.read_until(b'\n', &mut line).await {
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
        if !log {
            continue;
        }
        let mut out = Vec::with_capacity(line.len() + name.len() + 24);
        if name.is_empty() {
            let _ = write!(out, "(pid={pid}) ");
        } else {
            let _ = write!(out, "({name} pid={pid}) ");
        }
        out.extend_from_slice(&line);
        out.push(b'\n');
        if is_err {
            let _ = std::io::stderr().lock().write_all(&out);
        } else {
            let mut so = std::io::stdout().lock();
            let _ = so.write_all(&out);
            let _ = so.flush();
        }
    }
}
