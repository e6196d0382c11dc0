//! The command side of `ray-rs`: asking a node over its control service (`ask`), `status`
//! and `stop`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ray_net::{AuthToken, HandshakeConfig, Role};

use crate::args::{Format, StatusArgs, StopArgs, resolve};
use crate::control::{self, Request, Response, StatusReport};
use crate::error::{CliError, Result};
use crate::node::NodeFile;
use crate::pki::TlsFiles;
use crate::tempdir::{NodeDir, process_alive, read_pid};

/// `ray-rs stop`: stops the daemon started under the temp dir, then its etcd if still there.
pub fn stop(args: StopArgs) -> Result<()> {
    let dir = NodeDir::new(args.temp_dir);
    let mut stopped = false;
    if let Some(pid) = read_pid(&dir.pid_file())?
        && process_alive(pid, "ray-rs")
    {
        terminate(pid, "ray-rs", Duration::from_secs(20));
        println!(
            "ray-rs: stopped the node daemon (pid {pid}) under {}",
            dir.root.display()
        );
        stopped = true;
    }
    if let Some(pid) = read_pid(&dir.etcd_pid_file())?
        && process_alive(pid, "etcd")
    {
        terminate(pid, "etcd", Duration::from_secs(10));
        println!("ray-rs: stopped etcd (pid {pid})");
        stopped = true;
    }
    let _ = std::fs::remove_file(dir.pid_file());
    let _ = std::fs::remove_file(dir.etcd_pid_file());
    let _ = std::fs::remove_file(dir.node_file());
    crate::dashboard::forget(&dir);
    if !stopped {
        println!("ray-rs: no node running under {}", dir.root.display());
    }
    Ok(())
}

/// SIGTERM, wait up to `grace`, then SIGKILL; waits until the process is gone.
fn terminate(pid: i32, comm: &str, grace: Duration) {
    // SAFETY: kill has no memory-safety preconditions; the pid was just checked to be a live
    // process with the expected name.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while process_alive(pid, comm) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if process_alive(pid, comm) {
        tracing::warn!("{comm} (pid {pid}) did not stop within {grace:?}; killing it");
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while process_alive(pid, comm) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Asks a node for the cluster's status.
pub fn fetch_status(args: &StatusArgs) -> Result<StatusReport> {
    let (reply, addr) = ask(
        args.address.as_deref(),
        &args.temp_dir,
        None,
        &Request::Status,
    )?;
    match reply {
        Response::Status(report) => Ok(report),
        _ => Err(CliError::Protocol {
            peer: addr.to_string(),
            detail: "unexpected reply to Status".into(),
        }),
    }
}

/// Sends `request` to a node: the one at `at`, else at `address` (default: `RAY_ADDRESS`, else
/// the node started under `temp_dir`), with the token and CA found there; returns the reply and
/// the address asked.
pub fn ask(
    address: Option<&str>,
    temp_dir: &Path,
    at: Option<SocketAddr>,
    request: &Request,
) -> Result<(Response, SocketAddr)> {
    let dir = NodeDir::new(temp_dir.to_path_buf());
    let address = match (address.map(str::to_string), std::env::var("RAY_ADDRESS")) {
        (Some(a), _) => a.clone(),
        (None, Ok(a)) if !a.is_empty() => a,
        _ => match std::fs::read(dir.node_file()) {
            Ok(bytes) => serde_json::from_slice::<NodeFile>(&bytes)
                .map(|f| f.address)
                .unwrap_or_else(|_| format!("127.0.0.1:{}", crate::args::DEFAULT_PORT)),
            Err(_) => format!("127.0.0.1:{}", crate::args::DEFAULT_PORT),
        },
    };
    let addr = match at {
        Some(a) => a,
        None => resolve("--address", &address)?,
    };
    let token = AuthToken::from_env_or_file(&dir.token_file())?;
    let ca = std::fs::read(TlsFiles::under(&dir.root).ca).ok();
    let tls = ray_net::client_config(ca.as_deref(), None)?;
    let handshake = HandshakeConfig::new(token, None, Role::Cli, "ray-rs");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::io("starting the async runtime", e))?;
    let (reply, _, _) = runtime.block_on(control::request(addr, tls, &handshake, request))?;
    Ok((reply, addr))
}

/// `ray-rs status`.
pub fn status(args: StatusArgs) -> Result<()> {
    let report = fetch_status(&args)?;
    match args.format {
        Format::Json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).map_err(|e| CliError::Pki(e.to_string()))?
            );
        }
        Format::Text => {
            println!("cluster {}", report.cluster_id);
            println!(
                "{:<6} {:<22} {:<6} {:<5} resources (used/total)",
                "node", "address", "state", "head"
            );
            for n in &report.nodes {
                let res: Vec<String> = n
                    .resources_total
                    .iter()
                    .map(|(k, t)| {
                        format!(
                            "{k} {}/{}",
                            n.resources_used.get(k).copied().unwrap_or(0.0),
                            t
                        )
                    })
                    .collect();
                println!(
                    "{:<6} {:<22} {:<6} {:<5} {}",
                    n.node_id,
                    n.address,
                    if n.alive { "alive" } else { "dead" },
                    if n.is_head { "yes" } else { "" },
                    res.join(", ")
                );
                let a = &n.activity;
                let actors: Vec<String> =
                    a.actors.iter().map(|(k, v)| format!("{k} x{v}")).collect();
                println!(
                    "       workers {}, actors: {}; copied in {}, out {}",
                    a.workers,
                    if actors.is_empty() {
                        "none".to_string()
                    } else {
                        actors.join(", ")
                    },
                    bytes(a.bytes_pulled),
                    bytes(a.bytes_served)
                );
            }
            if report.jobs.is_empty() {
                println!("no jobs");
            } else {
                println!(
                    "{:<8} {:<9} {:<6} {:<9} program",
                    "job", "state", "node", "pid"
                );
                for j in &report.jobs {
                    println!(
                        "{:<8} {:<9} {:<6} {:<9} {}",
                        j.id, j.state, j.node_id, j.driver_pid, j.name
                    );
                }
            }
        }
    }
    Ok(())
}

/// `n` bytes, readably.
fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// The temp dir's log directory (for messages).
pub fn log_dir(temp_dir: &Path) -> PathBuf {
    NodeDir::new(temp_dir).logs()
}
