//! Actors through the public API: construction, ordering, handles in tasks, kill, scope exit,
//! failures, GPU assignment, threaded actors.

mod common;

use common::*;
use ray::{ActorHandle, Error, ObjectRef};
use std::time::{Duration, Instant};

#[ray::remote]
struct Counter {
    n: i64,
    log: Vec<i64>,
}

#[ray::remote]
impl Counter {
    fn new(start: i64) -> Self {
        Counter {
            n: start,
            log: Vec::new(),
        }
    }
    /// Adds `x`, returns the new total.
    fn add(&mut self, x: i64) -> i64 {
        self.n += x;
        self.log.push(x);
        self.n
    }
    fn get(&self) -> i64 {
        self.n
    }
    fn log(&self) -> Vec<i64> {
        self.log.clone()
    }
    fn pid(&self) -> u32 {
        std::process::id()
    }
    fn fail(&self, why: String) -> i64 {
        panic!("counter failed: {why}")
    }
    fn abort(&self) -> i64 {
        std::process::abort()
    }
    fn slow_get(&self, ms: u64) -> i64 {
        std::thread::sleep(Duration::from_millis(ms));
        self.n
    }
    /// Not remote: no receiver.
    fn helper() -> i64 {
        42
    }
}

#[ray::remote]
fn bump_through_handle(counter: ActorHandle<Counter>, times: i64) -> i64 {
    let mut last = 0;
    for _ in 0..times {
        last = ray::get(&counter.add(1)).unwrap();
    }
    last
}

#[ray::remote]
struct Exploding {}

#[ray::remote]
impl Exploding {
    fn new(fail: bool) -> Self {
        if fail {
            panic!("constructor refused: fail = {fail}");
        }
        Exploding {}
    }
    fn ping(&self) -> String {
        "pong".into()
    }
}

#[ray::remote(num_gpus = 1)]
struct GpuUser {}

#[ray::remote]
impl GpuUser {
    fn new() -> Self {
        GpuUser {}
    }
    fn ids(&self) -> (Vec<usize>, String, String) {
        (
            ray::get_gpu_ids(),
            std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_default(),
            std::env::var(ray::ENV_GPU_IDS).unwrap_or_default(),
        )
    }
}

#[ray::remote(max_concurrency = 4)]
struct Parallel {
    hits: std::sync::atomic::AtomicU64,
}

