//! A single-member etcd run by the head as its child when `--etcd` is not given.
//!
//! Data under `<temp-dir>/etcd`, ports chosen at run time, clients served over TLS with client
//! certificates required (the cluster CA), on 127.0.0.1 and the node's IP only; the peer port is
//! on 127.0.0.1. It runs in a session of its own and outlives a head daemon that is killed:
//! the head is only the first node plus etcd's location, so losing its daemon must be like
//! losing any node (issue 11), with the cluster's membership intact. The head's shutdown
//! (`stop()`) and `ray-rs stop` end it; a head started again on the same temp dir after a
//! crash needs `ray-rs stop` first.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{CliError, Result};
use crate::etcd::Etcd;
use crate::pki::TlsFiles;
use crate::tempdir::{NodeDir, write_pid};

/// The running etcd child.
#[derive(Debug)]
pub struct EtcdServer {
    child: Child,
    /// The URL clients on other machines use (`https://<node-ip>:<port>`).
    pub client_url: String,
    pid_file: PathBuf,
    log: PathBuf,
}

/// Whether `etcd` is on PATH; its path.
pub fn find_etcd() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcd"))
        .find(|p| p.is_file())
}

/// A listener on a port free on every address of `ip`'s family (etcd listens on loopback and
/// on the node's address with one port; a port found free on one of them can be in use on
/// the other), and its port. Held until etcd is about to bind, so two picks never coincide.
fn free_port(ip: IpAddr) -> Result<(TcpListener, u16)> {
    let any = match ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let l = TcpListener::bind((any, 0))
        .map_err(|e| CliError::io(format!("finding a free port for {ip}"), e))?;
    let port = l
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| CliError::io("finding a free port", e))?;
    Ok((l, port))
}

fn url(scheme: &str, ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{scheme}://{v4}:{port}"),
        IpAddr::V6(v6) => format!("{scheme}://[{v6}]:{port}"),
    }
}

impl EtcdServer {
    /// Starts etcd and waits until it answers (through `client`-style TLS, with `tls` as the
    /// client configuration), at most `timeout`.
    pub fn start(
        dir: &NodeDir,
        node_ip: IpAddr,
        files: &TlsFiles,
        tls: std::sync::Arc<rustls::ClientConfig>,
        timeout: Duration,
    ) -> Result<(EtcdServer, Etcd)> {
        let etcd_bin = find_etcd().ok_or(CliError::EtcdMissing)?;
        let log = dir.logs().join("etcd.log");
        let mut last_err = None;
        // A port found free can be taken before etcd binds it: try a few times.
        for _ in 0..3 {
            match Self::start_once(dir, &etcd_bin, node_ip, files, tls.clone(), timeout, &log) {
                Ok(pair) => return Ok(pair),
                Err(e) => {
                    tracing::warn!("starting etcd: {e}");
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or(CliError::EtcdChild {
            detail: "did not start".into(),
            log,
        }))
    }

    fn start_once(
        dir: &NodeDir,
        etcd_bin: &Path,
        node_ip: IpAddr,
        files: &TlsFiles,
        tls: std::sync::Arc<rustls::ClientConfig>,
        timeout: Duration,
        log: &Path,
    ) -> Result<(EtcdServer, Etcd)> {
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let (client_held, client_port) = free_port(node_ip)?;
        let (peer_held, peer_port) = free_port(loopback)?;
        let mut listen = vec![url("https", loopback, client_port)];
        if node_ip != loopback {
            listen.push(url("https", node_ip, client_port));
        }
        let client_url = url("https", node_ip, client_port);
        let peer_url = url("http", loopback, peer_port);
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| CliError::io(format!("opening {}", log.display()), e))?;
        let log_err = log_file
            .try_clone()
            .map_err(|e| CliError::io("duplicating the etcd log", e))?;
        let mut cmd = Command::new(etcd_bin);
        cmd.arg("--name")
            .arg("ray-rs")
            .arg("--data-dir")
            .arg(dir.etcd_data())
            .arg("--listen-client-urls")
            .arg(listen.join(","))
            .arg("--advertise-client-urls")
            .arg(&client_url)
            .arg("--listen-peer-urls")
            .arg(&peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer_url)
            .arg("--initial-cluster")
            .arg(format!("ray-rs={peer_url}"))
            .arg("--cert-file")
            .arg(&files.cert)
            .arg("--key-file")
            .arg(&files.key)
            .arg("--trusted-ca-file")
            .arg(&files.ca)
            .arg("--client-cert-auth")
            .arg("--logger")
            .arg("zap")
            .arg("--log-outputs")
            .arg("stderr")
            .env_remove(ray_net::TOKEN_ENV)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err);
        // SAFETY: the closure runs in the forked child before exec and only calls setsid,
        // which is async-signal-safe, on no shared state.
        unsafe {
            cmd.pre_exec(|| {
                // Its own session: a signal to the daemon's process group (a terminal's ^C)
                // does not reach it.
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        drop((client_held, peer_held));
        let child = cmd
            .spawn()
            .map_err(|e| CliError::io(format!("starting {}", etcd_bin.display()), e))?;
        let pid_file = dir.etcd_pid_file();
        write_pid(&pid_file, child.id())?;
        let mut server = EtcdServer {
            child,
            client_url: client_url.clone(),
            pid_file,
            log: log.to_path_buf(),
        };
        // The local client talks to the loopback listener.
        let etcd = Etcd::new(&url("https", loopback, client_port), Some(tls))?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = server
                .child
                .try_wait()
                .map_err(|e| CliError::io("waiting for etcd", e))?
            {
                let _ = std::fs::remove_file(&server.pid_file);
                return Err(CliError::EtcdChild {
                    detail: format!("exited with {status} while starting"),
                    log: server.log.clone(),
                });
            }
            match etcd.get(b"/ray-rs-health") {
                Ok(_) => return Ok((server, etcd)),
                Err(e) if Instant::now() > deadline => {
                    server.stop();
                    return Err(CliError::EtcdChild {
                        detail: format!("did not answer within {timeout:?}: {e}"),
                        log: server.log.clone(),
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops etcd: SIGTERM, then SIGKILL after 5 s; removes its pid file.
    pub fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = self.child.id() as libc::pid_t;
            // SAFETY: kill has no memory-safety preconditions; `pid` is our own unreaped child,
            // so it cannot have been recycled.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_picked_for_the_nodes_address_is_not_in_use_on_loopback() {
        // 1,000 ports in use on 127.0.0.1, as a busy machine's other listeners; etcd also
        // listens on loopback with the port picked for the node's address (here 127.0.0.2,
        // another address, as a machine's own would be).
        let held: Vec<TcpListener> = (0..1000)
            .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap())
            .collect();
        let taken: std::collections::HashSet<u16> = held
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        let node = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        for _ in 0..1000 {
            let (_picked, port) = free_port(node).unwrap();
            assert!(!taken.contains(&port), "port {port} is in use on 127.0.0.1");
        }
    }
}
