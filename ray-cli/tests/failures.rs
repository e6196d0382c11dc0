//! A node lost under running work (issue 11, first part): its daemon is SIGKILLed (its workers
//! die with it) while a task or an actor runs there. The task runs again on another node and
//! gives the right value; the actor starts again on another node with fresh state, the call
//! it was running fails with `ActorDied { restarting: true }`, later calls reach the new
//! instance.
//!
//! Nodes: head (1 CPU), A and B (1 CPU and `spare = 1` each); the work needs `spare`, so it
//! runs on A or B, and after one is killed only the other is left.

mod common;

use common::*;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// Drops a marker named after its node's daemon, then waits (up to a minute) for `go`.
#[ray::remote(resources(spare = 1), max_retries = 2)]
fn square_when_told(x: u64, dir: String) -> (u64, u32) {
    let daemon = my_daemon();
    std::fs::write(format!("{dir}/task-{daemon}"), b"").expect("the marker");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !Path::new(&format!("{dir}/go")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    (x * x, daemon)
}

#[ray::remote(resources(spare = 1))]
fn square_now(x: u64) -> (u64, u32) {
    (x * x, my_daemon())
}

#[ray::remote(resources(spare = 1))]
fn make_big(len: usize) -> Vec<u8> {
    vec![1u8; len]
}

/// A large value left in its node's store, with a marker naming the node.
#[ray::remote(resources(spare = 1), max_retries = 2)]
fn make_big_marked(len: usize, dir: String) -> Vec<u8> {
    std::fs::write(format!("{dir}/lineage-{}", my_daemon()), b"").expect("the marker");
    vec![1u8; len]
}

/// Puts part of `v` from a worker (on the node that holds `v`): the new object is that node's.
#[ray::remote(resources(spare = 1))]
fn put_there(v: Vec<u8>) -> ray::ObjectRef<Vec<u8>> {
    ray::put(v[..1 << 20].to_vec()).expect("put")
}

#[ray::remote(resources(spare = 1), max_restarts = 1)]
struct Tally {
    n: u64,
    dir: String,
}

#[ray::remote]
impl Tally {
    fn new(dir: String) -> Self {
        Tally { n: 0, dir }
    }
    /// Adds `x`; drops a marker naming its node's daemon.
    fn add(&mut self, x: u64) -> (u64, u32) {
        self.n += x;
        let daemon = my_daemon();
        std::fs::write(format!("{}/actor-{daemon}", self.dir), b"").expect("the marker");
        (self.n, daemon)
    }
}

/// The driver. A no-op unless `RAY_CLUSTER_DRIVER` is set.
#[test]
fn driver_main() {
    let Ok(mode) = std::env::var(MODE) else {
        return;
    };
    let dir = std::env::var("FAILURES_DIR").expect("FAILURES_DIR");
    ray::init(ray::Config::default()).expect("joins the cluster");
    match mode.as_str() {
        "task" => {
            let (value, daemon) = ray::get(&square_when_told::remote(12, dir)).unwrap();
            println!("TASK {value} ON {daemon}");
        }
        "actor" => {
            let tally = Tally::remote(dir);
            let (n, first) = ray::get(&tally.add(1)).unwrap();
            assert_eq!(n, 1);
            println!("ACTOR ON {first}");
            // Calls until one reaches an instance on another node (the test kills this one's
            // node meanwhile): a call lost with the node says the actor is restarting.
            let deadline = Instant::now() + Duration::from_secs(90);
            let mut lost = 0;
            loop {
                assert!(Instant::now() < deadline, "the actor never came back");
                match ray::get(&tally.add(1)) {
                    Ok((n, daemon)) if daemon != first => {
                        println!("RESTARTED ON {daemon} WITH {n} LOST {lost}");
                        break;
                    }
                    // Still the first instance: its node is not gone yet; call again.
                    Ok(_) => {}
                    Err(ray::Error::ActorDied {
                        restarting, cause, ..
                    }) => {
                        assert!(restarting, "{cause}");
                        lost += 1;
                    }
                    Err(e) => panic!("unexpected {e}"),
                }
            }
        }
        "steady" => {
            // Tasks on A and B one after another, counting progress in a file, until the test
            // says etcd is back, then ten more.
            let mut done = 0u64;
            let mut after = 0;
            while after < 10 {
                let (v, _) = ray::get(&square_now::remote(done)).unwrap();
                assert_eq!(v, done * done);
                done += 1;
                // Replaced whole (renamed into place), so a reader never sees it half written.
                std::fs::write(format!("{dir}/progress.new"), done.to_string()).unwrap();
                std::fs::rename(format!("{dir}/progress.new"), format!("{dir}/progress")).unwrap();
                if Path::new(&format!("{dir}/etcd-back")).exists() {
                    after += 1;
                }
            }
            println!("STEADY {done}");
        }
        "lineage" => {
            // Nothing here reads `big` before its node is killed, so its only copy is there.
            let big = make_big_marked::remote(8 << 20, dir.clone());
            let put = ray::get(&put_there::remote(&big)).unwrap();
            std::fs::write(format!("{dir}/lineage-ready"), b"").unwrap();
            let deadline = Instant::now() + Duration::from_secs(120);
            while !Path::new(&format!("{dir}/killed")).exists() {
                assert!(Instant::now() < deadline, "never told the node was killed");
                std::thread::sleep(Duration::from_millis(20));
            }
            let v = ray::get(&big).expect("rebuilt through its lineage");
            assert!(v.len() == 8 << 20 && v.iter().all(|b| *b == 1));
            println!("REBUILT {}", v.len());
            match ray::get(&put) {
                Err(ray::Error::ObjectLost { id, reason }) => {
                    println!("PUT LOST {id}: {reason}");
                }
                other => panic!("expected ObjectLost, got {:?}", other.map(|v| v.len())),
            }
        }
        "dies" => {
            // Work on A and B, an actor and a large value there; then the test kills this
            // driver with SIGKILL.
            let dir2 = dir.clone();
            let tally = Tally::remote(dir);
            ray::get(&tally.add(1)).unwrap();
            let big = make_big::remote(8 << 20);
            ray::wait(std::slice::from_ref(&big), 1, None);
            std::fs::write(format!("{dir2}/driver-ready"), b"").unwrap();
            std::thread::sleep(Duration::from_secs(300));
            drop(big);
        }
        other => panic!("unknown mode {other}"),
    }
    ray::shutdown();
    println!("FAILURES OK");
}

struct Cluster {
    head: Head,
    head_dir: NodeDir,
    a: NodeDir,
    b: NodeDir,
    token: String,
    work: std::path::PathBuf,
}

impl Cluster {
    fn start(label: &str) -> Cluster {
        Self::start_with(label, &[])
    }

    /// A cluster whose nodes all start with `extra` arguments too.
    fn start_with(label: &str, extra: &[&str]) -> Cluster {
        let head_dir = NodeDir::new(&format!("{label}-head"));
        let mut head_args = vec!["--num-cpus", "1", "--num-gpus", "0"];
        head_args.extend_from_slice(extra);
        let head = Head::start(&head_dir, &head_args);
        let token = head_dir.token();
        let mut dirs = Vec::new();
        for n in ["a", "b"] {
            let dir = NodeDir::new(&format!("{label}-{n}"));
            join(&head, &dir, &token, &spare_node("1", extra), &[]);
            dirs.push(dir);
        }
        let b = dirs.pop().unwrap();
        let a = dirs.pop().unwrap();
        let work = head_dir.path.with_extension("work");
        std::fs::create_dir_all(&work).unwrap();
        let cluster = Cluster {
            head,
            head_dir,
            a,
            b,
            token,
            work,
        };
        wait_for("three live nodes", || {
            let report = status(
                &cluster.head.address,
                &cluster.head_dir.path,
                &cluster.token,
                &[],
            );
            (nodes(&report).len() == 3).then_some(())
        });
        cluster
    }

    /// Starts the driver in `mode` without waiting for it.
    fn spawn_driver(&self, mode: &str) -> Child {
        spawn_driver(
            mode,
            &self.head.address,
            &self.token,
            &[("FAILURES_DIR", &self.work)],
        )
    }

    /// The daemon named by the first marker `prefix-<pid>` in the work dir.
    fn marked(&self, prefix: &str) -> i32 {
        wait_for(&format!("a {prefix} marker"), || {
            std::fs::read_dir(&self.work)
                .ok()?
                .flatten()
                .find_map(|e| e.file_name().to_str()?.strip_prefix(prefix)?.parse().ok())
        })
    }

    fn daemons(&self) -> [i32; 2] {
        [
            self.a.pid("ray-rs.pid").unwrap(),
            self.b.pid("ray-rs.pid").unwrap(),
        ]
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

fn sigkill(pid: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// Waits for the driver, killing it if it hangs.
fn finish(child: Child) -> (bool, String) {
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if rx.recv_timeout(WAIT * 3).is_err() {
            sigkill(pid);
        }
    });
    let out = child.wait_with_output().unwrap();
    let _ = tx.send(());
    let _ = watchdog.join();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn line_after<'a>(text: &'a str, marker: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.split_once(marker).map(|(_, rest)| rest.trim()))
        .unwrap_or_else(|| panic!("no {marker:?} in the driver's output:\n{text}"))
}

#[test]
fn a_task_whose_node_is_killed_runs_again_on_another_node() {
    let cluster = Cluster::start("fail-task");
    let driver = cluster.spawn_driver("task");
    let victim = cluster.marked("task-");
    assert!(cluster.daemons().contains(&victim), "ran on A or B");
    let killed = Instant::now();
    sigkill(victim);
    std::fs::write(cluster.work.join("go"), b"").unwrap();
    let (ok, out) = finish(driver);
    println!(
        "FIGURES SIGKILL of a node: the retried task's result reached the driver {:.2} s later",
        killed.elapsed().as_secs_f64()
    );
    assert!(ok && out.contains("FAILURES OK"), "{out}");
    let survivor = cluster
        .daemons()
        .into_iter()
        .find(|d| *d != victim)
        .unwrap();
    assert_eq!(
        line_after(&out, "TASK "),
        format!("144 ON {survivor}"),
        "{out}"
    );
    // The killed daemon's workers did not outlive it (they run its cached binary, under its
    // temp dir).
    let victim_dir = if cluster.daemons()[0] == victim {
        &cluster.a
    } else {
        &cluster.b
    };
    wait_for("the killed node's workers gone", || {
        processes_under(&victim_dir.path).is_empty().then_some(())
    });
    // The head, which sent the task there, says so in its log.
    wait_for("the head's warning", || {
        cluster.head.said("retrying").then_some(())
    });
}

#[test]
fn an_object_lost_with_its_node_is_rebuilt_and_a_put_there_is_lost() {
    let cluster = Cluster::start("fail-lineage");
    let driver = cluster.spawn_driver("lineage");
    let victim = cluster.marked("lineage-");
    wait_for("the driver's objects", || {
        cluster.work.join("lineage-ready").exists().then_some(())
    });
    sigkill(victim);
    std::fs::write(cluster.work.join("killed"), b"").unwrap();
    let (ok, out) = finish(driver);
    assert!(ok && out.contains("FAILURES OK"), "{out}");
    assert_eq!(line_after(&out, "REBUILT "), (8 << 20).to_string());
    let survivor = cluster
        .daemons()
        .into_iter()
        .find(|d| *d != victim)
        .unwrap();
    assert!(
        cluster.work.join(format!("lineage-{survivor}")).exists(),
        "its task ran again on the other node: {out}"
    );
    let lost = line_after(&out, "PUT LOST ");
    assert!(lost.contains("node"), "names the node: {lost}");
    wait_for("the head's warning", || {
        cluster.head.said("again to rebuild it").then_some(())
    });
}

#[test]
fn an_actor_whose_node_is_killed_starts_again_on_another_node_with_fresh_state() {
    let cluster = Cluster::start("fail-actor");
    let driver = cluster.spawn_driver("actor");
    let victim = cluster.marked("actor-");
    assert!(cluster.daemons().contains(&victim), "placed on A or B");
    sigkill(victim);
    let (ok, out) = finish(driver);
    assert!(ok && out.contains("FAILURES OK"), "{out}");
    let survivor = cluster
        .daemons()
        .into_iter()
        .find(|d| *d != victim)
        .unwrap();
    let restarted = line_after(&out, "RESTARTED ON ");
    // Fresh state: the constructor ran again, so the first call there counts 1.
    assert!(
        restarted.starts_with(&format!("{survivor} WITH 1 ")),
        "{restarted}\n{out}"
    );
    wait_for("the head's warning", || {
        cluster.head.said("restarting (1 of 1)").then_some(())
    });
}

#[test]
fn a_killed_drivers_workers_are_gone_from_every_node() {
    let cluster = Cluster::start("fail-driver");
    let mut driver = cluster.spawn_driver("dies");
    wait_for("the driver's work placed", || {
        cluster.work.join("driver-ready").exists().then_some(())
    });
    let dirs = [&cluster.head_dir, &cluster.a, &cluster.b];
    let workers = |d: &NodeDir| {
        processes_under(&d.path)
            .into_iter()
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| c.contains("--ray-worker"))
            })
            .count()
    };
    // The actor's worker and the task's, on A or B.
    assert!(
        workers(&cluster.a) + workers(&cluster.b) >= 1,
        "workers on the nodes"
    );
    // `ray-rs memory` shows the live 8 MiB value, on A or B, largest first.
    let memory = ray_rs_json(
        &["memory"],
        &cluster.head.address,
        &cluster.head_dir,
        &cluster.token,
    );
    assert_eq!(
        memory["nodes"].as_array().map(Vec::len),
        Some(3),
        "{memory}"
    );
    let largest = &memory["objects"][0];
    let size = largest["size_bytes"].as_u64().unwrap();
    assert!((8 << 20..(8 << 20) + 64).contains(&size), "{memory}");
    let heads = memory["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["is_head"] == true)
        .count();
    assert_eq!(heads, 1, "{memory}");
    assert_eq!(largest["location"], "store", "{memory}");
    sigkill(driver.id() as i32);
    let _ = driver.wait();
    // No worker is left (a worker runs its node's cached copy of the executable, under the
    // node's temp dir, with `--ray-worker`).
    let left = || -> Vec<String> {
        dirs.iter()
            .flat_map(|d| processes_under(&d.path))
            .map(|p| {
                let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                format!("{p}: {}", String::from_utf8_lossy(&cmd).replace('\0', " "))
            })
            .filter(|cmd| cmd.contains("--ray-worker"))
            .collect()
    };
    let deadline = Instant::now() + WAIT;
    while !left().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the dead driver's processes are still there: {:#?}",
            left()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // And the nodes say so.
    wait_for("no workers in status", || {
        let report = status(
            &cluster.head.address,
            &cluster.head_dir.path,
            &cluster.token,
            &[],
        );
        nodes(&report)
            .iter()
            .all(|n| n["activity"]["workers"].as_u64().unwrap_or(0) == 0)
            .then_some(())
    });
}

