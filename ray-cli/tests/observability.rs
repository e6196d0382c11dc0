//! Seeing what a cluster does: `ray-rs logs` (an actor's, a task's, a pid's output, and
//! `--follow`), the head's dashboard (the cluster token on every request, every node's rows, a
//! live page in headless Chromium with its log page) and each node's Prometheus `/metrics`
//! (checked by a strict parser of the text format). Real `ray-rs` daemons, etcd, drivers (this
//! test binary run again) and a real browser driven over WebDriver.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use common::prom;
use common::webdriver::Browser;
use common::*;

#[ray::remote]
struct Talker {}

#[ray::remote]
impl Talker {
    fn new() -> Self {
        Talker {}
    }
    fn say(&self, what: String) -> u32 {
        println!("{what}");
        eprintln!("(stderr) {what}");
        std::process::id()
    }
}

#[ray::remote]
fn shout() -> u32 {
    println!("task says hi");
    std::process::id()
}

#[ray::remote]
fn tick() -> u64 {
    std::thread::sleep(Duration::from_millis(40));
    1
}

#[ray::remote]
fn explode() -> u64 {
    panic!("exploded on purpose")
}

/// Where a driver looks for the test's signals (files).
const SIGNALS: &str = "RAY_TEST_SIGNALS";

fn signalled(name: &str) -> bool {
    let dir = std::env::var(SIGNALS).expect("the signal directory");
    Path::new(&dir).join(name).exists()
}

fn wait_signal(name: &str) {
    let deadline = Instant::now() + WAIT * 2;
    while !signalled(name) {
        assert!(
            Instant::now() < deadline,
            "no `{name}` signal from the test"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The driver. A no-op unless `RAY_CLUSTER_DRIVER` is set.
#[test]
fn driver_main() {
    let Ok(mode) = std::env::var(MODE) else {
        return;
    };
    ray::init(ray::Config::default()).expect("joins the cluster");
    let talker = Talker::remote();
    let pid = ray::get(&talker.say("hello from the talker")).unwrap();
    println!("ACTOR {} PID {pid}", talker.actor_id());
    match mode.as_str() {
        "talk" => {
            let task = shout::remote();
            ray::get(&task).unwrap();
            println!("TASK {}", task.id());
            wait_signal("go");
            ray::get(&talker.say("a later line")).unwrap();
            println!("SAID LATER");
            wait_signal("stop");
        }
        "live" => {
            assert!(ray::get(&explode::remote()).is_err());
            println!("TICKING");
            while !signalled("stop") {
                ray::get(&tick::remote()).unwrap();
            }
        }
        other => panic!("unknown mode {other}"),
    }
    drop(talker);
    ray::shutdown();
}

/// A driver running while the test looks at the cluster; its stdout lines are collected.
struct Background {
    child: Child,
    rx: Receiver<String>,
    signals: PathBuf,
}

impl Background {
    fn start(mode: &str, address: &str, token: &str, dir: &NodeDir) -> Background {
        let signals = dir.path.with_extension("signals");
        let _ = std::fs::remove_dir_all(&signals);
        std::fs::create_dir_all(&signals).unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "driver_main", "--nocapture", "--test-threads=1"])
            .env(MODE, mode)
            .env("RAY_ADDRESS", address)
            .env("RAY_RS_AUTH_TOKEN", token)
            .env(SIGNALS, &signals)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                eprintln!("[driver] {line}");
                let _ = tx.send(line);
            }
        });
        Background { child, rx, signals }
    }

    /// Waits for a line starting with `prefix`; returns the rest of it.
    fn line(&self, prefix: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("the driver printed no `{prefix}` line"));
            let line = self
                .rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("the driver printed no `{prefix}` line"));
            // The first line may follow libtest's own `test driver_main ... ` on the same line.
            if let Some((_, rest)) = line.split_once(prefix) {
                return rest.to_string();
            }
        }
    }

    fn signal(&self, name: &str) {
        std::fs::write(self.signals.join(name), b"").unwrap();
    }

    /// Tells it to finish and waits for it.
    fn finish(mut self) {
        self.signal("stop");
        let deadline = Instant::now() + WAIT;
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the driver did not finish");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.signals);
    }
}

