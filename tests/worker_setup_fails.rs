//! A `#[ray::worker_setup]` function that panics: the workers run nothing, and every task or
//! actor sent to them fails with `Error::WorkerSetupFailed` (its own test binary: setup
//! functions are per executable).

use ray::Error;

#[ray::worker_setup]
fn broken_setup() {
    panic!("no config file at /nonexistent/app.toml");
}

#[ray::remote]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[ray::remote]
struct Thing {}

#[ray::remote]
impl Thing {
    fn new() -> Self {
        Thing {}
    }
    fn ping(&self) -> u8 {
        1
    }
}

fn check(err: Error) {
    match &err {
        Error::WorkerSetupFailed { hook, message, pid } => {
            assert_eq!(hook, "worker_setup_fails::broken_setup");
            assert_eq!(message, "no config file at /nonexistent/app.toml");
            assert_ne!(*pid, std::process::id());
        }
        other => panic!("expected WorkerSetupFailed, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("worker setup `worker_setup_fails::broken_setup` panicked"),
        "{text}"
    );
}

#[test]
fn tasks_and_actors_fail_with_the_setup_error_instead_of_running() {
    ray::init(ray::Config::default().num_cpus(1)).unwrap();
    check(ray::get(&add::remote(1, 2)).unwrap_err());
    check(ray::get(&add::remote(3, 4)).unwrap_err());
    let thing = Thing::remote();
    match ray::get(&thing.ping()).unwrap_err() {
        Error::ActorDied { cause, .. } => assert!(
            cause.contains("worker setup `worker_setup_fails::broken_setup` panicked"),
            "{cause}"
        ),
        other => check(other),
    }
    ray::shutdown();
}
