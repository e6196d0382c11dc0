//! Fencing: what a node does when etcd says its lease expired, i.e. the cluster declared it
//! dead while it was paused (SIGSTOP), cut off, or starved.
//!
//! By then the other nodes have retried its tasks, restarted its actors elsewhere and refuse
//! its sessions (they know its incarnation is dead), so nothing it computed meanwhile may be
//! used. It kills its workers at once and starts over as a new incarnation of the same node:
//! the daemon executes itself again (same pid, same arguments, same temp dir) with
//! [`REJOIN_ENV`] naming its node id and next incarnation, so that every piece of state of the
//! old incarnation (sessions, objects, jobs) is gone with the old process image.
//!
//! The head also runs etcd and holds the cluster's CA; its daemon is not restarted in place:
//! it stops (its workers with it) with an error saying to start it again.

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;

/// Set for a daemon executed again after its lease expired: `<node id>:<incarnation>`.
pub const REJOIN_ENV: &str = "RAY_RS_REJOIN";

/// The node id and incarnation to rejoin as, if this daemon is a fenced node's next one.
pub fn rejoin_from_env() -> Option<(u64, u64)> {
    let v = std::env::var(REJOIN_ENV).ok()?;
    let (id, inc) = v.split_once(':')?;
    Some((id.parse().ok()?, inc.parse().ok()?))
}

/// The arguments to execute again: this process's own, without the daemonizing `start`'s
/// readiness pipe (that `start` has returned long ago).
fn own_arguments() -> std::io::Result<Vec<CString>> {
    let raw = std::fs::read("/proc/self/cmdline")?;
    let mut args: Vec<&[u8]> = raw.split(|b| *b == 0).filter(|a| !a.is_empty()).collect();
    if let Some(i) = args.iter().position(|a| *a == b"--ready-fd") {
        let end = (i + 2).min(args.len());
        args.drain(i..end);
    }
    args.retain(|a| !a.starts_with(b"--ready-fd="));
    args.into_iter()
        .map(|a| CString::new(a).map_err(std::io::Error::other))
        .collect()
}

fn environment(node_id: u64, incarnation: u64) -> std::io::Result<Vec<CString>> {
    let mut env = Vec::new();
    for (k, v) in std::env::vars_os() {
        if k == OsStr::new(REJOIN_ENV) {
            continue;
        }
        let mut kv = k.as_bytes().to_vec();
        kv.push(b'=');
        kv.extend_from_slice(v.as_bytes());
        env.push(CString::new(kv).map_err(std::io::Error::other)?);
    }
    env.push(
        CString::new(format!("{REJOIN_ENV}={node_id}:{incarnation}"))
            .map_err(std::io::Error::other)?,
    );
    Ok(env)
}

/// Stops everything this incarnation runs (`kill_workers`) and starts the next one, or, for
/// the head, exits. Does not return.
pub fn fence(node_id: u64, incarnation: u64, is_head: bool, kill_workers: &dyn Fn()) -> ! {
    kill_workers();
    if is_head {
        tracing::error!(
            "this head node's lease expired: the cluster declared it dead; its workers were \
             stopped and the daemon exits. Start it again (ray-rs start --head)"
        );
        std::process::exit(70);
    }
    tracing::warn!(
        "this node's lease expired: the cluster declared it dead; its workers were stopped, \
         and it rejoins as incarnation {incarnation} of node {node_id}"
    );
    let exec = || -> std::io::Result<std::convert::Infallible> {
        let args = own_arguments()?;
        let env = environment(node_id, incarnation)?;
        // The executable's own path, not /proc/self/exe: the process keeps its name
        // (`ray-rs`), by which `ray-rs stop` knows it.
        let path = std::fs::read_link("/proc/self/exe")?;
        let exe = CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
        let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
        envp.push(std::ptr::null());
        // SAFETY: `exe`, every `argv` and `envp` entry are NUL-terminated strings that outlive
        // the call, and both arrays end with a null pointer, as execve requires.
        unsafe { libc::execve(exe.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        Err(std::io::Error::last_os_error())
    };
    let Err(err) = exec();
    tracing::error!("cannot start this node again after its lease expired: {err}; exiting");
    std::process::exit(70);
}
