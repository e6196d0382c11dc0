//! Running `ray-rs start` in the background: the daemon re-executes itself with `--block
//! --ready-fd 3` in a new session (`setsid`), output to `<temp-dir>/logs/`, and reports on the
//! pipe when the node has joined, or why it failed.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::error::{CliError, Result};
use crate::membership;
use crate::tempdir::NodeDir;

/// How long a daemonized `start` waits for the node to join.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Reports readiness to a waiting `ray-rs start` (a no-op in the foreground).
pub(crate) struct Ready(Option<File>);

impl Ready {
    pub(crate) fn from_fd(fd: Option<i32>) -> Result<Ready> {
        let Some(fd) = fd else { return Ok(Ready(None)) };
        if fd < 3 {
            return Err(CliError::BadArg {
                flag: "--ready-fd",
                value: fd.to_string(),
                reason: "must be an inherited pipe (3 or more)".into(),
            });
        }
        // SAFETY: fcntl on an fd number has no memory-safety preconditions; it fails with EBADF
        // if the fd is not open.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
            return Err(CliError::io("--ready-fd", std::io::Error::last_os_error()));
        }
        // SAFETY: the fd is open (fcntl succeeded), was handed to this process by its parent
        // for this purpose only, and nothing else in this process owns it.
        Ok(Ready(Some(unsafe { File::from_raw_fd(fd) })))
    }

    pub(crate) fn send(&mut self, ok: bool, message: &str) {
        if let Some(mut f) = self.0.take() {
            let _ = write!(f, "{}\n{message}", if ok { "ok" } else { "error" });
        }
    }
}

pub(crate) fn daemonize(dir: &NodeDir) -> Result<()> {
    let log_path = dir
        .logs()
        .join(format!("ray-rs-{}.log", membership::now_ms()));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| CliError::io(format!("opening {}", log_path.display()), e))?;
    let log_err = log
        .try_clone()
        .map_err(|e| CliError::io("duplicating the log", e))?;
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two fds into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(CliError::io(
            "creating the readiness pipe",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: both fds were just created by pipe2 and are owned by nothing else.
    let (mut reader, writer) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    let exe = std::env::current_exe().map_err(|e| CliError::io("finding this executable", e))?;
    let mut cmd = Command::new(exe);
    cmd.args(std::env::args_os().skip(1))
        .arg("--block")
        .arg("--ready-fd")
        .arg("3")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    let wfd = writer.as_raw_fd();
    // SAFETY: runs in the forked child before exec; setsid, dup2 and fcntl are
    // async-signal-safe and touch no shared state.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let rc = if wfd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(wfd, 3)
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| CliError::io("starting the node daemon", e))?;
    drop(writer);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = (&mut reader).take(64 << 10).read_to_string(&mut text);
        let _ = tx.send(text);
    });
    let text = rx.recv_timeout(READY_TIMEOUT).unwrap_or_default();
    let (status, message) = text.split_once('\n').unwrap_or((text.as_str(), ""));
    if status == "ok" {
        println!("{message}");
        println!("Logs: {}", log_path.display());
        return Ok(());
    }
    let message = if message.is_empty() {
        let _ = child.kill();
        let _ = child.wait();
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(10).collect();
        format!(
            "it exited before the node was ready; last log lines:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    } else {
        message.to_string()
    };
    Err(CliError::Daemon {
        message,
        log: log_path,
    })
}