/// `ACTOR <id> PID <pid>` → (id, pid).
fn actor_line(rest: &str) -> (String, u32) {
    let (id, pid) = rest.split_once(" PID ").expect("ACTOR id PID pid");
    (id.to_string(), pid.trim().parse().unwrap())
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

#[test]
fn ray_rs_logs_prints_an_actors_a_tasks_and_a_pids_output_and_follows_it() {
    let dir = NodeDir::new("logs-head");
    let head = Head::start(&dir, &["--num-cpus", "2"]);
    let token = dir.token();
    let bg = Background::start("talk", &head.address, &token, &dir);
    let (actor, pid) = actor_line(&bg.line("ACTOR "));
    let task = bg.line("TASK ");
    let at = ["--address", head.address.as_str(), "--temp-dir", dir.arg()];
    let logs = |target: &str| {
        let mut args = vec!["logs", target];
        args.extend_from_slice(&at);
        ray_rs(&args, Some(&token), &[])
    };

    // An actor's output: stdout lines on stdout, stderr lines on stderr, a header naming it.
    let out = logs(&actor);
    assert!(out.status.success());
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(stdout, "hello from the talker\n", "{stderr}");
    assert!(
        stderr.contains("(stderr) hello from the talker"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("output of actor {actor}")) && stderr.contains("Talker"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("worker pid {pid} on node ")),
        "{stderr}"
    );
    // The same worker by pid; a task's worker by the task's id.
    let out = logs(&pid.to_string());
    assert_eq!(text(&out.stdout), "hello from the talker\n");
    let out = logs(&task);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("task says hi"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stderr).contains("shout"), "{}", text(&out.stderr));
    // The node keeps them per worker, in files.
    let file = dir.path.join(format!("logs/workers/worker-{pid}.out"));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "hello from the talker\n"
    );

    // What does not exist is named, with where to look.
    let out = logs("999999");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("found no worker pid 999999") && err.contains("ray-rs list workers"),
        "{err}"
    );
    let out = logs("no-such-id");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("found no actor or task `no-such-id`") && err.contains("ray-rs list actors"),
        "{err}"
    );

    // --follow prints what the actor says later, once.
    let mut follow = Command::new(bin())
        .args(["logs", &actor, "--follow"])
        .args(at)
        .env("RAY_RS_AUTH_TOKEN", &token)
        .env_remove("RAY_ADDRESS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let out = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let next = |what: &str| {
        rx.recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("--follow printed no {what}"))
    };
    assert_eq!(next("first line"), "hello from the talker");
    bg.signal("go");
    assert_eq!(next("later line"), "a later line");
    bg.line("SAID LATER");
    follow.kill().unwrap();
    follow.wait().unwrap();
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(rest.is_empty(), "nothing printed twice: {rest:?}");
    bg.finish();
}