/// The status entry of the node whose daemon wrote `dir`'s node file.
fn node_entry(cluster: &Cluster, dir: &NodeDir) -> Option<serde_json::Value> {
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path.join("node.json")).ok()?).ok()?;
    let id = file["node_id"].as_u64()?;
    let report = status(
        &cluster.head.address,
        &cluster.head_dir.path,
        &cluster.token,
        &[],
    );
    nodes(&report)
        .into_iter()
        .find(|n| n["node_id"].as_u64() == Some(id))
}

fn signal_all(pids: &[i32], signal: i32) {
    for p in pids {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(*p, signal) };
    }
}

#[test]
fn a_node_paused_past_its_lease_is_declared_dead_and_rejoins_as_a_new_incarnation() {
    let cluster = Cluster::start_with("fail-pause", &["--lease-ttl", "2"]);
    let driver = cluster.spawn_driver("task");
    let victim = cluster.marked("task-");
    let victim_dir = if cluster.daemons()[0] == victim {
        &cluster.a
    } else {
        &cluster.b
    };
    let workers: Vec<i32> = processes_under(&victim_dir.path)
        .into_iter()
        .map(|p| p as i32)
        .filter(|p| *p != victim)
        .collect();
    assert!(!workers.is_empty(), "the task's worker runs there");
    let mut paused: Vec<i32> = workers.clone();
    paused.push(victim);
    // The whole node stops: its daemon and its workers.
    let stopped = Instant::now();
    signal_all(&paused, libc::SIGSTOP);
    wait_for("the paused node declared dead", || {
        node_entry(&cluster, victim_dir)
            .is_some_and(|n| n["alive"] == false)
            .then_some(())
    });
    let detected = stopped.elapsed();
    // The task runs again on the other node and finishes there.
    std::fs::write(cluster.work.join("go"), b"").unwrap();
    let (ok, out) = finish(driver);
    let retried = stopped.elapsed();
    assert!(ok && out.contains("FAILURES OK"), "{out}");
    let survivor = cluster
        .daemons()
        .into_iter()
        .find(|d| *d != victim)
        .unwrap();
    assert_eq!(line_after(&out, "TASK "), format!("144 ON {survivor}"));
    assert_eq!(out.matches("TASK ").count(), 1, "one result: {out}");
    // It goes on: notices its lease is gone, stops its workers, rejoins as incarnation 2 of
    // the same node (the same daemon process, executed again).
    signal_all(&paused, libc::SIGCONT);
    let rejoined = wait_for("incarnation 2 alive", || {
        node_entry(&cluster, victim_dir)
            .filter(|n| n["alive"] == true && n["incarnation"] == 2)
            .map(|_| stopped.elapsed())
    });
    assert!(alive(victim), "the same daemon pid");
    wait_for("the old workers gone", || {
        workers.iter().all(|w| !alive(*w)).then_some(())
    });
    println!(
        "FIGURES lease TTL 2 s: declared dead {:.1} s after SIGSTOP; retried task done after \
         {:.1} s; rejoined as incarnation 2 {:.1} s after SIGSTOP",
        detected.as_secs_f64(),
        retried.as_secs_f64(),
        rejoined.as_secs_f64()
    );
    // And the cluster, the rejoined node included, runs work again.
    let driver = cluster.spawn_driver("task");
    let (ok, out) = finish(driver);
    assert!(ok && out.contains("TASK 144 ON"), "{out}");
}