#[ray::remote]
impl Parallel {
    fn new() -> Self {
        Parallel {
            hits: std::sync::atomic::AtomicU64::new(0),
        }
    }
    fn span(&self, ms: u64) -> (u128, u128) {
        self.hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let start = now_ns();
        std::thread::sleep(Duration::from_millis(ms));
        (start, now_ns())
    }
    fn hits(&self) -> u64 {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn init(cpus: usize) {
    ray::init(ray::Config::default().num_cpus(cpus)).unwrap();
}

#[test]
fn an_actor_keeps_state_across_calls_in_its_own_process() {
    init(2);
    let c: ActorHandle<Counter> = Counter::remote(5);
    let r: ObjectRef<i64> = c.add(3);
    assert_eq!(ray::get(&r).unwrap(), 8);
    assert_eq!(ray::get(&c.get()).unwrap(), 8);
    assert_ne!(ray::get(&c.pid()).unwrap(), std::process::id());
    assert_eq!(Counter::helper(), 42);
    ray::shutdown();
}

#[test]
fn calls_from_one_caller_run_in_call_order() {
    init(2);
    let c = Counter::remote(0);
    let refs: Vec<ObjectRef<i64>> = (1..=500).map(|i| c.add(i)).collect();
    let totals = ray::get_all(&refs).unwrap();
    let expected: Vec<i64> = (1..=500)
        .scan(0, |s, i| {
            *s += i;
            Some(*s)
        })
        .collect();
    assert_eq!(totals, expected);
    assert_eq!(ray::get(&c.log()).unwrap(), (1..=500).collect::<Vec<_>>());
    ray::shutdown();
}

#[test]
fn calls_wait_for_object_ref_arguments_without_reordering() {
    init(2);
    let c = Counter::remote(0);
    let slow = ray::put(0i64).unwrap();
    #[ray::remote]
    fn later(ms: u64, v: i64) -> i64 {
        std::thread::sleep(Duration::from_millis(ms));
        v
    }
    let first = c.add(later::remote(300, 10));
    let second = c.add(1);
    assert_eq!(
        ray::get(&second).unwrap(),
        11,
        "the second call ran after the first"
    );
    assert_eq!(ray::get(&first).unwrap(), 10);
    drop(slow);
    ray::shutdown();
}

#[test]
fn handles_are_clone_send_and_travel_into_tasks() {
    init(2);
    let c = Counter::remote(0);
    let c2 = c.clone();
    let t = std::thread::spawn(move || ray::get(&c2.add(100)).unwrap());
    assert_eq!(t.join().unwrap(), 100);
    let r = bump_through_handle::remote(c.clone(), 5);
    assert_eq!(ray::get(&r).unwrap(), 105);
    assert_eq!(ray::get(&c.get()).unwrap(), 105);
    // A borrowed handle does as well, without a clone.
    let r = bump_through_handle::remote(&c, 2);
    assert_eq!(ray::get(&r).unwrap(), 107);
    ray::shutdown();
}

#[test]
fn kill_ends_the_actor_and_fails_later_calls() {
    init(2);
    let c = Counter::remote(1);
    let pid = ray::get(&c.pid()).unwrap();
    // Queued or already running, the call fails: the ordering and failing logic is unit-tested
    // in the node manager (`calls_from_one_caller_run_in_order_and_a_killed_actor_fails_the_rest`).
    let pending = c.slow_get(5_000);
    ray::kill(&c);
    match ray::get(&pending) {
        Err(Error::ActorDied {
            actor,
            cause,
            restarting,
        }) => {
            assert_eq!(actor, "Counter");
            assert!(!restarting);
            assert!(cause.contains("ray::kill"), "{cause}");
        }
        other => panic!("expected ActorDied, got {other:?}"),
    }
    assert!(matches!(ray::get(&c.get()), Err(Error::ActorDied { .. })));
    assert!(
        eventually(Duration::from_secs(5), || !pid_alive(pid)),
        "the actor's process is gone"
    );
    ray::shutdown();
}

#[test]
fn an_actor_whose_handles_are_all_dropped_exits() {
    init(2);
    let c = Counter::remote(1);
    let pid = ray::get(&c.pid()).unwrap();
    let last = c.add(1);
    let c2 = c.clone();
    drop(c);
    assert_eq!(
        ray::get(&c2.get()).unwrap(),
        2,
        "a clone still holds it: it answers"
    );
    assert!(pid_alive(pid));
    drop(c2);
    assert_eq!(
        ray::get(&last).unwrap(),
        2,
        "calls made before the drop still complete"
    );
    assert!(
        eventually(Duration::from_secs(5), || !pid_alive(pid)),
        "worker {pid} should exit"
    );
    ray::shutdown();
}

#[test]
fn constructor_panics_surface_on_the_first_method_get() {
    init(2);
    let ok = Exploding::remote(false);
    assert_eq!(ray::get(&ok.ping()).unwrap(), "pong");
    let bad = Exploding::remote(true);
    match ray::get(&bad.ping()) {
        Err(Error::ActorDied { actor, cause, .. }) => {
            assert_eq!(actor, "Exploding");
            assert!(
                cause.contains("constructor refused: fail = true"),
                "{cause}"
            );
        }
        other => panic!("expected ActorDied, got {other:?}"),
    }
    ray::shutdown();
}

#[test]
fn a_method_panic_fails_that_call_only() {
    init(2);
    let c = Counter::remote(7);
    match ray::get(&c.fail("oops".to_string())) {
        Err(Error::TaskFailed {
            function, message, ..
        }) => {
            assert_eq!(function, "Counter.fail");
            assert_eq!(message, "counter failed: oops");
        }
        other => panic!("expected TaskFailed, got {other:?}"),
    }
    assert_eq!(ray::get(&c.get()).unwrap(), 7);
    ray::shutdown();
}

#[test]
fn an_actor_whose_process_dies_fails_pending_and_later_calls() {
    init(2);
    let c = Counter::remote(0);
    let crash = c.abort();
    let after = c.add(1);
    for r in [&crash, &after] {
        match ray::get(r) {
            Err(Error::ActorDied { cause, .. }) => assert!(cause.contains("SIGABRT"), "{cause}"),
            other => panic!("expected ActorDied, got {other:?}"),
        }
    }
    assert!(matches!(ray::get(&c.get()), Err(Error::ActorDied { .. })));
    ray::shutdown();
}

#[test]
fn gpu_actors_get_distinct_ids_and_a_third_waits_for_one_to_be_killed() {
    ray::init(ray::Config::default().num_cpus(2).num_gpus(2)).unwrap();
    let a = GpuUser::remote();
    let b = GpuUser::remote();
    let (ids_a, cuda_a, env_a) = ray::get(&a.ids()).unwrap();
    let (ids_b, cuda_b, env_b) = ray::get(&b.ids()).unwrap();
    assert_eq!(ids_a.len(), 1);
    assert_eq!(ids_b.len(), 1);
    assert_ne!(ids_a, ids_b);
    assert_eq!(cuda_a, ids_a[0].to_string());
    assert_eq!(env_a, ids_a[0].to_string());
    assert_eq!(cuda_b, ids_b[0].to_string());
    assert_eq!(env_b, ids_b[0].to_string());

    let c = GpuUser::remote();
    let third = c.ids();
    let (ready, _) = ray::wait(
        std::slice::from_ref(&third),
        1,
        Some(Duration::from_millis(500)),
    );
    assert!(ready.is_empty(), "no GPU is free for the third actor");
    ray::kill(&a);
    let (ids_c, _, _) = ray::get_with_timeout(&third, Duration::from_secs(20)).unwrap();
    assert_eq!(
        ids_c, ids_a,
        "the third actor got the GPU the killed one held"
    );
    ray::shutdown();
}

#[test]
fn infeasible_actors_fail_their_calls_at_once() {
    ray::init(ray::Config::default().num_cpus(1).num_gpus(0)).unwrap();
    let g = GpuUser::remote();
    let t = Instant::now();
    match ray::get(&g.ids()) {
        Err(Error::Infeasible {
            requested,
            available,
            ..
        }) => {
            assert_eq!(requested, "GPU: 1");
            assert_eq!(available, "CPU: 1, GPU: 0");
        }
        other => panic!("expected Infeasible, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(1));
    let too_big = Counter::options().num_cpus(5).remote(0);
    assert!(matches!(
        ray::get(&too_big.get()),
        Err(Error::Infeasible { .. })
    ));
    ray::shutdown();
}

#[test]
fn threaded_actors_run_shared_methods_concurrently() {
    init(2);
    let p = Parallel::remote();
    let spans = ray::get_all(&(0..4).map(|_| p.span(300)).collect::<Vec<_>>()).unwrap();
    assert!(
        max_overlap(&spans) >= 3,
        "max_concurrency = 4 lets &self calls overlap: {spans:?}"
    );
    assert_eq!(ray::get(&p.hits()).unwrap(), 4);
    ray::shutdown();
}

#[test]
fn actors_and_tasks_can_call_actors_created_in_workers() {
    #[ray::remote]
    fn make_counter(start: i64) -> ActorHandle<Counter> {
        let c = Counter::remote(start);
        ray::get(&c.add(1)).unwrap();
        c
    }
    init(2);
    let c = ray::get(&make_counter::remote(10)).unwrap();
    assert_eq!(
        ray::get(&c.add(5)).unwrap(),
        16,
        "the actor outlives the task that made it"
    );
    ray::shutdown();
}

#[ray::remote(max_restarts = 1)]
struct Phoenix {
    calls: u32,
}

#[ray::remote]
impl Phoenix {
    fn new() -> Self {
        Phoenix { calls: 0 }
    }
    fn call(&mut self) -> (u32, u32) {
        self.calls += 1;
        (self.calls, std::process::id())
    }
    fn crash(&self) -> u32 {
        std::process::abort()
    }
}

#[test]
fn an_actor_with_max_restarts_is_started_again_after_its_process_dies() {
    init(2);
    let p = Phoenix::remote();
    let (n, pid1) = ray::get(&p.call()).unwrap();
    assert_eq!(n, 1);
    match ray::get(&p.crash()) {
        Err(Error::ActorDied {
            cause, restarting, ..
        }) => {
            assert!(restarting, "the call failed, the actor restarts");
            assert!(cause.contains("restarting (1 of 1"), "{cause}")
        }
        other => panic!("expected ActorDied, got {other:?}"),
    }
    let (n, pid2) = ray::get(&p.call()).unwrap();
    assert_eq!(n, 1, "the constructor ran again: fresh state");
    assert_ne!(pid1, pid2, "in a new worker process");
    match ray::get(&p.crash()) {
        Err(Error::ActorDied { restarting, .. }) => assert!(!restarting, "no restarts left"),
        other => panic!("expected ActorDied, got {other:?}"),
    }
    assert!(
        matches!(ray::get(&p.call()), Err(Error::ActorDied { .. })),
        "no restarts left"
    );
    ray::shutdown();
}
