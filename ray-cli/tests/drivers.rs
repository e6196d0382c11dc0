//! Drivers on a real cluster: `ray-rs` nodes with etcd, and this test binary run again as the
//! driver (`RAY_ADDRESS`, `RAY_RS_AUTH_TOKEN`), its executable shipped to the nodes by hash.

mod common;

use common::*;

#[ray::remote]
fn square(x: u64) -> u64 {
    println!("squaring {x}");
    x * x
}

#[ray::remote]
fn total(v: Vec<u8>) -> u64 {
    v.iter().map(|b| *b as u64).sum()
}

#[ray::remote]
fn node_pid() -> u32 {
    std::process::id()
}

#[ray::remote]
fn explode() -> u64 {
    panic!("blew up on purpose")
}

#[ray::remote]
struct Counter {
    n: u64,
}

#[ray::remote]
impl Counter {
    fn new() -> Self {
        Counter { n: 0 }
    }
    fn add(&mut self, x: u64) -> u64 {
        self.n += x;
        self.n
    }
}

#[test]
fn a_driver_runs_tasks_actors_and_objects_on_a_cluster_node() {
    let dir = NodeDir::new("drivers-head");
    let head = Head::start(&dir, &["--num-cpus", "2", "--resources", "ssd=1"]);
    let token = dir.token();
    let out = driver("basic", &head.address, &token);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(stdout.contains("DRIVER OK"), "{stdout}");
    assert!(
        stdout.contains("(square pid=") && stdout.contains("squaring 7"),
        "worker output reaches the driver with its prefix: {stdout}"
    );
    // The executable was shipped once, and is reused by the next driver of the same build.
    let cached: Vec<_> = std::fs::read_dir(dir.path.join("binaries"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    let out = driver("basic", &head.address, &token);
    assert!(out.status.success());
}

#[test]
fn a_wrong_token_is_refused_and_runs_nothing() {
    let dir = NodeDir::new("drivers-token");
    let head = Head::start(&dir, &["--num-cpus", "1"]);
    let wrong = "00".repeat(32);
    let out = driver("basic", &head.address, &wrong);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("wrong cluster token"), "{stderr}");
    assert!(!stderr.contains(&wrong[..16]), "the token is never printed");
    assert!(
        !dir.path.join("binaries").exists()
            || std::fs::read_dir(dir.path.join("binaries"))
                .unwrap()
                .count()
                == 0,
        "nothing was shipped"
    );
}

#[test]
fn a_missing_token_is_refused_and_runs_nothing() {
    let dir = NodeDir::new("drivers-no-token");
    let head = Head::start(&dir, &["--num-cpus", "1"]);
    let out = driver_with_token("basic", &head.address, None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "init failed: {stderr}");
    assert!(stderr.contains("no cluster token"), "{stderr}");
    assert!(stderr.contains("RAY_RS_AUTH_TOKEN"), "says how: {stderr}");
    // An empty one is no token either.
    let out = driver_with_token("basic", &head.address, Some(""));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "init failed: {stderr}");
    assert!(stderr.contains("no cluster token"), "{stderr}");
    assert!(
        !dir.path.join("binaries").exists()
            || std::fs::read_dir(dir.path.join("binaries"))
                .unwrap()
                .count()
                == 0,
        "nothing was shipped"
    );
}

