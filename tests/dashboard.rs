//! The dashboard (`Config::dashboard`, feature `dashboard`) as a user sees it: the page rendered
//! by headless Chromium while a job runs (its JavaScript fills the DOM from server-sent
//! events), the JSON API, Prometheus `/metrics` checked by a parser of the text format, and
//! the server refusing anything but reads. Screenshots of each page are saved under
//! `target/tmp/dashboard-screenshots/`.
//!
//! Chromium comes from `scripts/install-browser-deps.sh` (Debian's `chromium`); the test fails,
//! saying so, when it is missing.

mod common;

use common::*;
use ray::Config;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The dashboard's URL is the process's, and the two tests here each start a runtime: a test
/// that checks the URL is gone after its `shutdown` holds this, so the other test's `init`
/// (which waits for that shutdown) cannot publish its own URL in between.
static ONE_RUNTIME_AT_A_TIME: Mutex<()> = Mutex::new(());

#[ray::remote]
fn tick(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[ray::remote]
fn fuse(why: String) -> u64 {
    panic!("blew the fuse: {why}")
}

#[ray::remote]
struct Lamp {
    on: bool,
}

#[ray::remote]
impl Lamp {
    fn new() -> Self {
        Lamp { on: false }
    }
    fn pid(&self) -> u32 {
        std::process::id()
    }
    fn toggle(&mut self) -> bool {
        self.on = !self.on;
        println!("the lamp is on: {}", self.on);
        self.on
    }
}

/// `GET`s (or sends `method` to) `path` on the dashboard; (status, body).
fn http(base: &str, method: &str, path: &str) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
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

fn chromium() -> PathBuf {
    for p in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!(
        "chromium is not installed: run scripts/install-browser-deps.sh (apt-get install chromium chromium-driver)"
    );
}

fn chromium_cmd(profile: &Path) -> Command {
    // Never hang the suite on a stuck browser.
    let mut c = Command::new("timeout");
    c.arg("60").arg(chromium());
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

/// The DOM of `url` once the page has loaded (its `load` event), or after `ms` milliseconds
/// if that comes first: what a script fetches after `load` may not be in it yet.
fn dump_dom(profile: &Path, url: &str, ms: u32) -> String {
    let out = chromium_cmd(profile)
        // Real time (virtual time would wait for the open event stream).
        .arg(format!("--timeout={ms}"))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        dom.contains("</html>"),
        "chromium printed no DOM: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

fn screenshot(profile: &Path, url: &str, path: &Path) {
    let out = chromium_cmd(profile)
        .arg("--timeout=2000")
        .arg("--window-size=1280,900")
        .arg(format!("--screenshot={}", path.display()))
        .arg(url)
        .output()
        .expect("chromium runs");
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    assert!(
        len > 1000,
        "no screenshot at {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The text of the element with `id` in `dom` (no nested tags).
fn text_of<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the DOM"));
    let open = start + dom[start..].find('>').unwrap() + 1;
    let close = open + dom[open..].find('<').unwrap();
    &dom[open..close]
}

#[test]
fn the_page_shows_nodes_actors_and_failures_in_chromium() {
    let _one = ONE_RUNTIME_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    ray::init(
        Config::default()
            .num_cpus(2)
            .num_gpus(0)
            .resource("lamp_slot", 3.0)
            .dashboard("127.0.0.1:0"),
    )
    .unwrap();
    let url = ray::dashboard_url().expect("a dashboard URL after init");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let profile = scratch("chromium-profile");

    let lamp = Lamp::remote();
    let pid = ray::get(&lamp.pid()).unwrap();
    ray::get(&lamp.toggle()).unwrap();
    let failed = fuse::remote("too many lamps");
    assert!(ray::get(&failed).is_err());

    // Tasks keep finishing while the page is open: its count must move without a reload.
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                ray::get(&tick::remote(30)).unwrap();
            }
        })
    };

    let dom = dump_dom(&profile, &format!("{url}/#overview"), 2000);
    // The node and its resources.
    assert!(
        dom.contains("lamp_slot: 0 / 3"),
        "resources in the node table: {dom}"
    );
    assert!(dom.contains("CPU: "), "{dom}");
    // The actor with its pid, alive.
    assert!(
        dom.contains(&format!("data-pid=\"{pid}\" data-state=\"ALIVE\"")),
        "actor row with pid {pid}: {dom}"
    );
    assert!(dom.contains("Lamp"));
    // The failed task with its panic message.
    assert!(dom.contains("blew the fuse: too many lamps"), "{dom}");
    // Rendered by the page's script (no server-side HTML): at least one render happened.
    let updates: u32 = text_of(&dom, "updates").parse().unwrap();
    assert!(updates >= 1, "{updates} renders");

    // A new actor shows up with its pid on the next update.
    let second = Lamp::remote();
    let pid2 = ray::get(&second.pid()).unwrap();
    let dom = dump_dom(&profile, &format!("{url}/#actors"), 2000);
    assert!(dom.contains(&format!("data-pid=\"{pid2}\"")), "{dom}");

    stop.store(true, Ordering::Relaxed);
    worker.join().unwrap();

    // The log page's source: a worker's output by pid, from offsets; unknown pids are 404.
    let (status, body) = http(&url, "GET", &format!("/api/logs?pid={pid}"));
    assert_eq!(status, 200, "{body}");
    let log: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(log["out"]["text"], "the lamp is on: true\n", "{log}");
    assert_eq!(log["alive"], true);
    let next = log["out"]["to"].as_u64().unwrap();
    let (_, body) = http(&url, "GET", &format!("/api/logs?pid={pid}&out={next}"));
    let log: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(log["out"]["text"], "", "nothing twice");
    let (status, body) = http(&url, "GET", "/api/logs?pid=999999");
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains("999999") && body.contains("list workers"),
        "{body}"
    );
    // The log page fetches the output after the page's `load`, when the DOM may be dumped.
    let mut dom = String::new();
    for _ in 0..20 {
        dom = dump_dom(&profile, &format!("{url}/#logs:{pid}"), 2000);
        if dom.contains("the lamp is on: true") {
            break;
        }
    }
    assert!(dom.contains("the lamp is on: true"), "the log page: {dom}");

    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    for page in ["overview", "actors", "tasks", "objects", "timeline", "logs"] {
        screenshot(
            &profile,
            &format!("{url}/#{page}"),
            &shots.join(format!("{page}.png")),
        );
    }
    drop((lamp, second));
    ray::shutdown();
    assert!(ray::dashboard_url().is_none());
}