#[test]
fn a_job_goes_on_while_etcd_is_stopped_and_no_node_is_declared_dead() {
    let cluster = Cluster::start("fail-etcd");
    let etcd = cluster.head_dir.pid("etcd.pid").expect("the head's etcd");
    let driver = cluster.spawn_driver("steady");
    let progress = || -> u64 {
        std::fs::read_to_string(cluster.work.join("progress"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    };
    wait_for("the job running", || (progress() > 0).then_some(()));
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(etcd, libc::SIGSTOP) };
    let before = progress();
    // The outage lasts 5 s (the fault injected, not a wait for anything); tasks must go on.
    let stopped = Instant::now();
    let mut during = before;
    while stopped.elapsed() < Duration::from_secs(5) {
        during = during.max(progress());
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: as above.
    unsafe { libc::kill(etcd, libc::SIGCONT) };
    std::fs::write(cluster.work.join("etcd-back"), b"").unwrap();
    assert!(
        during >= before + 5,
        "tasks went on without etcd: {before} -> {during}"
    );
    let (ok, out) = finish(driver);
    assert!(ok && out.contains("STEADY "), "{out}");
    // Nobody was declared dead: the same three nodes, alive, and no restart of a node.
    let report = status(
        &cluster.head.address,
        &cluster.head_dir.path,
        &cluster.token,
        &[],
    );
    let all = nodes(&report);
    assert_eq!(all.len(), 3, "{report:#}");
    assert!(all.iter().all(|n| n["alive"] == true), "{report:#}");
}

/// What the head answers a connection with `token` (the cluster's, unless given) that opens a
/// control session as incarnation `incarnation` of node `node`: a welcome, or the refusal's
/// text (of the token handshake, or of the hello).
fn hello_as(
    cluster: &Cluster,
    token: Option<ray_net::AuthToken>,
    node: u32,
    incarnation: u64,
) -> Result<(), String> {
    let report = status(
        &cluster.head.address,
        &cluster.head_dir.path,
        &cluster.token,
        &[],
    );
    let cluster_id = report["cluster_id"].as_str().unwrap().to_string();
    let addr: std::net::SocketAddr = cluster.head.address.parse().unwrap();
    let ca = std::fs::read(ray_cli::pki::TlsFiles::under(&cluster.head_dir.path).ca).unwrap();
    let tls = ray_net::client_config(Some(&ca), None).unwrap();
    let token = token.unwrap_or_else(|| {
        ray_net::AuthToken::from_env_or_file(&cluster.head_dir.path.join("auth_token")).unwrap()
    });
    let handshake = ray_net::HandshakeConfig::new(token, None, ray_net::Role::Node, "a member");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut conn = ray_net::connect(addr, tls, &handshake)
            .await
            .map_err(|e| e.to_string())?;
        let session = serde_json::to_vec(&ray_cli::control::Request::Session).unwrap();
        conn.send(&session).await.unwrap();
        ray_core::__node::hello_as_node(&mut conn.stream, &cluster_id, node, incarnation)
            .await
            .unwrap()
    })
}

