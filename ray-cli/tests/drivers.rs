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
        other => panic!("unknown mode {other}"),
    }
}
