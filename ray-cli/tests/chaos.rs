//! Chaos (issue 11): a job of 2,000 tasks and 20 actors runs while a random worker node is
//! SIGKILLed and a fresh one started every few seconds. Every result must be right, and when
//! the driver is done nothing of it is left on any node.
//!
//! Nodes: the head (1 CPU, no `spare`) and two worker nodes (2 CPUs, `spare = 1`), leases of
//! 3 s (a killed node is dead when its lease expires: its session only makes it suspect); the actors
//! need a little `spare`, so they live on the nodes that are killed and are restarted on the
//! survivor. Calls lost with an actor's node fail with `ActorDied { restarting: true }` and are
//! made again by the driver (fresh state is fine: the actors are pure).

mod common;

use common::*;
use std::time::{Duration, Instant};

const TASKS: u64 = 2_000;
const ACTORS: u64 = 20;
const WAVES: u64 = 20;

#[ray::remote(max_retries = 50)]
fn slow_square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(15));
    x * x
}

#[ray::remote(resources(spare = 0.04), max_restarts = 1000)]
struct Scaler {
    k: u64,
}

#[ray::remote]
impl Scaler {
    fn new(k: u64) -> Self {
        Scaler { k }
    }
    fn mul(&self, x: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(5));
        self.k * x
    }
}

/// The driver. A no-op unless `RAY_CLUSTER_DRIVER` is set.
#[test]
fn driver_main() {
    if std::env::var(MODE).is_err() {
        return;
    }
    ray::init(ray::Config::default()).expect("joins the cluster");
    let actors: Vec<_> = (0..ACTORS).map(Scaler::remote).collect();
    let (mut calls, mut remade) = (0u64, 0u64);
    let per_wave = TASKS / WAVES;
    for wave in 0..WAVES {
        let xs: Vec<u64> = (wave * per_wave..(wave + 1) * per_wave).collect();
        let refs: Vec<_> = xs.iter().map(|x| slow_square::remote(*x)).collect();
        let mut pending: Vec<(u64, u64, ray::ObjectRef<u64>)> = actors
            .iter()
            .enumerate()
            .flat_map(|(k, a)| (0..3u64).map(move |j| (k as u64, wave + j, a.mul(wave + j))))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(120);
        while !pending.is_empty() {
            assert!(Instant::now() < deadline, "actor calls never completed");
            let mut again = Vec::new();
            for (k, x, r) in pending {
                match ray::get(&r) {
                    Ok(v) => {
                        assert_eq!(v, k * x, "actor {k} times {x}");
                        calls += 1;
                    }
                    Err(ray::Error::ActorDied {
                        restarting: true, ..
                    }) => {
                        remade += 1;
                        again.push((k, x, actors[k as usize].mul(x)));
                    }
                    Err(e) => panic!("actor {k}: {e}"),
                }
            }
            pending = again;
        }
        let values = ray::get_all(&refs).expect("every task, retried where its node died");
        for (x, v) in xs.iter().zip(values) {
            assert_eq!(v, x * x, "task {x}");
        }
        println!("WAVE {wave} OK");
    }
    ray::shutdown();
    println!("CHAOS tasks={TASKS} actor_calls={calls} calls_made_again={remade}");
}

fn start_worker_node(head: &Head, token: &str, round: usize) -> NodeDir {
    let dir = NodeDir::new(&format!("chaos-{round}"));
    join(head, &dir, token, &spare_node("2", &[]), &[]);
    dir
}

#[test]
fn a_job_survives_nodes_killed_and_replaced_every_few_seconds() {
    let head_dir = NodeDir::new("chaos-head");
    let head = Head::start(
        &head_dir,
        &["--num-cpus", "1", "--num-gpus", "0", "--lease-ttl", "3"],
    );
    let token = head_dir.token();
    let mut nodes = vec![
        start_worker_node(&head, &token, 0),
        start_worker_node(&head, &token, 1),
    ];
    let mut retired = Vec::new();
    let mut driver = spawn_driver("chaos", &head.address, &token, &[]);
    // A small deterministic generator: which node goes, and when.
    let mut seed = u64::from(std::process::id()) | 1;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let started = Instant::now();
    let mut kills = 0;
    let status_done = loop {
        // Between 2 and 4 seconds of work, then a kill (the fault, not a wait for anything).
        let pause = Duration::from_millis(2_000 + next() % 2_000);
        let until = Instant::now() + pause;
        let mut exited = None;
        while Instant::now() < until {
            if let Some(s) = driver.try_wait().unwrap() {
                exited = Some(s);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(s) = exited {
            break s;
        }
        assert!(
            started.elapsed() < WAIT * 4,
            "the job did not finish under chaos"
        );
        let victim = (next() % nodes.len() as u64) as usize;
        let dir = nodes.remove(victim);
        let pid = dir.pid("ray-rs.pid").expect("the node's pid");
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        kills += 1;
        retired.push(dir);
        nodes.push(start_worker_node(&head, &token, kills + 1));
    };
    let out = driver.wait_with_output().unwrap();
    let text = output_text(&out);
    assert!(status_done.success(), "{text}");
    let summary = text
        .lines()
        .find_map(|l| l.split("CHAOS ").nth(1))
        .unwrap_or_else(|| panic!("no summary: {text}"));
    assert!(kills >= 1, "at least one node was killed under the job");
    // Nothing of the job is left: no worker process on any node, killed or alive, and the
    // live nodes say so.
    wait_for("no workers left anywhere", || {
        nodes
            .iter()
            .chain(&retired)
            .all(|d| workers_under(&d.path).is_empty())
            .then_some(())
    });
    wait_for("no workers in status", || {
        let report = status(&head.address, &head_dir.path, &token, &[]);
        common::nodes(&report)
            .iter()
            .filter(|n| n["alive"] == true)
            .all(|n| n["activity"]["workers"].as_u64().unwrap_or(0) == 0)
            .then_some(())
    });
    println!(
        "FIGURES chaos: {summary}, nodes killed={kills}, took {:.1} s, results correct, leaks found: 0",
        started.elapsed().as_secs_f64()
    );
}
