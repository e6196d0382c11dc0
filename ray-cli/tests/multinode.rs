//! One program on a four-node cluster: `ray-rs` daemons on loopback, each with its own temp
//! dir and resources, etcd started by the head, and this test binary run again as the driver.
//! What runs where is read from the process tree (a worker's parent is its node's daemon) and
//! from `ray-rs status` (transfer counters, jobs).
//!
//! Nodes: head (1 CPU), A (2 CPUs, `zone_a`), B (2 CPUs, `zone_b`), C (2 CPUs, `zone_c`).

mod common;

use common::*;
use ray::ObjectRef;
use std::time::{Duration, Instant};

/// A large value made on node A: it stays there.
#[ray::remote(resources(zone_a = 1))]
fn make_on_a(len: usize) -> Vec<u8> {
    vec![7u8; len]
}

/// Reads a value on node B: its worker pid and the sum of its bytes.
#[ray::remote(resources(zone_b = 1))]
fn sum_on_b(v: Vec<u8>) -> (u32, u64) {
    (my_daemon(), v.iter().map(|b| *b as u64).sum())
}

/// Reads the driver's `put_slice` zero-copy on node B.
#[ray::remote(resources(zone_b = 1))]
fn slice_on_b(refs: Vec<ObjectRef<Vec<u8>>>) -> (u32, u64, bool) {
    let view = ray::get_slice(&refs[0]).expect("get_slice on node B");
    let all_fives = view.iter().all(|b| *b == 5);
    (my_daemon(), view.len() as u64, all_fives)
}

/// Three return values made on node A: a small one, a large one (1 MiB, which stays in A's
/// store) and the daemon it ran under.
#[ray::remote(num_returns = 3, resources(zone_a = 1))]
fn three_on_a(n: u64) -> (u64, Vec<u8>, u32) {
    (n * 2, vec![9u8; 1 << 20], my_daemon())
}

/// A stream of `0..n` made on node A.
#[ray::remote(streaming, resources(zone_a = 1))]
fn count_on_a(n: u64) -> impl Iterator<Item = u64> {
    0..n
}

/// Runs on A and submits a child that must run on B: (A's worker pid, B's worker pid).
#[ray::remote(resources(zone_a = 1))]
fn plus_one_on_a(x: usize) -> usize {
    x + 1
}

#[ray::remote(resources(zone_a = 1))]
fn parent_on_a() -> (u32, u32) {
    let child = ray::get(&child_on_b::remote()).expect("the child's result");
    (my_daemon(), child)
}

#[ray::remote(resources(zone_b = 1))]
fn child_on_b() -> u32 {
    my_daemon()
}

/// What a task on B sees of where it runs: (node id, job id, pid, in a task, whether the
/// cluster token its daemon was started with is in its environment).
#[ray::remote(resources(zone_b = 1))]
fn context_on_b() -> (u32, String, u32, bool, bool) {
    let ctx = ray::runtime_context().expect("a runtime context in a task");
    (
        ctx.node_id().as_u32(),
        ctx.job_id().to_string(),
        ctx.worker_pid(),
        ctx.task_id().is_some(),
        std::env::var_os("RAY_RS_AUTH_TOKEN").is_some(),
    )
}