/// `GET`s (or sends `method` to) `path` at `base` with `token` as a bearer; (status, body).
fn http(base: &str, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let addr = base
        .trim_start_matches("http://")
        .trim_end_matches("/metrics");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn url_in(dir: &NodeDir, file: &str) -> String {
    std::fs::read_to_string(dir.path.join(file))
        .unwrap_or_else(|e| panic!("{file} in {}: {e}", dir.arg()))
        .trim()
        .to_string()
}

#[test]
fn the_heads_dashboard_and_every_nodes_metrics_need_the_token_and_cover_the_cluster() {
    let head_dir = NodeDir::new("dash-head");
    let head = Head::start(&head_dir, &["--num-cpus", "2"]);
    let token = head_dir.token();
    let node_dir = NodeDir::new("dash-node");
    join(
        &head,
        &node_dir,
        &token,
        &["--num-cpus", "1", "--resources", "b=1"],
        &[],
    );
    let url = url_in(&head_dir, "dashboard_url");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(
        head.said(&format!("Dashboard: {url}")),
        "the URL is printed at start"
    );
    assert!(!head.said(&token), "the token is never printed");
    assert!(
        !node_dir.path.join("dashboard_url").exists(),
        "only the head serves the dashboard"
    );

    // No token, a wrong one: 401, saying what is needed. Nothing but reads.
    for t in [None, Some("0".repeat(64).as_str())] {
        let (status, body) = http(&url, "GET", "/api/nodes", t);
        assert_eq!(status, 401, "{body}");
        assert!(body.contains("cluster's token"), "{body}");
        assert!(!body.contains(&token));
    }
    assert_eq!(http(&url, "GET", "/", None).0, 401);
    assert_eq!(http(&url, "GET", "/metrics", None).0, 401);
    for method in ["POST", "PUT", "DELETE"] {
        assert_eq!(http(&url, method, "/api/actors", Some(&token)).0, 405);
    }
    // A stranger's silent connections do not block the listener: past 64 still sending their
    // request head, a new one ends the oldest. (Before, each held one of the 64 places for its
    // 10 s and the rest waited behind them: this request was answered after 20-30 s.)
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let silent: Vec<std::net::TcpStream> = (0..200)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer)
        .expect("answered within 8 s while 200 silent connections are open");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(silent);
    let (status, page) = http(&url, "GET", &format!("/?token={token}"), None);
    assert_eq!(status, 200);
    assert!(page.contains("ray-rs dashboard"));

    // Every node's rows, not only the head's.
    let nodes = wait_for("both nodes on the dashboard", || {
        let (status, body) = http(&url, "GET", "/api/nodes", Some(&token));
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        (v.as_array().unwrap().len() == 2).then_some(v)
    });
    let nodes = nodes.as_array().unwrap();
    assert_eq!(nodes.iter().filter(|n| n["is_head"] == true).count(), 1);
    assert!(
        nodes.iter().any(|n| n["resources_total"]["b"] == 1.0),
        "the joined node's resources: {nodes:?}"
    );

    let bg = Background::start("live", &head.address, &token, &head_dir);
    let (actor, pid) = actor_line(&bg.line("ACTOR "));
    bg.line("TICKING");
    let (status, body) = http(&url, "GET", "/api/actors", Some(&token));
    assert_eq!(status, 200);
    let actors: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        actors
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["actor_id"] == actor.as_str() && a["pid"] == pid),
        "{actors}"
    );
    let (status, body) = http(&url, "GET", &format!("/api/logs?pid={pid}"), Some(&token));
    let (status, body) = if status == 404 {
        // The actor runs on the other node: name it.
        let node = actors
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["actor_id"] == actor.as_str())
            .unwrap()["node_id"]
            .clone();
        http(
            &url,
            "GET",
            &format!("/api/logs?pid={pid}&node={node}"),
            Some(&token),
        )
    } else {
        (status, body)
    };
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("hello from the talker"), "{body}");
    let (status, body) = http(&url, "GET", "/api/logs?pid=999999", Some(&token));
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("999999"), "{body}");

    // Each node's metrics: token required, Prometheus text, Ray's names, both nodes.
    let scrape = |checks: bool| {
        let mut all = Vec::new();
        for (dir, cpus) in [(&head_dir, 2.0), (&node_dir, 1.0)] {
            let murl = url_in(dir, "metrics_url");
            assert!(
                murl.starts_with("http://127.0.0.1:") && murl.ends_with("/metrics"),
                "{murl}"
            );
            if checks {
                assert_eq!(http(&murl, "GET", "/metrics", None).0, 401);
                assert_eq!(http(&murl, "POST", "/metrics", Some(&token)).0, 405);
                let (status, body) = http(&murl, "GET", "/api/nodes", Some(&token));
                assert_eq!(status, 404, "only /metrics on a node's listener: {body}");
            }
            let (status, text) = http(&murl, "GET", "/metrics", Some(&token));
            assert_eq!(status, 200);
            let samples = prom::parse(&text);
            let used = prom::value(
                &samples,
                "ray_resources",
                &[("Name", "CPU"), ("State", "USED")],
            );
            let free = prom::value(
                &samples,
                "ray_resources",
                &[("Name", "CPU"), ("State", "AVAILABLE")],
            );
            assert_eq!(used + free, cpus, "{text}");
            assert!(prom::value(&samples, "ray_object_store_memory", &[]) >= 0.0);
            assert!(prom::value(&samples, "ray_node_cpu_count", &[]) >= 1.0);
            assert!(prom::value(&samples, "ray_node_mem_total", &[]) > 0.0);
            assert!(prom::value(&samples, "ray_node_mem_used", &[]) > 0.0);
            let cpu = prom::value(&samples, "ray_node_cpu_utilization", &[]);
            assert!((0.0..=100.0).contains(&cpu), "{cpu}");
            all.extend(samples);
        }
        all
    };
    // Tasks by function (its full path in a cluster) and state, summed over the nodes.
    let sum = |all: &[prom::Sample], name: &str, function: &str, state: &str| -> f64 {
        all.iter()
            .filter(|s| {
                s.name == name
                    && s.labels.get("State").is_some_and(|x| x == state)
                    && (function.is_empty()
                        || s.labels.get("Name").is_some_and(|x| x.ends_with(function)))
            })
            .map(|s| s.value)
            .sum()
    };
    scrape(true);
    // Counts move as the driver's ticks finish: scrape until they show.
    let all = wait_for("finished ticks in the metrics", || {
        let all = scrape(false);
        (sum(&all, "ray_tasks", "tick", "FINISHED") >= 1.0).then_some(all)
    });
    assert!(
        sum(&all, "ray_actors", "", "ALIVE") >= 1.0,
        "the talker is alive somewhere"
    );
    assert!(
        sum(&all, "ray_tasks", "explode", "FAILED") >= 1.0,
        "the failed task is counted"
    );
    bg.finish();
}

