//! Helpers for the cluster tests: real `ray-rs` processes, real etcd, each node with its own
//! temp dir, cleaned up (stopped) even when a test fails.

#![allow(dead_code)]

pub mod prom;
pub mod webdriver;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Generous limit for anything a test waits for.
pub const WAIT: Duration = Duration::from_secs(60);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ray-rs")
}

/// Fails (never skips) when etcd is missing: scripts/test.sh installs it.
pub fn require_etcd() {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("etcd").is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "etcd is not on PATH: run scripts/install-cluster-deps.sh (apt-get install etcd-server)"
    );
}

/// A node's temp dir; dropping it stops whatever runs under it and removes it.
pub struct NodeDir {
    pub path: PathBuf,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl NodeDir {
    pub fn new(label: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("ray-cli-it-{}-{label}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        NodeDir { path }
    }

    pub fn arg(&self) -> &str {
        self.path.to_str().unwrap()
    }

    pub fn pid(&self, file: &str) -> Option<i32> {
        std::fs::read_to_string(self.path.join(file))
            .ok()
            .and_then(|t| t.trim().parse().ok())
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.path.join("auth_token"))
            .unwrap()
            .trim()
            .to_string()
    }
}

impl Drop for NodeDir {
    fn drop(&mut self) {
        let _ = Command::new(bin())
            .args(["stop", "--temp-dir", self.arg()])
            .output();
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A head started with `--block` as a child of the test; its output lines are collected.
pub struct Head {
    pub child: Child,
    pub address: String,
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl Head {
    /// Starts `ray-rs start --head --block` with `extra` arguments; `wrap` prefixes the command
    /// (e.g. `ip netns exec NS`). Waits for the "started at" line.
    pub fn start(dir: &NodeDir, extra: &[&str]) -> Head {
        require_etcd();
        // Tests run side by side: the dashboard takes any free port unless a test names one.
        let dashboard: &[&str] = if extra.contains(&"--dashboard-port") {
            &[]
        } else {
            &["--dashboard-port", "0"]
        };
        let mut child = Command::new(bin())
            .args([
                "start",
                "--head",
                "--block",
                "--port",
                "0",
                "--temp-dir",
                dir.arg(),
            ])
            .args(dashboard)
            .args(extra)
            .env_remove("RAY_RS_AUTH_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let (lines, tx) = (lines.clone(), tx.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    eprintln!("[head] {line}");
                    lines.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        let address = wait_line(&rx, |l| {
            l.split_once(" started at ")
                .map(|(_, a)| a.trim().to_string())
        })
        .unwrap_or_else(|| {
            panic!(
                "the head did not start; output: {:?}",
                lines.lock().unwrap()
            )
        });
        Head {
            child,
            address,
            lines,
        }
    }

    /// Whether any output line so far contains `text`.
    pub fn said(&self, text: &str) -> bool {
        self.lines.lock().unwrap().iter().any(|l| l.contains(text))
    }

    /// Waits for the head process to exit.
    pub fn wait_exit(&mut self) -> bool {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Head {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_line<T>(rx: &Receiver<String>, mut f: impl FnMut(&str) -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let line = rx.recv_timeout(left).ok()?;
        if let Some(v) = f(&line) {
            return Some(v);
        }
    }
}

/// Runs `ray-rs` with `args`, the token in the environment (never in argv).
pub fn ray_rs(args: &[&str], token: Option<&str>, wrap: &[&str]) -> Output {
    let mut cmd = if wrap.is_empty() {
        Command::new(bin())
    } else {
        let mut c = Command::new(wrap[0]);
        c.args(&wrap[1..]).arg(bin());
        c
    };
    cmd.args(args).env_remove("RAY_ADDRESS");
    match token {
        Some(t) => cmd.env("RAY_RS_AUTH_TOKEN", t),
        None => cmd.env_remove("RAY_RS_AUTH_TOKEN"),
    };
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    eprintln!(
        "$ ray-rs {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `ray-rs ARGS --format json` against the cluster whose node listens at `address` (token and
/// CA from `dir`); asserts success and returns the parsed output.
pub fn ray_rs_json(args: &[&str], address: &str, dir: &NodeDir, token: &str) -> Value {
    let mut all = args.to_vec();
    all.extend_from_slice(&[
        "--format",
        "json",
        "--address",
        address,
        "--temp-dir",
        dir.arg(),
    ]);
    let out = ray_rs(&all, Some(token), &[]);
    assert!(
        out.status.success(),
        "ray-rs {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// `ray-rs start --address` (daemonized); asserts success.
pub fn join(head: &Head, dir: &NodeDir, token: &str, extra: &[&str], wrap: &[&str]) {
    let mut args = vec![
        "start",
        "--address",
        &head.address,
        "--port",
        "0",
        "--temp-dir",
        dir.arg(),
    ];
    args.extend_from_slice(extra);
    let out = ray_rs(&args, Some(token), wrap);
    assert!(
        out.status.success(),
        "join failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("joined cluster"));
}

/// `ray-rs status --format json` against `address`.
pub fn status(address: &str, temp_dir: &Path, token: &str, wrap: &[&str]) -> Value {
    let out = ray_rs(
        &[
            "status",
            "--format",
            "json",
            "--address",
            address,
            "--temp-dir",
            temp_dir.to_str().unwrap(),
        ],
        Some(token),
        wrap,
    );
    assert!(
        out.status.success(),
        "status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Polls `f` until it returns `Some`, up to [`WAIT`].
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether a process exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .map(|(_, r)| r.trim_start().chars().next());
            !matches!(state, Some(Some('Z' | 'X')))
        }
        Err(_) => false,
    }
}

/// The nodes of a status report, by id.
pub fn nodes(report: &Value) -> Vec<Value> {
    report["nodes"].as_array().unwrap().clone()
}

/// The variable that tells a test binary's `driver_main` which driver to be.
pub const MODE: &str = "RAY_CLUSTER_DRIVER";

/// Runs this binary as a driver in `mode` against `address`.
pub fn driver(mode: &str, address: &str, token: &str) -> std::process::Output {
    driver_with_token(mode, address, Some(token))
}

/// [`driver`], with `RAY_RS_AUTH_TOKEN` set to `token` or, for `None`, unset.
pub fn driver_with_token(mode: &str, address: &str, token: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "driver_main", "--nocapture", "--test-threads=1"])
        .env(MODE, mode)
        .env("RAY_ADDRESS", address);
    match token {
        Some(t) => cmd.env("RAY_RS_AUTH_TOKEN", t),
        None => cmd.env_remove("RAY_RS_AUTH_TOKEN"),
    };
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A driver that hangs is killed after a generous time, so the test fails instead.
    let pid = child.id();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(WAIT * 3).is_err() {
            eprintln!(
                "[driver {pid}] still running after {:?}: killing it",
                WAIT * 3
            );
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    });
    let out = child.wait_with_output().unwrap();
    let _ = done_tx.send(());
    let _ = watchdog.join();
    eprintln!(
        "[driver {mode}] status {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The pid of the `ray-rs` daemon that started this worker (its parent).
pub fn my_daemon() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(0)
}

/// Starts this binary as a driver in `mode` against `address` without waiting for it (output
/// piped), with `env` set too; `finish`-style collection is the caller's.
pub fn spawn_driver(
    mode: &str,
    address: &str,
    token: &str,
    env: &[(&str, &Path)],
) -> std::process::Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "driver_main", "--nocapture", "--test-threads=1"])
        .env(MODE, mode)
        .env("RAY_ADDRESS", address)
        .env("RAY_RS_AUTH_TOKEN", token);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Processes whose command line names something under `dir` (a node's daemon and the workers
/// it runs from its binary cache).
pub fn processes_under(dir: &Path) -> Vec<u32> {
    processes_matching(dir, |_| true)
}

/// The `ray-rs` workers under `dir`: processes running a cached driver binary.
pub fn workers_under(dir: &Path) -> Vec<u32> {
    processes_matching(dir, |cmdline| {
        cmdline.windows(12).any(|w| w == b"--ray-worker")
    })
}

fn processes_matching(dir: &Path, also: impl Fn(&[u8]) -> bool) -> Vec<u32> {
    let needle = dir.to_str().unwrap().as_bytes().to_vec();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.windows(needle.len()).any(|w| w == needle.as_slice()) && also(&c))
        })
        .collect()
}

/// A node's `start` arguments: `cpus` CPUs, no GPU, the custom resource `spare`, then `extra`.
pub fn spare_node<'a>(cpus: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--num-cpus",
        cpus,
        "--num-gpus",
        "0",
        "--resources",
        "spare=1",
    ];
    args.extend_from_slice(extra);
    args
}

/// What a process printed: its standard output, then its standard error.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