/// Waits (up to a minute) until `n` tasks are running at once, each having dropped a file in
/// `dir`: only a cluster that spread them over enough nodes gets there.
#[ray::remote]
fn rendezvous(dir: String, n: usize) -> (u32, bool) {
    let pid = std::process::id();
    std::fs::write(format!("{dir}/{pid}"), b"").expect("write the marker");
    let daemon = my_daemon();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let here = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        if here >= n {
            return (daemon, true);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (daemon, false)
}

#[ray::remote(resources(tpu = 1))]
fn needs_a_tpu() -> u32 {
    0
}

#[ray::remote(resources(zone_c = 1))]
struct Ledger {
    entries: Vec<u64>,
}

#[ray::remote]
impl Ledger {
    fn new() -> Self {
        println!("ledger open");
        Ledger {
            entries: Vec::new(),
        }
    }
    fn append(&mut self, x: u64) -> usize {
        self.entries.push(x);
        self.entries.len()
    }
    /// Appends the first of `xs` (passed by reference: a value put by the driver).
    fn append_first(&mut self, xs: Vec<u64>) -> usize {
        self.entries.push(xs[0]);
        self.entries.len()
    }
    /// How many entries, after `ms` milliseconds.
    fn len_after(&self, ms: u64) -> usize {
        std::thread::sleep(Duration::from_millis(ms));
        self.entries.len()
    }
    fn entries(&self) -> Vec<u64> {
        self.entries.clone()
    }
    fn pid(&self) -> u32 {
        my_daemon()
    }
    /// How many entries, and their sum: two return values.
    #[ray::method(num_returns = 2)]
    fn count_and_sum(&self) -> (usize, u64) {
        (self.entries.len(), self.entries.iter().sum())
    }
    #[ray::method(streaming)]
    fn stream_entries(&self) -> Vec<u64> {
        self.entries.clone()
    }
}

/// Run in a worker: the pid of the `ray-rs` daemon that started it (its parent), read while
/// the worker surely lives.
fn my_daemon() -> u32 {
    daemon_of(std::process::id()) as u32
}

/// The parent of process `pid`.
fn daemon_of(pid: u32) -> i32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(0)
}

/// Where the test tells the driver that a line of worker output reached it.
const SEEN_DIR: &str = "RAY_TEST_SEEN_DIR";

/// The driver. A no-op unless `RAY_CLUSTER_DRIVER` is set.
#[test]
fn driver_main() {
    let Ok(mode) = std::env::var(MODE) else {
        return;
    };
    ray::init(ray::Config::default()).expect("joins the cluster");
    match mode.as_str() {
        "everything" => everything(),
        "again" => {
            let (pid, sum) = ray::get(&sum_on_b::remote(vec![1u8; 10])).unwrap();
            println!("AGAIN B {pid}");
            assert_eq!(sum, 10);
            let v = ray::get(&make_on_a::remote(3)).unwrap();
            assert_eq!(v, vec![7, 7, 7]);
            println!("AGAIN OK");
        }
        other => panic!("unknown mode {other}"),
    }
    ray::shutdown();
}

