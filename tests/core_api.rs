//! The rest of Ray's core API through the public API, each case mirroring a Ray test (named in
//! its comment): named and detached actors, cancel, multiple and streaming returns, retries,
//! introspection, and the fidelity fixes (escaped refs, unhandled errors).

mod common;

use common::*;
use ray::{ActorHandle, CancelOptions, Error, Lifetime, ObjectRef};
use std::process::{Command, Stdio};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

// ----- actors used below -------------------------------------------------------------------

#[ray::remote(max_restarts = 1)]
struct Named {
    pings: u32,
}

#[ray::remote]
impl Named {
    fn new() -> Self {
        Named { pings: 0 }
    }
    fn ping(&mut self) -> String {
        self.pings += 1;
        "pong".into()
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

#[ray::remote]
fn ping_by_name(name: String) -> String {
    let a = ray::get_actor::<Named>(&name).unwrap();
    ray::get(&a.ping()).unwrap()
}

/// Records what tasks report, for tests that must see side effects.
#[ray::remote]
struct Recorder {
    events: Vec<String>,
}

#[ray::remote]
impl Recorder {
    fn new() -> Self {
        Recorder { events: Vec::new() }
    }
    fn record(&mut self, what: String) {
        self.events.push(what);
    }
    fn events(&self) -> Vec<String> {
        self.events.clone()
    }
}

fn events(r: &ActorHandle<Recorder>) -> Vec<String> {
    ray::get(&r.events()).unwrap()
}

// ----- named and detached actors -----------------------------------------------------------

/// test_actor_advanced::test_named_but_not_detached (and its name reclaiming part).
#[test]
fn a_named_actor_is_found_by_name_and_its_name_is_freed_when_its_handles_go() {
    ray::init(ray::Config::default().num_cpus(1)).unwrap();
    let actor = Named::options().name("actor").remote();
    assert_eq!(ray::get(&actor.ping()).unwrap(), "pong");
    let handle = ray::get_actor::<Named>("actor").unwrap();
    assert_eq!(handle.actor_id(), actor.actor_id());
    assert_eq!(ray::list_named_actors().unwrap(), ["actor"]);
    assert_eq!(ray::get(&handle.ping()).unwrap(), "pong");
    // From a task too.
    assert_eq!(
        ray::get(&ping_by_name::remote("actor".to_string())).unwrap(),
        "pong"
    );

    // Killed: the name is free at once.
    let a = Named::options().name("my_actor_1").remote();
    ray::get(&a.ping()).unwrap();
    ray::kill(&a);
    assert!(matches!(
        ray::get_actor::<Named>("my_actor_1"),
        Err(Error::ActorNotFound { name, .. }) if name == "my_actor_1"
    ));
    // Out of scope: free once the actor has exited.
    let b = Named::options().name("my_actor_2").remote();
    ray::get(&b.ping()).unwrap();
    drop(b);
    assert!(eventually(LONG, || ray::get_actor::<Named>("my_actor_2").is_err()));
    drop((actor, handle));
    ray::shutdown();
}

/// test_actor_advanced::test_get_actor_after_killed, with namespaces
/// (test_actor_namespace_access).
#[test]
fn names_live_in_namespaces_and_survive_a_restart_but_not_a_kill() {
    ray::init(ray::Config::default().num_cpus(1).namespace("default_ns")).unwrap();
    let actor = Named::options()
        .name("actor")
        .namespace("namespace")
        .remote();
    ray::get(&actor.ping()).unwrap();
    match ray::get_actor::<Named>("actor") {
        Err(Error::ActorNotFound {
            namespace, hint, ..
        }) => {
            assert_eq!(namespace, "default_ns");
            assert!(hint.contains("\"namespace\""), "{hint}");
        }
        other => panic!("expected ActorNotFound, got {other:?}"),
    }
    ray::kill(&actor);
    assert!(matches!(
        ray::get_actor_in::<Named>("actor", "namespace"),
        Err(Error::ActorNotFound { .. })
    ));

    // `max_restarts = 1`: killed with a restart allowed, it keeps its name.
    let actor = Named::options()
        .name("actor_2")
        .namespace("namespace")
        .remote();
    let pid = ray::get(&actor.pid()).unwrap();
    ray::kill_and_restart(&actor).unwrap();
    let again = ray::get_actor_in::<Named>("actor_2", "namespace").unwrap();
    // A call racing the kill may still be answered by the old process before it dies; the
    // restarted actor answers from a new one.
    let mut new_pid = None;
    assert!(
        eventually(LONG, || {
            new_pid = ray::get(&again.pid()).ok();
            new_pid.is_some_and(|p| p != pid)
        }),
        "a new process: still {new_pid:?} (was {pid})"
    );
    assert_eq!(ray::get(&again.ping()).unwrap(), "pong");
    ray::shutdown();
}

/// test_actor_advanced::test_detached_actor (name checks) and get_if_exists.
#[test]
fn names_are_unique_checked_and_typed() {
    ray::init(ray::Config::default().num_cpus(1)).unwrap();
    let first = Named::options().name("ledger").remote();
    ray::get(&first.ping()).unwrap();
    let second = Named::options().name("ledger").remote();
    match ray::get(&second.ping()) {
        Err(Error::ActorNameTaken { name, holder, .. }) => {
            assert_eq!(name, "ledger");
            assert_eq!(holder, first.actor_id(), "the error names the holder");
        }
        other => panic!("expected ActorNameTaken, got {other:?}"),
    }
    let same = Named::options().name("ledger").get_if_exists(true).remote();
    assert_eq!(same.actor_id(), first.actor_id());
    let fresh = Named::options().name("fresh").get_if_exists(true).remote();
    assert_eq!(ray::get(&fresh.ping()).unwrap(), "pong");
    assert!(matches!(
        ray::get_actor::<Other>("ledger"),
        Err(Error::ActorClassMismatch { expected, found, .. })
            if expected == "Other" && found.ends_with("::Named")
    ));
    for bad in ["", "   "] {
        let a = Named::options().name(bad).remote();
        assert!(matches!(
            ray::get(&a.ping()),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(matches!(
            ray::get_actor::<Named>(bad),
            Err(Error::InvalidArgument { .. })
        ));
    }
    let a = Named::options().name("x").namespace("").remote();
    assert!(matches!(
        ray::get(&a.ping()),
        Err(Error::InvalidArgument { .. })
    ));
    // Detached needs a cluster to outlive the driver in.
    let d = Named::options()
        .name("d_actor")
        .lifetime(Lifetime::Detached)
        .remote();
    match ray::get(&d.ping()) {
        Err(e @ Error::NeedsCluster { .. }) => {
            assert!(e.to_string().contains("single-node"), "{e}")
        }
        other => panic!("expected NeedsCluster, got {other:?}"),
    }
    ray::shutdown();
}

// ----- cancel --------------------------------------------------------------------------------

#[ray::remote(max_retries = 0)]
fn wait_for_cancel(recorder: ActorHandle<Recorder>, name: String) -> u32 {
    ray::get(&recorder.record(format!("{name} started"))).unwrap();
    while !ray::is_cancelled() {
        std::thread::sleep(Duration::from_millis(2));
    }
    ray::get(&recorder.record(format!("{name} saw the cancel"))).unwrap();
    7
}

#[ray::remote(max_retries = 0)]
fn sleep_forever(recorder: ActorHandle<Recorder>) -> u32 {
    ray::get(&recorder.record(format!("pid {}", std::process::id()))).unwrap();
    std::thread::sleep(Duration::from_secs(600));
    0
}

#[ray::remote(max_retries = 0)]
fn parent(recorder: ActorHandle<Recorder>) -> u32 {
    let child = wait_for_cancel::remote(&recorder, "child".to_string());
    while !ray::is_cancelled() {
        std::thread::sleep(Duration::from_millis(2));
    }
    // Outlives its own cancellation until the child saw its own.
    let _ = ray::get(&child);
    1
}

/// test_cancel::test_cancel_chain / test_cancel_multiple_dependents: a queued task never
/// runs, a running one sees the cancel, and `get` says `TaskCancelled`.
#[test]
fn a_queued_task_never_runs_and_a_running_one_sees_the_cancel() {
    ray::init(ray::Config::default().num_cpus(1)).unwrap();
    let rec = Recorder::remote();
    let running = wait_for_cancel::remote(&rec, "first".to_string());
    assert!(eventually(LONG, || events(&rec).contains(&"first started".into())));
    let queued = wait_for_cancel::remote(&rec, "second".to_string());
    ray::cancel(&queued).unwrap();
    assert!(
        matches!(ray::get(&queued), Err(Error::TaskCancelled { how, .. }) if how.contains("before"))
    );
    ray::cancel(&running).unwrap();
    match ray::get(&running) {
        Err(Error::TaskCancelled { function, how, .. }) => {
            assert!(function.ends_with("wait_for_cancel"), "{function}");
            assert!(how.contains("while it ran"), "{how}");
        }
        other => panic!("expected TaskCancelled, got {other:?}"),
    }
    assert_eq!(events(&rec), ["first started", "first saw the cancel"]);
    // A task that finished keeps its result.
    let done = wait_for_cancel::remote(&rec, "third".to_string());
    ray::cancel(&done).unwrap();
    assert!(ray::get(&done).is_err());
    let plain = ray::put(5u32).unwrap();
    ray::cancel(&plain).unwrap();
    assert_eq!(ray::get(&plain).unwrap(), 5);
    ray::shutdown();
}

/// test_cancel::test_force_kill (`force=True` kills the worker).
#[test]
fn a_forced_cancel_kills_the_worker() {
    ray::init(ray::Config::default().num_cpus(1)).unwrap();
    let rec = Recorder::remote();
    let r = sleep_forever::remote(&rec);
    assert!(eventually(LONG, || events(&rec).len() == 1));
    let pid: u32 = events(&rec)[0][4..].parse().unwrap();
    ray::cancel_with(&r, CancelOptions::new().force(true)).unwrap();
    let got = ray::get(&r);
    assert!(
        matches!(&got, Err(Error::TaskCancelled { how, .. }) if how.contains("force")),
        "{got:?}"
    );
    assert!(eventually(LONG, || !pid_alive(pid)));
    ray::shutdown();
}

/// test_cancel::test_recursive_cancel.
#[test]
fn a_recursive_cancel_reaches_the_tasks_a_task_submitted() {
    ray::init(ray::Config::default().num_cpus(2)).unwrap();
    let rec = Recorder::remote();
    let p = parent::remote(&rec);
    assert!(eventually(LONG, || events(&rec).contains(&"child started".into())));
    ray::cancel_with(&p, CancelOptions::new().recursive(true)).unwrap();
    assert!(matches!(ray::get(&p), Err(Error::TaskCancelled { .. })));
    assert!(eventually(LONG, || events(&rec)
        .contains(&"child saw the cancel".into())));
    ray::shutdown();
}

#[ray::remote(max_concurrency = 2)]
struct Blocking {}

#[ray::remote]
impl Blocking {
    fn new() -> Self {
        Blocking {}
    }
    fn block_until_cancelled(&self) -> u32 {
        while !ray::is_cancelled() {
            std::thread::sleep(Duration::from_millis(2));
        }
        1
    }
    fn quick(&self) -> u32 {
        2
    }
}

/// test_cancel::test_cancel_queued_actor_task / actor tasks cannot be force-cancelled.
#[test]
fn actor_calls_are_cancelled_queued_or_running_but_not_forced() {
    ray::init(ray::Config::default().num_cpus(1)).unwrap();
    let a = Blocking::options().max_concurrency(1).remote();
    let running = a.block_until_cancelled();
    let queued = a.quick();
    assert!(matches!(
        ray::cancel_with(&running, CancelOptions::new().force(true)),
        Err(Error::InvalidArgument { .. })
    ));
    ray::cancel(&queued).unwrap();
    assert!(matches!(
        ray::get(&queued),
        Err(Error::TaskCancelled { .. })
    ));
    ray::cancel(&running).unwrap();
    assert!(matches!(
        ray::get(&running),
        Err(Error::TaskCancelled { .. })
    ));
    assert_eq!(ray::get(&a.quick()).unwrap(), 2, "the actor lives on");
    ray::shutdown();
}

// ----- multiple returns --------------------------------------------------------------------

#[ray::remote(num_returns = 3)]
fn three(n: u32) -> (u32, String, Vec<u8>) {
    (n, format!("n = {n}"), vec![n as u8; 200_000])
}

#[ray::remote(num_returns = 2, max_retries = 0)]
fn two_or_panic(fail: bool) -> (u32, u32) {
    if fail {
        panic!("no values today");
    }
    (1, 2)
}

#[ray::remote]
struct Pairs {}

#[ray::remote]
impl Pairs {
    fn new() -> Self {
        Pairs {}
    }
    /// Calls a multi-return task from the actor's worker (which lives on) and drops what it
    /// got.
    fn nested_pairs(&self, n: u32) -> u32 {
        let mut sum = 0;
        for _ in 0..n {
            let (a, b) = two_or_panic::remote(false);
            sum += ray::get(&a).unwrap() + ray::get(&b).unwrap();
        }
        sum
    }
    #[ray::method(num_returns = 2)]
    fn split(&self, s: String) -> (String, String) {
        let (a, b) = s.split_at(s.len() / 2);
        (a.to_string(), b.to_string())
    }
}

/// test_actor::test_multiple_return_values (and test_basic's multiple returns).
#[test]
fn several_return_values_are_objects_of_their_own() {
    ray::init(ray::Config::default().num_cpus(1)).unwrap();
    let (a, b, c) = three::remote(5);
    drop(b); // each is freed on its own
    assert_eq!(
        ray::get(&c).unwrap().len(),
        200_000,
        "a large one from the store"
    );
    assert_eq!(ray::get(&a).unwrap(), 5);
    let (x, y) = two_or_panic::remote(true);
    for r in [&x, &y] {
        assert!(
            matches!(ray::get(r), Err(Error::TaskFailed { message, .. }) if message.contains("no values"))
        );
    }
    let (x, y) = two_or_panic::remote(false);
    assert_eq!((ray::get(&y).unwrap(), ray::get(&x).unwrap()), (2, 1));
    let p = Pairs::remote();
    // Refs a worker got from a multi-return call are freed once it drops them.
    let before = ray::__private::object_stats().unwrap().0;
    assert_eq!(ray::get(&p.nested_pairs(5)).unwrap(), 15);
    assert!(eventually(LONG, || ray::__private::object_stats()
        .unwrap()
        .0
        <= before));
    let (l, r) = p.split("abcdef");
    assert_eq!(
        (ray::get(&l).unwrap(), ray::get(&r).unwrap()),
        ("abc".into(), "def".into())
    );
    ray::shutdown();
}

// ----- streaming returns -------------------------------------------------------------------

#[ray::remote(streaming)]
fn numbers(n: u32, recorder: ActorHandle<Recorder>) -> impl Iterator<Item = u32> {
    (0..n).inspect(move |i| {
        ray::get(&recorder.record(format!("made {i}"))).unwrap();
    })
}

#[ray::remote(streaming, max_retries = 0)]
fn nothing_then_panic(n: u32) -> Vec<u32> {
    panic!("nothing at all, not even {n}");
}

#[ray::remote(streaming, max_retries = 0)]
fn breaks_midway(n: u32) -> impl Iterator<Item = u32> {
    (0..=n).inspect(move |i| {
        if *i == n {
            panic!("stream broke after {n} items");
        }
    })
}

#[ray::remote]
struct Source {}

#[ray::remote]
impl Source {
    fn new() -> Self {
        Source {}
    }
    #[ray::method(streaming)]
    fn words(&self, text: String) -> Vec<String> {
        text.split(' ').map(String::from).collect()
    }
}

/// Ray's test_streaming_generator: items arrive in order as produced; the producer stays at
/// most `backpressure` items ahead.
#[test]
fn streams_yield_refs_as_items_are_made_with_bounded_backpressure() {
    ray::init(ray::Config::default().num_cpus(2)).unwrap();
    let rec = Recorder::remote();
    let stream = numbers::options().stream_backpressure(2).remote(10, &rec);
    let made = |rec: &ActorHandle<Recorder>| events(rec).len();
    assert!(eventually(LONG, || made(&rec) == 2));
    // Blocked: two made and not taken. It stays so until one is taken.
    let (ready, _) = ray::wait(
        std::slice::from_ref(stream.task()),
        1,
        Some(Duration::from_millis(300)),
    );
    assert!(ready.is_empty());
    assert_eq!(made(&rec), 2);
    let mut stream = stream;
    let first = stream.next().expect("an item");
    assert_eq!(ray::get(&first).unwrap(), 0);
    assert!(eventually(LONG, || made(&rec) == 3));
    let rest: Vec<u32> = stream.map(|r| ray::get(&r).unwrap()).collect();
    assert_eq!(rest, (1..10).collect::<Vec<_>>());
    let words: Vec<String> = Source::remote()
        .words("a streaming actor method")
        .map(|r| ray::get(&r).unwrap())
        .collect();
    assert_eq!(words, ["a", "streaming", "actor", "method"]);
    ray::shutdown();
}

/// Ray's test_generator_errors: a panic mid-stream ends it with the error.
#[test]
fn a_panic_mid_stream_ends_the_stream_with_the_error() {
    ray::init(ray::Config::default().num_cpus(1)).unwrap();
    let refs: Vec<ObjectRef<u32>> = breaks_midway::remote(2).collect();
    assert_eq!(refs.len(), 3, "two items, then the error");
    assert_eq!(ray::get(&refs[0]).unwrap(), 0);
    assert_eq!(ray::get(&refs[1]).unwrap(), 1);
    match ray::get(&refs[2]) {
        Err(Error::TaskFailed { message, .. }) => assert!(message.contains("broke after 2")),
        other => panic!("expected the panic, got {other:?}"),
    }
    // A concrete iterable type streams too; a panic before any item is the only item.
    let refs: Vec<ObjectRef<u32>> = nothing_then_panic::remote(0).collect();
    assert_eq!(refs.len(), 1);
    assert!(matches!(ray::get(&refs[0]), Err(Error::TaskFailed { .. })));
    ray::shutdown();
}

// ----- retries -------------------------------------------------------------------------------

#[ray::remote(max_retries = 3, retry_exceptions = true)]
fn flaky(recorder: ActorHandle<Recorder>, fail_times: usize) -> usize {
    let tries = ray::get(&recorder.events()).unwrap().len();
    ray::get(&recorder.record("try")).unwrap();
    if tries < fail_times {
        panic!("failing on try {tries}");
    }
    tries
}

#[ray::remote(max_calls = 2)]
fn worker_pid() -> u32 {
    std::process::id()
}

/// test_failure_4::test_retry_application_level_error.
#[test]
fn panics_are_retried_with_retry_exceptions() {
    ray::init(ray::Config::default().num_cpus(1)).unwrap();
    let rec = Recorder::remote();
    assert_eq!(ray::get(&flaky::remote(&rec, 2)).unwrap(), 2);
    let rec = Recorder::remote();
    match ray::get(&flaky::options().max_retries(1).remote(&rec, 5)) {
        Err(Error::TaskFailed { message, .. }) => assert!(message.contains("try 1"), "{message}"),
        other => panic!("expected the second panic, got {other:?}"),
    }
    let rec = Recorder::remote();
    assert!(ray::get(&flaky::options().retry_exceptions(false).remote(&rec, 1)).is_err());
    assert_eq!(events(&rec).len(), 1, "not retried");
    ray::shutdown();
}

/// test_basic::test_max_calls: a worker is replaced after `max_calls` calls.
#[test]
fn a_worker_is_replaced_after_max_calls() {
    ray::init(ray::Config::default().num_cpus(1).prestart_workers(1)).unwrap();
    let pids: Vec<u32> = (0..4)
        .map(|_| ray::get(&worker_pid::remote()).unwrap())
        .collect();
    assert_eq!(pids[0], pids[1]);
    assert_ne!(pids[1], pids[2]);
    assert_eq!(pids[2], pids[3]);
    let one = worker_pid::options().max_calls(1);
    let (a, b) = (
        ray::get(&one.remote()).unwrap(),
        ray::get(&one.remote()).unwrap(),
    );
    assert_ne!(a, b);
    ray::shutdown();
}

#[ray::remote(max_restarts = 1, max_task_retries = -1)]
struct Restartable {
    value: u32,
}

#[ray::remote]
impl Restartable {
    fn new() -> Self {
        Restartable { value: 0 }
    }
    fn increase(&mut self, delay_ms: u64) -> u32 {
        std::thread::sleep(Duration::from_millis(delay_ms));
        self.value += 1;
        self.value
    }
    fn pid(&self) -> u32 {
        std::process::id()
    }
}

/// test_actor_failures::test_actor_restart_with_retry.
#[test]
fn calls_in_flight_when_an_actor_restarts_run_again() {
    ray::init(ray::Config::default().num_cpus(1)).unwrap();
    let actor = Restartable::remote();
    let pid = ray::get(&actor.pid()).unwrap();
    // 1.5 s of queued calls: the kill below lands while some still wait, however late the
    // test's thread runs.
    let results: Vec<ObjectRef<u32>> = (0..30).map(|_| actor.increase(50)).collect();
    assert!(eventually(LONG, || ray::wait(
        &results,
        1,
        Some(Duration::ZERO)
    )
    .0
    .len()
        == 1));
    // SAFETY: kill(2) on the actor's process id, which this test's runtime started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let values = ray::get_all(&results).expect("no call failed: they ran again");
    // Before the kill the values count up from 1; after the restart again from 1.
    let restart = values.iter().skip(1).position(|v| *v == 1).map(|i| i + 1);
    let k = restart.expect("the counter restarted");
    assert_eq!(values[..k], (1..=k as u32).collect::<Vec<_>>()[..]);
    assert_eq!(values[k..], (1..=(30 - k) as u32).collect::<Vec<_>>()[..]);
    assert_ne!(ray::get(&actor.pid()).unwrap(), pid);
    ray::shutdown();
}

// ----- introspection -------------------------------------------------------------------------

#[ray::remote]
fn assigned(block: bool) -> std::collections::BTreeMap<String, f64> {
    let a = ray::runtime_context()
        .unwrap()
        .assigned_resources()
        .unwrap();
    if block {
        ray::get(&worker_pid::remote()).unwrap();
    }
    a
}

#[ray::remote]
struct Context {}

#[ray::remote]
impl Context {
    fn new() -> Self {
        Context {}
    }
    fn ids(&self) -> (Option<ray::ActorId>, bool, u32) {
        let c = ray::runtime_context().unwrap();
        (c.actor_id(), c.task_id().is_some(), c.worker_pid())
    }
}

/// test_basic::test_many_fractional_resources.
#[test]
fn fractional_resources_are_assigned_exactly_and_all_come_back() {
    ray::init(
        ray::Config::default()
            .num_cpus(2)
            .num_gpus(2)
            .resource("Custom", 2.0),
    )
    .unwrap();
    let mut x = 0x2545_f491u32;
    let mut rand = || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        (x % 1000) as f64 / 1000.0
    };
    let mut expected = Vec::new();
    let mut refs = Vec::new();
    for _ in 0..10 {
        let (cpu, gpu, custom) = (rand(), rand(), rand());
        for block in [false, true] {
            refs.push(
                assigned::options()
                    .num_cpus(cpu)
                    .num_gpus(gpu)
                    .resource("Custom", custom)
                    .remote(block),
            );
            let mut want = std::collections::BTreeMap::new();
            for (k, v) in [("CPU", cpu), ("GPU", gpu), ("Custom", custom)] {
                if v > 0.0 {
                    want.insert(k.to_string(), v);
                }
            }
            expected.push(want);
        }
    }
    for (r, want) in refs.iter().zip(&expected) {
        let got = ray::get(r).unwrap();
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>()
        );
        for (k, v) in want {
            assert!((got[k] - v).abs() < 1e-3, "{k}: {} vs {v}", got[k]);
        }
    }
    let total = ray::cluster_resources().unwrap();
    assert_eq!(
        total,
        [("CPU", 2.0), ("Custom", 2.0), ("GPU", 2.0)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    );
    assert!(eventually(LONG, || ray::available_resources().unwrap() == total));
    let nodes = ray::nodes().unwrap();
    assert_eq!(nodes.len(), 1);
    assert!(nodes[0].alive && nodes[0].is_head);
    assert_eq!(nodes[0].resources, total);
    ray::shutdown();
}

/// Ray's test_runtime_context: ids in the driver, a task and an actor.
#[test]
fn the_runtime_context_names_node_job_task_actor_and_process() {
    ray::init(ray::Config::default().num_cpus(1)).unwrap();
    let driver = ray::runtime_context().unwrap();
    assert_eq!(driver.worker_pid(), std::process::id());
    assert!(driver.task_id().is_none() && driver.actor_id().is_none());
    assert!(driver.assigned_resources().unwrap().is_empty());
    let c = Context::remote();
    let (actor, in_task, pid) = ray::get(&c.ids()).unwrap();
    assert_eq!(actor, Some(c.actor_id()));
    assert!(in_task);
    assert_ne!(pid, std::process::id());
    assert_eq!(driver.node_id(), ray::nodes().unwrap()[0].node_id);
    assert_eq!(
        driver.job_id().node(),
        driver.node_id(),
        "the job is its driver's"
    );
    // What it says after `shutdown` is in `not_initialized.rs`, where no other test's runtime
    // can start in between.
    ray::shutdown();
}

// ----- fidelity ------------------------------------------------------------------------------

#[ray::remote]
fn make_string() -> String {
    "kept alive".into()
}

#[ray::remote]
fn read_json(json: String) -> String {
    let r: ObjectRef<String> = serde_json::from_str(&json).unwrap();
    ray::get(&r).unwrap()
}

/// test_reference_counting: a ref serialized out of ray outlives its handles (until its
/// owner exits), and reads back anywhere.
#[test]
fn a_ref_serialized_outside_ray_keeps_its_object_alive() {
    ray::init(ray::Config::default().num_cpus(1)).unwrap();
    let r = make_string::remote();
    ray::get(&r).unwrap();
    let json = serde_json::to_string(&r).unwrap();
    drop(r);
    let back: ObjectRef<String> = serde_json::from_str(&json).unwrap();
    assert_eq!(ray::get(&back).unwrap(), "kept alive");
    drop(back);
    assert_eq!(ray::get(&read_json::remote(json)).unwrap(), "kept alive");
    ray::shutdown();
}

#[ray::remote(max_retries = 0)]
fn fails_quietly(i: u32) -> u32 {
    panic!("failure number {i}");
}

/// The child driver of the output tests. A no-op unless `RAY_TEST_CHILD` is set.
#[test]
fn child_driver() {
    let Ok(mode) = std::env::var("RAY_TEST_CHILD") else {
        return;
    };
    ray::init(ray::Config::default().num_cpus(1).log_to_driver(false)).unwrap();
    match mode.as_str() {
        "unhandled" => {
            let read = fails_quietly::remote(1);
            assert!(ray::get(&read).is_err());
            let unread = fails_quietly::remote(2);
            let (ready, _) = ray::wait(std::slice::from_ref(&unread), 1, None);
            assert_eq!(ready.len(), 1);
            drop((ready, unread, read));
            // Dropping is synchronous in the driver: the line is out by now.
            eprintln!("DROPPED");
            ray::shutdown();
        }
        m => panic!("unknown mode {m}"),
    }
}

/// Ray prints "Unhandled error" for a failed object nobody read when its last reference
/// drops; once, and not for one that was read.
#[test]
fn an_unread_failure_is_printed_once_when_dropped() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["child_driver", "--exact", "--nocapture", "--test-threads=1"])
        .env("RAY_TEST_CHILD", "unhandled")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("Unhandled error"))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("failure number 2"), "{}", lines[0]);
    let dropped = stderr.find("DROPPED").expect("the marker");
    assert!(stderr.find("Unhandled error").unwrap() < dropped);
}