#[test]
fn a_hello_naming_an_incarnation_etcd_has_not_shown_is_refused_and_fences_nothing() {
    let cluster = Cluster::start("fail-forged");
    let a = node_entry(&cluster, &cluster.a).expect("A's status");
    let (id, incarnation) = (
        a["node_id"].as_u64().unwrap() as u32,
        a["incarnation"].as_u64().unwrap(),
    );
    // Anyone with the token may say it is A started again: the head has not seen that in
    // etcd, so it refuses, and keeps A as it is (before, this fenced A at the head for good).
    for forged in [incarnation + 1, u64::MAX] {
        let why = hello_as(&cluster, None, id, forged).expect_err("refused");
        assert!(
            why.contains(&format!("incarnation {forged} of"))
                && why.contains("registrations in etcd"),
            "{why}"
        );
    }
    // A stranger (another token) says nothing: its connection ends at the token handshake.
    let stranger = Some(ray_net::AuthToken::generate().unwrap());
    let why = hello_as(&cluster, stranger, id, incarnation + 1).expect_err("refused");
    assert!(why.contains("wrong cluster token"), "{why}");
    // A still takes work from the head: two tasks that each need A's or B's one `spare` run
    // at once, one on each.
    let drivers = [cluster.spawn_driver("task"), cluster.spawn_driver("task")];
    let both: std::collections::BTreeSet<i32> = cluster.daemons().into_iter().collect();
    wait_for("a task on A and one on B at once", || {
        let marked: std::collections::BTreeSet<i32> = std::fs::read_dir(&cluster.work)
            .ok()?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_prefix("task-")?.parse().ok())
            .collect();
        (marked == both).then_some(())
    });
    std::fs::write(cluster.work.join("go"), b"").unwrap();
    for driver in drivers {
        let (ok, out) = finish(driver);
        assert!(ok && out.contains("TASK 144 ON"), "{out}");
    }
    // (`ray-rs status` reads etcd, which no hello changes: the two tasks above are what show
    // that the head still places work on A.)
}
