//! Named and detached actors on a real cluster (issue 12): a name is unique across every node
//! (etcd's compare-and-swap), found by drivers attached to other nodes, and a detached actor
//! outlives the driver that made it until `ray::kill`.

mod common;

use common::*;
use ray::{Error, Lifetime};

#[ray::remote]
struct Ledger {
    total: u64,
}

#[ray::remote]
impl Ledger {
    fn new() -> Self {
        Ledger { total: 0 }
    }
    fn add(&mut self, x: u64) -> u64 {
        self.total += x;
        self.total
    }
    fn pid(&self) -> u32 {
        std::process::id()
    }
}

#[ray::remote]
struct Other {}

#[ray::remote]
impl Other {
    fn new() -> Self {
        Other {}
    }
}

/// A task that looks the ledger up from a worker (on whichever node runs it).
#[ray::remote]
fn add_from_a_task(x: u64) -> u64 {
    let ledger = ray::get_actor::<Ledger>("ledger").expect("a worker finds the name");
    ray::get(&ledger.add(x)).expect("the call")
}

#[test]
fn names_are_shared_by_every_node_and_a_detached_actor_outlives_its_driver() {
    let head_dir = NodeDir::new("names-head");
    let head = Head::start(&head_dir, &["--num-cpus", "1"]);
    let token = head_dir.token();
    let b_dir = NodeDir::new("names-b");
    join(&head, &b_dir, &token, &["--num-cpus", "1"], &[]);
    let b_address = wait_for("node b in status", || {
        let report = status(&head.address, &head_dir.path, &token, &[]);
        nodes(&report)
            .iter()
            .find(|n| n["is_head"].as_bool() == Some(false) && n["alive"].as_bool() == Some(true))
            .and_then(|n| n["address"].as_str().map(str::to_string))
    });

    // A driver on the head makes a detached, named actor and exits.
    let out = driver("create", &head.address, &token);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("CREATE OK"),
        "{stdout}"
    );
    let pid: i32 = stdout
        .lines()
        .find_map(|l| l.split("ACTOR PID ").nth(1))
        .and_then(|p| p.trim().parse().ok())
        .expect("the actor's pid");
    assert!(alive(pid), "the detached actor outlived its driver");

    // A driver on the other node finds it by name, with its state; the name stays unique.
    let out = driver("use", &b_address, &token);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("USE OK"),
        "{stdout}"
    );
    wait_for("the killed actor's process to exit", || {
        (!alive(pid)).then_some(())
    });

    // Killed: the name is free, on every node.
    let out = driver("gone", &head.address, &token);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("GONE OK"),
        "{stdout}"
    );
}

fn init() {
    if let Err(e) = ray::init(ray::Config::default().namespace("accounts")) {
        eprintln!("INIT FAILED: {e}");
        std::process::exit(3);
    }
}

/// The driver. A no-op unless `RAY_CLUSTER_DRIVER` is set.
#[test]
fn driver_main() {
    let Ok(mode) = std::env::var(MODE) else {
        return;
    };
    match mode.as_str() {
        "create" => {
            init();
            let ledger = Ledger::options()
                .name("ledger")
                .lifetime(Lifetime::Detached)
                .remote();
            assert_eq!(ray::get(&ledger.add(5)).unwrap(), 5);
            println!("ACTOR PID {}", ray::get(&ledger.pid()).unwrap());
            ray::shutdown();
            println!("CREATE OK");
        }
        "use" => {
            init();
            let ledger = ray::get_actor::<Ledger>("ledger").expect("found from another node");
            assert_eq!(ray::get(&ledger.add(1)).unwrap(), 6, "its state lived on");
            // A second actor of that name, from this node: refused, naming the holder.
            let dup = Ledger::options().name("ledger").remote();
            match ray::get(&dup.add(1)) {
                Err(Error::ActorNameTaken { name, .. }) => assert_eq!(name, "ledger"),
                other => panic!("expected ActorNameTaken, got {other:?}"),
            }
            // get_if_exists gives the one there is.
            let same = Ledger::options()
                .name("ledger")
                .get_if_exists(true)
                .remote();
            assert_eq!(ray::get(&same.add(0)).unwrap(), 6);
            // A task finds it too, from its worker.
            assert_eq!(ray::get(&add_from_a_task::remote(4)).unwrap(), 10);
            // Another class under that name, or another namespace: clear errors.
            assert!(matches!(
                ray::get_actor::<Other>("ledger"),
                Err(Error::ActorClassMismatch { .. })
            ));
            assert!(matches!(
                ray::get_actor_in::<Ledger>("ledger", "elsewhere"),
                Err(Error::ActorNotFound { .. })
            ));
            let names = ray::list_named_actors().unwrap();
            assert!(names.contains(&"ledger".to_string()), "{names:?}");
            ray::kill(&ledger);
            assert!(ray::get(&ledger.add(1)).is_err(), "killed");
            ray::shutdown();
            println!("USE OK");
        }
        "gone" => {
            init();
            match ray::get_actor::<Ledger>("ledger") {
                Err(Error::ActorNotFound { .. }) => {}
                other => panic!("expected ActorNotFound, got {:?}", other.map(|_| ())),
            }
            // The name is free again: a new actor gets it.
            let fresh = Ledger::options().name("ledger").remote();
            assert_eq!(ray::get(&fresh.add(2)).unwrap(), 2);
            ray::shutdown();
            println!("GONE OK");
        }
        other => panic!("unknown mode {other}"),
    }
}