#[test]
fn the_dashboard_updates_live_and_shows_a_workers_output_in_chromium() {
    let dir = NodeDir::new("browser-head");
    let head = Head::start(&dir, &["--num-cpus", "2"]);
    let token = dir.token();
    let url = url_in(&dir, "dashboard_url");
    let bg = Background::start("live", &head.address, &token, &dir);
    let (_, pid) = actor_line(&bg.line("ACTOR "));
    bg.line("TICKING");

    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cluster-dashboard-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let browser = Browser::start();
    browser.go(&format!("{url}/?token={token}#tasks"));
    let count = |b: &Browser| -> Option<u64> { b.dom_text("task-count")?.trim().parse().ok() };
    let first = browser.wait_for("a first render", WAIT, |b| {
        let updates: u64 = b.dom_text("updates").and_then(|t| t.parse().ok())?;
        (updates >= 1).then(|| count(b)).flatten()
    });
    // A mark on this page load: still there later means nothing reloaded the page.
    browser.eval("window.__loadMark = 'same page'; return null");
    let later = browser.wait_for(
        "the live task count to move",
        Duration::from_secs(20),
        |b| count(b).filter(|c| *c > first),
    );
    assert!(later > first);
    assert_eq!(browser.eval("return window.__loadMark"), "same page");
    let failed = browser.text("#failed-table").unwrap_or_default();
    assert!(failed.contains("exploded on purpose"), "{failed}");
    browser.screenshot(&shots.join("tasks.png"));

    for page in ["overview", "actors", "objects", "timeline"] {
        assert!(browser.click(&format!("a[data-page=\"{page}\"]")));
        browser.wait_for(&format!("the {page} page"), WAIT, |b| {
            let shown = b.eval(&format!(
                "return document.getElementById('page-{page}').classList.contains('active')"
            ));
            (shown == true).then_some(())
        });
        if page == "actors" {
            browser.wait_for("the talker's row", WAIT, |b| {
                b.text(&format!("#actor-table tr[data-pid=\"{pid}\"]"))
                    .filter(|t| t.contains("Talker") && t.contains("ALIVE"))
            });
        }
        browser.screenshot(&shots.join(format!("{page}.png")));
    }

    // The log page: the worker is listed; clicking it shows its output, live.
    assert!(browser.click("a[data-page=\"logs\"]"));
    let row = format!("#log-workers tr[data-pid=\"{pid}\"] a");
    browser.wait_for("the talker's worker in the list, clicked", WAIT, |b| {
        b.click(&row).then_some(())
    });
    let lines = browser.wait_for("the talker's line on the log page", WAIT, |b| {
        b.text("#log-lines")
            .filter(|t| t.contains("hello from the talker"))
    });
    assert!(lines.contains("(stderr) hello from the talker"), "{lines}");
    browser.screenshot(&shots.join("logs.png"));
    assert_eq!(browser.eval("return window.__loadMark"), "same page");
    drop(browser);
    bg.finish();
    eprintln!("screenshots in {}", shots.display());
}
