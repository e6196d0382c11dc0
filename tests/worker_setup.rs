//! `#[ray::worker_setup]`: every worker runs the program's setup functions once, before its
//! first task or actor (its own test binary: setup functions are per executable).

use std::sync::atomic::{AtomicU32, Ordering};

/// How often this process ran `setup`.
static SETUPS: AtomicU32 = AtomicU32::new(0);
/// Set by `setup` to what a task can check: process-wide state made before any task ran.
static CONFIGURED: std::sync::OnceLock<String> = std::sync::OnceLock::new();

#[ray::worker_setup]
fn setup() {
    SETUPS.fetch_add(1, Ordering::SeqCst);
    let _ = CONFIGURED.set(format!("set up in {}", std::process::id()));
    println!("worker setup ran");
}

mod nested {
    use std::sync::atomic::{AtomicBool, Ordering};

    pub static SECOND: AtomicBool = AtomicBool::new(false);

    /// A second setup function, in another module: both run.
    #[ray::worker_setup]
    pub fn also() {
        SECOND.store(true, Ordering::SeqCst);
    }
}

/// What a worker saw: (pid, times `setup` ran, its state, whether `also` ran).
#[ray::remote]
fn observe() -> (u32, u32, Option<String>, bool) {
    (
        std::process::id(),
        SETUPS.load(Ordering::SeqCst),
        CONFIGURED.get().cloned(),
        nested::SECOND.load(Ordering::SeqCst),
    )
}

#[ray::remote]
struct Observer {}

#[ray::remote]
impl Observer {
    fn new() -> Self {
        assert_eq!(
            SETUPS.load(Ordering::SeqCst),
            1,
            "set up before the constructor"
        );
        Observer {}
    }
    fn observe(&self) -> (u32, u32, Option<String>, bool) {
        observe()
    }
}

#[test]
fn every_worker_runs_the_setup_functions_once_before_its_first_task() {
    ray::init(ray::Config::default().num_cpus(2)).unwrap();
    assert_eq!(
        SETUPS.load(Ordering::SeqCst),
        0,
        "the driver does not run them"
    );
    let refs: Vec<_> = (0..20).map(|_| observe::remote()).collect();
    let seen = ray::get_all(&refs).unwrap();
    let mut pids: Vec<u32> = seen.iter().map(|s| s.0).collect();
    pids.sort();
    pids.dedup();
    assert!(pids.len() < seen.len(), "workers are reused: {pids:?}");
    for (pid, setups, state, also) in seen {
        assert_eq!(
            setups, 1,
            "worker {pid} ran setup once, however many tasks it ran"
        );
        assert_eq!(state, Some(format!("set up in {pid}")));
        assert!(also, "worker {pid} ran the second setup function too");
    }
    let actor = Observer::remote();
    let (pid, setups, state, also) = ray::get(&actor.observe()).unwrap();
    assert_eq!(
        (setups, state, also),
        (1, Some(format!("set up in {pid}")), true)
    );
    ray::shutdown();
}