/// A metric sample: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// Checks `text` against the Prometheus text format (0.0.4): comments are `# HELP name ...` or
/// `# TYPE name counter|gauge|...`, each sample `name{label="value",...} number` belongs to a
/// family whose TYPE came before, names and label names are valid. Returns the samples.
fn parse_prometheus(text: &str) -> Vec<Sample> {
    fn valid_name(n: &str) -> bool {
        let mut cs = n.chars();
        cs.next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    let mut typed: std::collections::BTreeSet<String> = Default::default();
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kw = parts.next().unwrap();
            let name = parts.next().expect("a metric name");
            assert!(valid_name(name), "bad name in {line:?}");
            match kw {
                "HELP" => {}
                "TYPE" => {
                    let t = parts.next().expect("a type");
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                        "{line:?}"
                    );
                    assert!(typed.insert(name.to_string()), "TYPE twice: {line:?}");
                }
                _ => panic!("unknown comment {line:?}"),
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("name and value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.strip_suffix('}').expect("closing brace")),
            None => (series, ""),
        };
        assert!(valid_name(name), "bad name in {line:?}");
        assert!(typed.contains(name), "sample before its TYPE: {line:?}");
        let mut parsed = Vec::new();
        let mut rest = labels;
        while !rest.is_empty() {
            let (k, v) = rest.split_once("=\"").expect("label=\"value\"");
            assert!(valid_name(k), "bad label name in {line:?}");
            let mut end = 0;
            let bytes = v.as_bytes();
            while bytes[end] != b'"' {
                end += if bytes[end] == b'\\' { 2 } else { 1 };
            }
            parsed.push((k.to_string(), v[..end].to_string()));
            rest = v[end + 1..].strip_prefix(',').unwrap_or(&v[end + 1..]);
        }
        samples.push((name.to_string(), parsed, value));
    }
    samples
}

#[test]
fn metrics_are_prometheus_text_with_rays_names_and_the_api_is_read_only() {
    let _one = ONE_RUNTIME_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    ray::init(
        Config::default()
            .num_cpus(2)
            .num_gpus(0)
            .dashboard("127.0.0.1:0"),
    )
    .unwrap();
    let url = ray::dashboard_url().unwrap();
    let lamp = Lamp::remote();
    ray::get(&lamp.pid()).unwrap();
    let running = tick::remote(1500);
    let _ = ray::get(&fuse::remote("metrics"));
    ray::get(&tick::remote(1)).unwrap();
    assert!(eventually(Duration::from_secs(5), || {
        !ray::state::tasks(&ray::state::ListOptions::new().filter("state", "RUNNING"))
            .unwrap()
            .is_empty()
    }));

    let (status, text) = http(&url, "GET", "/metrics");
    assert_eq!(status, 200);
    let samples = parse_prometheus(&text);
    let find = |name: &str, labels: &[(&str, &str)]| -> f64 {
        samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .unwrap_or_else(|| panic!("no {name} {labels:?} in:\n{text}"))
            .2
    };
    assert_eq!(
        find("ray_tasks", &[("State", "RUNNING"), ("Name", "tick")]),
        1.0
    );
    assert_eq!(
        find("ray_tasks", &[("State", "FAILED"), ("Name", "fuse")]),
        1.0
    );
    assert_eq!(find("ray_actors", &[("State", "ALIVE")]), 1.0);
    assert_eq!(
        find("ray_resources", &[("Name", "CPU"), ("State", "USED")]),
        1.0
    );
    assert_eq!(
        find("ray_resources", &[("Name", "CPU"), ("State", "AVAILABLE")]),
        1.0
    );
    assert!(find("ray_tasks_failed_total", &[]) >= 1.0);
    assert!(find("ray_node_mem_total", &[]) > 0.0);
    assert!(find("ray_object_store_memory", &[]) >= 0.0);

    // JSON API: filters, limits, errors that say what is right.
    let (status, body) = http(&url, "GET", "/api/tasks?filter=state%3DFAILED");
    assert_eq!(status, 200);
    let rows: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["name"], "fuse");
    let (status, body) = http(&url, "GET", "/api/tasks?filter=colour%3Dred");
    assert_eq!(status, 400);
    assert!(body.contains("worker_pid"), "{body}");
    let (status, _) = http(&url, "GET", "/api/summary/tasks");
    assert_eq!(status, 200);
    // Read-only: nothing but GET.
    for method in ["POST", "PUT", "DELETE"] {
        let (status, body) = http(&url, method, "/api/actors");
        assert_eq!(status, 405, "{method}");
        assert!(body.contains("read-only"));
    }
    assert_eq!(http(&url, "GET", "/api/kill").0, 404);
    ray::get(&running).unwrap();
    drop(lamp);
    ray::shutdown();
}