/// The driver. A no-op unless `RAY_CLUSTER_DRIVER` is set.
#[test]
fn driver_main() {
    let Ok(mode) = std::env::var(MODE) else {
        return;
    };
    match mode.as_str() {
        "basic" => {
            if let Err(e) = ray::init(ray::Config::default()) {
                eprintln!("INIT FAILED: {e}");
                std::process::exit(3);
            }
            assert_eq!(ray::get(&square::remote(7)).unwrap(), 49);
            let refs: Vec<_> = (0..20u64).map(square::remote).collect();
            let all = ray::get_all(&refs).unwrap();
            assert_eq!(
                all.iter().sum::<u64>(),
                (0..20u64).map(|x| x * x).sum::<u64>()
            );
            let c = Counter::remote();
            let calls: Vec<_> = (1..=300u64).map(|i| c.add(i)).collect();
            let got = ray::get_all(&calls).unwrap();
            let want: Vec<u64> = (1..=300u64).map(|i| i * (i + 1) / 2).collect();
            assert_eq!(got, want, "300 calls in order");
            let big = ray::put_slice(&vec![3u8; 64 << 20]).unwrap();
            assert_eq!(
                ray::get(&total::remote(&big)).unwrap(),
                3 * (64 << 20) as u64
            );
            let back = ray::get_slice(&big).unwrap();
            assert!(back.iter().all(|b| *b == 3) && back.len() == 64 << 20);
            let pid = ray::get(&node_pid::remote()).unwrap();
            assert_ne!(pid, std::process::id(), "tasks run on the node");
            ray::shutdown();
            println!("DRIVER OK");
        }
        "state" => {
            ray::init(ray::Config::default()).expect("joins");
            let refs: Vec<_> = (0..10u64).map(square::remote).collect();
            ray::get_all(&refs).unwrap();
            assert!(ray::get(&explode::remote()).is_err());
            let c = Counter::remote();
            assert_eq!(ray::get(&c.add(2)).unwrap(), 2);
            ray::shutdown();
            println!("STATE DRIVER OK");
        }
        other => panic!("unknown mode {other}"),
    }
}

#[test]
fn ray_rs_lists_summarizes_and_writes_a_timeline_of_what_a_cluster_ran() {
    let dir = NodeDir::new("drivers-state");
    let head = Head::start(&dir, &["--num-cpus", "2"]);
    let token = dir.token();
    let out = driver("state", &head.address, &token);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("STATE DRIVER OK"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let at = ["--address", head.address.as_str(), "--temp-dir", dir.arg()];
    let run = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(&at);
        ray_rs(&all, Some(&token), &[])
    };
    let json = |args: &[&str]| ray_rs_json(args, &head.address, &dir, &token);

    let tasks = json(&["list", "tasks", "--limit", "1000"]);
    let tasks = tasks.as_array().unwrap();
    let squares = tasks
        .iter()
        .filter(|t| t["name"].as_str().unwrap_or("").ends_with("square"))
        .filter(|t| t["state"] == "FINISHED")
        .count();
    assert_eq!(squares, 10, "{tasks:?}");
    let failed = json(&["list", "tasks", "--filter", "state=FAILED"]);
    let failed = failed.as_array().unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap_or("")
            .contains("blew up on purpose"),
        "{failed:?}"
    );
    let actors = json(&["list", "actors"]);
    assert!(
        actors
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["class_name"].as_str().unwrap_or("").contains("Counter")),
        "{actors}"
    );
    let nodes = json(&["list", "nodes"]);
    assert_eq!(nodes.as_array().unwrap().len(), 1, "{nodes}");
    let summary = json(&["summary", "tasks"]);
    assert!(summary["total"].as_u64().unwrap() >= 12, "{summary}");

    // A table by default; a bad filter names the keys that exist.
    let table = run(&["list", "tasks"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("TASK_ID"), "{text}");
    let bad = run(&["list", "tasks", "--filter", "colour=red"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(err.contains("colour") && err.contains("state"), "{err}");
    let bad = run(&["list", "gizmos"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected one of nodes"));

    // The timeline: Chrome trace events, one complete event per finished call.
    let file = dir.path.with_extension("trace.json");
    let out = run(&["timeline", "-o", file.to_str().unwrap()]);
    assert!(out.status.success());
    let trace: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).expect("trace JSON");
    let events = trace
        .as_array()
        .or_else(|| trace["traceEvents"].as_array())
        .expect("a list of events")
        .clone();
    let complete = events.iter().filter(|e| e["ph"] == "X").count();
    assert!(complete >= 12, "{complete} complete events");
    let _ = std::fs::remove_file(&file);
}