fn everything() {
    // Placement by custom resources, and an object made on A consumed on B: it goes from A's
    // store to B's, not through the driver or the head.
    let on_a = make_on_a::remote(32 << 20);
    let (pid, sum) = ray::get(&sum_on_b::remote(&on_a)).unwrap();
    assert_eq!(
        sum,
        7 * (32u64 << 20),
        "32 MiB made on A, read bit-exact on B"
    );
    println!("A TO B ON {pid}");

    // A 64 MiB put_slice in the driver, read zero-copy on B.
    let big = ray::put_slice(&vec![5u8; 64 << 20]).unwrap();
    let (pid, len, all_fives) = ray::get(&slice_on_b::remote(vec![big.clone()])).unwrap();
    assert_eq!(len, 64 << 20);
    assert!(all_fives, "64 MiB read bit-exact on B");
    println!("SLICE ON {pid}");

    // Nested tasks across nodes: A's task submits B's.
    let (parent, child) = ray::get(&parent_on_a::remote()).unwrap();
    println!("NESTED {parent} {child}");

    // The cluster as the driver sees it: four nodes, their resources together.
    let all = ray::nodes().unwrap();
    assert_eq!(all.len(), 4, "{all:?}");
    assert!(all[0].is_head && all.iter().all(|n| n.alive));
    let res = ray::cluster_resources().unwrap();
    assert_eq!(res.get("CPU"), Some(&7.0), "{res:?}");
    for zone in ["zone_a", "zone_b", "zone_c"] {
        assert_eq!(res.get(zone), Some(&1.0), "{res:?}");
    }

    // runtime_context on another node: that node's id, this driver's job.
    let mine = ray::runtime_context().unwrap();
    let (node, job, pid, in_task, token_seen) = ray::get(&context_on_b::remote()).unwrap();
    assert_eq!(job, mine.job_id().to_string(), "the driver's job");
    assert!(in_task && pid != std::process::id());
    assert!(
        !token_seen,
        "a worker's environment holds the cluster token"
    );
    assert_ne!(node, mine.node_id().as_u32(), "not the driver's node");
    println!("CONTEXT ON {node}");
    println!("DRIVER NODE {}", mine.node_id().as_u32());

    // Spreading: six tasks that only finish when all six run at once (1 CPU here, 2 on each
    // other node).
    let dir = std::env::temp_dir().join(format!("ray-rendezvous-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.to_str().unwrap().to_string();
    let refs: Vec<_> = (0..6)
        .map(|_| rendezvous::remote(path.clone(), 6))
        .collect();
    let met = ray::get_all(&refs).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        met.iter().all(|(_, ok)| *ok),
        "all six ran at once: {met:?}"
    );
    let mut daemons: Vec<u32> = met.iter().map(|(daemon, _)| *daemon).collect();
    daemons.sort();
    daemons.dedup();
    println!(
        "SPREAD {}",
        daemons
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );

    // 300 ordered calls to an actor on C; its output reaches this driver tagged with its node.
    // They go straight to C (a direct session) once it is open. Every 60th passes its entry
    // by reference to a value put here, a large one (kept in the head's store) or a small
    // one: C borrows it from the head.
    let ledger = Ledger::remote();
    let appends: Vec<_> = (0..300u64)
        .map(|i| match i % 60 {
            30 => ledger.append_first(ray::put(vec![i; 300_000]).unwrap()),
            59 => ledger.append_first(ray::put(vec![i]).unwrap()),
            _ => ledger.append(i),
        })
        .collect();
    let lens = ray::get_all(&appends).unwrap();
    assert_eq!(
        lens,
        (1..=300usize).collect::<Vec<_>>(),
        "in order, none lost"
    );
    let entries = ray::get(&ledger.entries()).unwrap();
    assert_eq!(entries, (0..300u64).collect::<Vec<_>>());
    let pid = ray::get(&ledger.pid()).unwrap();
    println!("LEDGER ON {pid}");
    // A direct call's result passed to a task on A, before it is known and after.
    let late = ledger.len_after(300);
    let before = plus_one_on_a::remote(&late);
    assert_eq!(ray::get(&before).unwrap(), 301, "a direct result used on A");
    assert_eq!(ray::get(&late).unwrap(), 300);
    assert_eq!(ray::get(&plus_one_on_a::remote(&appends[9])).unwrap(), 11);
    let (count, sum) = ledger.count_and_sum();
    assert_eq!(
        (ray::get(&count).unwrap(), ray::get(&sum).unwrap()),
        (300, (0..300u64).sum()),
        "two return values of a call on another node"
    );
    // Streams from another node: an actor's method on C, a task on A (its items are taken
    // from A as they come, two at most ahead). A stream dropped half-way lets its producer go:
    // the next task that needs A's `zone_a` could not run otherwise.
    let entries: Vec<u64> = ledger
        .stream_entries()
        .map(|r| ray::get(&r).unwrap())
        .collect();
    assert_eq!(entries, (0..300u64).collect::<Vec<_>>(), "streamed from C");
    let counted: Vec<u64> = count_on_a::options()
        .stream_backpressure(2)
        .remote(50)
        .map(|r| ray::get(&r).unwrap())
        .collect();
    assert_eq!(counted, (0..50u64).collect::<Vec<_>>(), "streamed from A");
    let mut long = count_on_a::options().stream_backpressure(2).remote(1000);
    let first: Vec<u64> = (0..3)
        .map(|_| ray::get(&long.next().expect("an item")).unwrap())
        .collect();
    assert_eq!(first, [0, 1, 2]);
    drop(long);

    // Several return values of a task on another node, each an object of its own: the large
    // one stays in A's store and is read on B from there. (It needs `zone_a`, which the
    // dropped stream above held until its producer was let go.)
    let (doubled, big, daemon) = three_on_a::remote(21);
    let (pid, sum) = ray::get(&sum_on_b::remote(&big)).unwrap();
    assert_eq!(
        sum,
        9 * (1u64 << 20),
        "1 MiB made on A, read bit-exact on B"
    );
    assert_eq!(ray::get(&doubled).unwrap(), 42);
    println!("THREE ON {} READ ON {pid}", ray::get(&daemon).unwrap());
    // The actor's output travels apart from its results (C's own session at the head, opened
    // for it): the test says when it has reached this driver's stdout, so the driver does not
    // end before it on a loaded machine. (It goes on after a minute; the test then fails.)
    if let Some(dir) = std::env::var_os(SEEN_DIR) {
        let seen = std::path::Path::new(&dir).join("ledger-output");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !seen.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    // Infeasible everywhere: fails at once, naming what every node has.
    match ray::get(&needs_a_tpu::remote()) {
        Err(ray::Error::Infeasible {
            requested,
            available,
            ..
        }) => {
            assert_eq!(requested, "tpu: 1");
            for zone in ["zone_a", "zone_b", "zone_c"] {
                assert!(available.contains(zone), "{available}");
            }
            println!("INFEASIBLE OK");
        }
        other => panic!("expected Infeasible, got {other:?}"),
    }
    println!("EVERYTHING OK");
}

struct Cluster {
    head: Head,
    head_dir: NodeDir,
    a: NodeDir,
    b: NodeDir,
    c: NodeDir,
    token: String,
}

impl Cluster {
    fn start(label: &str) -> Cluster {
        let head_dir = NodeDir::new(&format!("{label}-head"));
        let head = Head::start(&head_dir, &["--num-cpus", "1"]);
        let token = head_dir.token();
        let mut dirs = Vec::new();
        for zone in ["zone_a", "zone_b", "zone_c"] {
            let dir = NodeDir::new(&format!("{label}-{zone}"));
            let res = format!("{zone}=1");
            join(
                &head,
                &dir,
                &token,
                &["--num-cpus", "2", "--resources", &res],
                &[],
            );
            dirs.push(dir);
        }
        let c = dirs.pop().unwrap();
        let b = dirs.pop().unwrap();
        let a = dirs.pop().unwrap();
        let cluster = Cluster {
            head,
            head_dir,
            a,
            b,
            c,
            token,
        };
        wait_for("four live nodes", || {
            let report = cluster.status();
            let alive = nodes(&report)
                .iter()
                .filter(|n| n["alive"].as_bool() == Some(true))
                .count();
            (alive == 4).then_some(())
        });
        cluster
    }

    fn status(&self) -> serde_json::Value {
        status(&self.head.address, &self.head_dir.path, &self.token, &[])
    }

    fn daemon(dir: &NodeDir) -> i32 {
        dir.pid("ray-rs.pid").expect("the node's pid file")
    }

    /// Node `dir`'s entry in a status report.
    fn node_in(report: &serde_json::Value, dir: &NodeDir) -> serde_json::Value {
        let pid = std::fs::read_to_string(dir.path.join("node.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["node_id"].as_u64())
            .expect("node.json names the node's id");
        nodes(report)
            .into_iter()
            .find(|n| n["node_id"].as_u64() == Some(pid))
            .expect("the node is in the report")
    }
}

fn line_after<'a>(stdout: &'a str, marker: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| l.split_once(marker).map(|(_, rest)| rest.trim()))
        .unwrap_or_else(|| panic!("no {marker:?} in the driver's output:\n{stdout}"))
}

#[test]
fn one_program_uses_every_node_of_a_four_node_cluster() {
    let cluster = Cluster::start("everything");
    let (head, a, b, c) = (
        Cluster::daemon(&cluster.head_dir),
        Cluster::daemon(&cluster.a),
        Cluster::daemon(&cluster.b),
        Cluster::daemon(&cluster.c),
    );
    let seen = NodeDir::new("everything-seen");
    std::fs::create_dir_all(&seen.path).unwrap();
    let mut child = spawn_driver(
        "everything",
        &cluster.head.address,
        &cluster.token,
        &[(SEEN_DIR, seen.path.as_path())],
    );
    // Read the driver's output as it comes, marking when the actor's line has arrived.
    let reader = {
        let pipe = child.stdout.take().unwrap();
        let mark = seen.path.join("ledger-output");
        std::thread::spawn(move || {
            let mut all = String::new();
            for line in std::io::BufRead::lines(std::io::BufReader::new(pipe)).map_while(Result::ok)
            {
                if line.starts_with("(Ledger pid=") && line.ends_with("ledger open") {
                    std::fs::write(&mark, b"").unwrap();
                }
                all.push_str(&line);
                all.push('\n');
            }
            all
        })
    };
    let out = child.wait_with_output().unwrap();
    let stdout = reader.join().unwrap();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("EVERYTHING OK"), "{stdout}");

    // Placement by custom resources, nested tasks across nodes.
    assert_eq!(line_after(&stdout, "A TO B ON "), b.to_string());
    assert_eq!(line_after(&stdout, "SLICE ON "), b.to_string());
    assert_eq!(line_after(&stdout, "NESTED "), format!("{a} {b}"));
    assert_eq!(line_after(&stdout, "LEDGER ON "), c.to_string());
    // The driver called the actor on C directly, not through the head: C accepted its
    // direct session.
    let said = |dir: &NodeDir, what: &str| {
        std::fs::read_dir(dir.path.join("logs"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("ray-rs-"))
            .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains(what)))
    };
    wait_for("C's log of the direct session", || {
        said(&cluster.c, "opened a direct session to").then_some(())
    });
    assert_eq!(
        line_after(&stdout, "THREE ON "),
        format!("{a} READ ON {b}"),
        "a task with three return values ran on A, and B read one"
    );
    let node_id_of = |dir: &NodeDir| {
        Cluster::node_in(&cluster.status(), dir)["node_id"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(
        line_after(&stdout, "CONTEXT ON "),
        node_id_of(&cluster.b).to_string()
    );
    assert_eq!(
        line_after(&stdout, "DRIVER NODE "),
        node_id_of(&cluster.head_dir).to_string(),
        "a driver is on the node it attached to"
    );
    // Six tasks at once need every node (at most two fit on each).
    let spread: Vec<i32> = line_after(&stdout, "SPREAD ")
        .split(' ')
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(spread.len() >= 3, "spread over {spread:?}");
    for d in &spread {
        assert!([head, a, b, c].contains(d), "{d} is one of the daemons");
    }
    // The actor's output, printed on C, reached the driver with its prefix and C's node.
    let c_id = Cluster::node_in(&cluster.status(), &cluster.c)["node_id"]
        .as_u64()
        .unwrap();
    assert!(
        stdout.lines().any(|l| l.starts_with("(Ledger pid=")
            && l.contains(&format!(", node={c_id})"))
            && l.ends_with("ledger open")),
        "C's actor output with its prefix: {stdout}"
    );

    // Transfer counters: the 32 MiB went A -> B, the 64 MiB head -> B; the head copied nothing
    // in (the driver never read a large value).
    let counters = wait_for("transfer counters published", || {
        let report = cluster.status();
        let of = |dir: &NodeDir, what: &str| {
            Cluster::node_in(&report, dir)["activity"][what]
                .as_u64()
                .unwrap_or(0)
        };
        let c = (
            of(&cluster.a, "bytes_served"),
            of(&cluster.b, "bytes_pulled"),
            of(&cluster.head_dir, "bytes_served"),
            of(&cluster.head_dir, "bytes_pulled"),
        );
        (c.1 >= (96 << 20)).then_some(c)
    });
    let (a_served, b_pulled, head_served, head_pulled) = counters;
    assert!(a_served >= 32 << 20, "A served {a_served}");
    assert!(head_served >= 64 << 20, "head served {head_served}");
    assert_eq!(head_pulled, 0, "nothing large passed through the head");
    assert!(b_pulled >= 96 << 20, "B pulled {b_pulled}");

    // Every node is in status, and the job is recorded (finished: its driver went).
    let report = wait_for("the job marked finished", || {
        let report = cluster.status();
        let done = report["jobs"]
            .as_array()
            .is_some_and(|j| j.iter().any(|j| j["state"] == "FINISHED"));
        done.then_some(report)
    });
    assert_eq!(nodes(&report).len(), 4);
    let jobs = report["jobs"].as_array().unwrap();
    let exe = std::env::current_exe().unwrap();
    let name = exe.file_name().unwrap().to_str().unwrap();
    assert!(
        jobs.iter().any(|j| j["name"] == name),
        "the job shows its program: {jobs:?}"
    );
    let text = ray_rs(
        &[
            "status",
            "--address",
            &cluster.head.address,
            "--temp-dir",
            cluster.head_dir.arg(),
        ],
        Some(&cluster.token),
        &[],
    );
    let text = String::from_utf8_lossy(&text.stdout);
    assert_eq!(text.matches(" alive ").count(), 4, "{text}");
    assert!(text.contains("FINISHED"), "{text}");

    // `ray-rs list tasks` asks every node: a task sent from the head to B is listed once, as
    // B ran it.
    let listed = ray_rs_json(
        &[
            "list",
            "tasks",
            "--limit",
            "10000",
            "--filter",
            "state=FINISHED",
        ],
        &cluster.head.address,
        &cluster.head_dir,
        &cluster.token,
    );
    let on_b: Vec<&serde_json::Value> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["name"].as_str().unwrap_or("").ends_with("sum_on_b"))
        .collect();
    let b_id = Cluster::node_in(&cluster.status(), &cluster.b)["node_id"]
        .as_u64()
        .unwrap();
    assert_eq!(on_b.len(), 2, "{on_b:?}");
    assert!(
        on_b.iter().all(|t| t["node_id"].as_u64() == Some(b_id)),
        "{on_b:?}"
    );

    // The executable is cached by hash on every node that ran its work; a tampered copy is
    // never run: it is removed and fetched again.
    let bytes = std::fs::read(&exe).unwrap();
    let hash = ray_cli::binary_cache::Sha256::of(&bytes).to_hex();
    for dir in [&cluster.head_dir, &cluster.a, &cluster.b, &cluster.c] {
        let cached = dir.path.join("binaries").join(&hash);
        let got = std::fs::read(&cached).unwrap_or_else(|e| panic!("{cached:?}: {e}"));
        assert!(got == bytes, "{cached:?} is the driver's executable");
    }
    let cached_on_b = cluster.b.path.join("binaries").join(&hash);
    use std::os::unix::fs::PermissionsExt;
    let mut tampered = bytes.clone();
    tampered.extend_from_slice(b"tampered");
    // Replaced by rename, as an attacker with write access to the directory would: writing
    // in place may fail while a worker still runs the file (ETXTBSY).
    let swap = cached_on_b.with_extension("swap");
    std::fs::write(&swap, &tampered).unwrap();
    std::fs::set_permissions(&swap, std::fs::Permissions::from_mode(0o500)).unwrap();
    std::fs::rename(&swap, &cached_on_b).unwrap();
    let out = driver("again", &cluster.head.address, &cluster.token);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && stdout.contains("AGAIN OK"),
        "{stdout}"
    );
    let b_log = std::fs::read_dir(cluster.b.path.join("logs"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    assert_eq!(
        line_after(&stdout, "AGAIN B "),
        b.to_string(),
        "{stdout}\nB's log:\n{b_log}"
    );
    assert!(
        std::fs::read(&cached_on_b).unwrap() == bytes,
        "B fetched a good copy again"
    );
    assert!(
        b_log.contains("was modified on disk"),
        "B's log says it refused the tampered copy"
    );
}
