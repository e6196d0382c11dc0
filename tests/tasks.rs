//! Tasks through the public API: submission, arguments, dependencies, nesting, options,
//! resources, failures.

mod common;

use common::*;
use ray::{Error, ObjectRef};
use std::time::{Duration, Instant};

#[ray::remote]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[ray::remote]
fn concat(parts: Vec<String>, sep: String) -> String {
    parts.join(&sep)
}

#[ray::remote]
fn unit_task() {}

#[ray::remote]
fn slow_value(ms: u64, v: i64) -> i64 {
    std::thread::sleep(Duration::from_millis(ms));
    v
}

#[ray::remote]
fn timed(ms: u64) -> (u128, u128) {
    let start = now_ns();
    std::thread::sleep(Duration::from_millis(ms));
    (start, now_ns())
}

#[ray::remote(num_cpus = 0.5)]
fn half_cpu(ms: u64) -> (u128, u128) {
    let start = now_ns();
    std::thread::sleep(Duration::from_millis(ms));
    (start, now_ns())
}

#[ray::remote(resources(disk = 1))]
fn needs_disk(ms: u64) -> (u128, u128) {
    let start = now_ns();
    std::thread::sleep(Duration::from_millis(ms));
    (start, now_ns())
}

#[ray::remote]
fn fib(n: u64) -> u64 {
    if n < 2 {
        return n;
    }
    let a = fib::remote(n - 1);
    let b = fib::remote(n - 2);
    ray::get(&a).unwrap() + ray::get(&b).unwrap()
}

#[ray::remote]
fn sum_refs(refs: Vec<ObjectRef<i64>>) -> i64 {
    ray::get_all(&refs).unwrap().into_iter().sum()
}

#[ray::remote]
fn make_refs(n: i64) -> Vec<ObjectRef<i64>> {
    (0..n).map(|i| ray::put(i * 10).unwrap()).collect()
}

#[ray::remote]
fn worker_pid() -> u32 {
    std::process::id()
}

#[ray::remote]
fn boom(msg: String) -> i64 {
    panic!("boom: {msg}");
}

#[ray::remote(num_gpus = 9)]
fn wants_nine_gpus() -> i64 {
    1
}

#[ray::remote(max_retries = 0)]
fn abort_now() -> i64 {
    std::process::abort();
}

#[ray::remote]
fn abort_always() -> i64 {
    std::process::abort();
}

/// Aborts on the first attempt (marker file absent), succeeds on the retry.
#[ray::remote]
fn abort_once(marker: String) -> u32 {
    if std::fs::metadata(&marker).is_err() {
        std::fs::write(&marker, b"x").unwrap();
        std::process::abort();
    }
    std::process::id()
}

/// Writes its pid, then sleeps until killed from outside (first attempt) or returns.
#[ray::remote]
fn killable(pid_file: String) -> String {
    if std::fs::metadata(&pid_file).is_err() {
        std::fs::write(&pid_file, std::process::id().to_string()).unwrap();
        std::thread::sleep(Duration::from_secs(60));
    }
    "survived".to_string()
}

mod other {
    // Same function name as the top-level `add`: registered names include the module path.
    #[ray::remote]
    pub fn add(a: i64, b: i64) -> i64 {
        a * 1000 + b
    }
}

fn init(cpus: usize) {
    ray::init(ray::Config::default().num_cpus(cpus)).unwrap();
}

#[test]
fn remote_functions_stay_callable_locally_and_run_remotely() {
    init(2);
    assert_eq!(add(2, 3), 5);
    let r: ObjectRef<i64> = add::remote(2, 3);
    assert_eq!(ray::get(&r).unwrap(), 5);
    let s = concat::remote(vec!["a".to_string(), "b".to_string()], "-".to_string());
    assert_eq!(ray::get(&s).unwrap(), "a-b");
    let u: ObjectRef<()> = unit_task::remote();
    ray::get(&u).unwrap();
    let pid = ray::get(&worker_pid::remote()).unwrap();
    assert_ne!(pid, std::process::id(), "tasks run in worker processes");
    ray::shutdown();
}

#[test]
fn arguments_accept_values_object_refs_and_borrowed_object_refs() {
    init(2);
    let a = add::remote(1, 2);
    let b = add::remote(&a, 10); // borrowed ref
    let c = add::remote(b, a); // owned refs
    assert_eq!(ray::get(&c).unwrap(), 16);
    let p = ray::put(100i64).unwrap();
    assert_eq!(ray::get(&add::remote(&p, &p)).unwrap(), 200);
    ray::shutdown();
}

#[ray::remote]
fn total_len(parts: Vec<String>, sep: String) -> usize {
    parts.join(&sep).len()
}

#[ray::remote]
fn sum_slice(values: Vec<f32>) -> f32 {
    values.iter().sum()
}

/// A parameter declared `ObjectRef<T>` receives the reference itself, unresolved.
#[ray::remote]
fn sum_unresolved(values: ObjectRef<Vec<f32>>) -> (f32, bool) {
    let view = ray::get_slice(&values).unwrap();
    (view.iter().sum(), view.is_zero_copy())
}

#[test]
fn arguments_can_be_borrowed_values_strs_and_slices() {
    init(2);
    let parts = vec!["ab".to_string(), "cd".to_string()];
    let sep = String::from("--");
    // `&parts` and `&sep` are serialized from the borrow: both stay usable here.
    let r = total_len::remote(&parts, &sep);
    assert_eq!(ray::get(&r).unwrap(), 6);
    assert_eq!(ray::get(&total_len::remote(&parts[..1], "+")).unwrap(), 2);
    assert_eq!(parts.len() + sep.len(), 4, "nothing was moved");
    // A borrowed large vector goes to the object store like an owned one.
    let big = vec![0.5f32; 1 << 20];
    assert_eq!(ray::get(&sum_slice::remote(&big)).unwrap(), 524_288.0);
    assert_eq!(ray::get(&sum_slice::remote(&big[..4])).unwrap(), 2.0);
    ray::shutdown();
}

#[test]
fn a_parameter_declared_as_an_object_ref_receives_the_ref_unresolved() {
    init(2);
    let big = ray::put_slice(&vec![0.25f32; 1 << 20]).unwrap();
    // Owned or borrowed, the ref travels as a ref: the task reads it in place.
    let (sum, zero_copy) = ray::get(&sum_unresolved::remote(&big)).unwrap();
    assert_eq!(sum, 262_144.0);
    assert!(zero_copy, "a large stored vector is read in place");
    let (sum, _) = ray::get(&sum_unresolved::remote(big.clone())).unwrap();
    assert_eq!(sum, 262_144.0);
    // The same ref passed for a `Vec<f32>` parameter is resolved to its value.
    assert_eq!(ray::get(&sum_slice::remote(&big)).unwrap(), 262_144.0);
    ray::shutdown();
}

#[test]
fn tasks_wait_for_their_dependencies() {
    init(2);
    let start = Instant::now();
    let slow = slow_value::remote(300, 7);
    let dependent = add::remote(&slow, 1);
    assert_eq!(ray::get(&dependent).unwrap(), 8);
    assert!(start.elapsed() >= Duration::from_millis(300));
    ray::shutdown();
}

#[test]
fn per_call_options_apply() {
    init(2);
    let c = add::options().num_cpus(0.5).max_retries(0).remote(1, 2);
    assert_eq!(ray::get(&c).unwrap(), 3);
    let bad = add::options().num_cpus(-1.0).remote(1, 2);
    match ray::get(&bad) {
        Err(Error::InvalidArgument { message, .. }) => {
            assert!(message.contains("negative"), "{message}")
        }
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    ray::shutdown();
}

#[test]
fn amounts_above_one_must_be_whole_as_in_ray() {
    ray::init(ray::Config::default().num_cpus(2).resource("disk", 4.0)).unwrap();
    for (what, r) in [
        ("num_cpus = 1.5", add::options().num_cpus(1.5).remote(1, 2)),
        ("num_gpus = 2.5", add::options().num_gpus(2.5).remote(1, 2)),
        (
            "disk = 1.25",
            add::options().resource("disk", 1.25).remote(1, 2),
        ),
    ] {
        match ray::get(&r) {
            Err(Error::InvalidArgument { what: w, message }) => {
                assert!(w.contains("add"), "{w}");
                assert!(message.starts_with(what), "{message}");
                assert!(message.contains("above 1 must be whole"), "{message}");
                assert!(message.contains("or a fraction below 1"), "{message}");
            }
            other => panic!("{what}: expected InvalidArgument, got {other:?}"),
        }
    }
    // Whole amounts, and fractions below 1, are fine.
    let ok = add::options()
        .num_cpus(2)
        .resource("disk", 0.5)
        .remote(1, 2);
    assert_eq!(ray::get(&ok).unwrap(), 3);
    ray::shutdown();
}

#[test]
fn same_name_in_different_modules_does_not_collide() {
    init(2);
    assert_eq!(ray::get(&add::remote(1, 2)).unwrap(), 3);
    assert_eq!(ray::get(&other::add::remote(1, 2)).unwrap(), 1002);
    ray::shutdown();
}

#[test]
fn many_tasks_and_get_all() {
    init(2);
    let refs: Vec<ObjectRef<i64>> = (0..200).map(|i| add::remote(i, i)).collect();
    let all = ray::get_all(&refs).unwrap();
    assert_eq!(all, (0..200).map(|i| 2 * i).collect::<Vec<_>>());
    ray::shutdown();
}

#[test]
fn nested_tasks_do_not_deadlock_when_every_cpu_waits() {
    // With one CPU, every fib task blocks in `get` on its children: the node must lend the
    // blocked worker's CPU or this would hang.
    init(1);
    assert_eq!(
        ray::get_with_timeout(&fib::remote(10), Duration::from_secs(60)).unwrap(),
        55
    );
    ray::shutdown();
}

#[test]
fn object_refs_travel_inside_arguments_and_results() {
    init(2);
    let refs: Vec<ObjectRef<i64>> = (1..=4).map(|i| ray::put(i).unwrap()).collect();
    assert_eq!(ray::get(&sum_refs::remote(refs)).unwrap(), 10);
    let made = ray::get(&make_refs::remote(3)).unwrap();
    assert_eq!(ray::get_all(&made).unwrap(), vec![0, 10, 20]);
    ray::shutdown();
}

#[test]
fn wait_returns_ready_and_pending_with_ray_semantics() {
    init(2);
    let fast = add::remote(1, 1);
    ray::get(&fast).unwrap();
    let slow = slow_value::remote(2_000, 1);
    let refs = vec![slow.clone(), fast.clone()];
    let (ready, pending) = ray::wait(&refs, 1, Some(Duration::from_secs(5)));
    assert_eq!(ready, vec![fast.clone()]);
    assert_eq!(pending, vec![slow.clone()]);
    let t = Instant::now();
    let (ready, pending) = ray::wait(&refs, 2, Some(Duration::from_millis(100)));
    assert!(t.elapsed() >= Duration::from_millis(100));
    assert_eq!(
        (ready.len(), pending.len()),
        (1, 1),
        "timeout returns what is ready"
    );
    let (ready, _) = ray::wait(&refs, 2, None);
    assert_eq!(ready, refs, "ready keeps the order of the input");
    ray::shutdown();
}

#[test]
fn wait_on_refs_of_different_types_through_erased_refs() {
    init(2);
    let number = slow_value::remote(10, 7);
    let text = concat::remote(vec!["a".into(), "b".into()], "+");
    let never = slow_value::remote(60_000, 0);
    let refs = [number.erase(), text.erase(), never.erase()];
    let (ready, pending) = ray::wait(&refs, 2, Some(Duration::from_secs(20)));
    assert_eq!(ready.len(), 2);
    assert_eq!(pending, [never.erase()]);
    assert!(ready.contains(&number.erase()) && ready.contains(&text.erase()));
    for r in ready {
        assert_eq!(r.is::<i64>(), r == number);
        assert!(
            r.type_name()
                .ends_with(if r.is::<i64>() { "i64" } else { "String" })
        );
        match r.downcast::<i64>() {
            Ok(n) => assert_eq!(ray::get(&n).unwrap(), 7),
            Err(r) => {
                assert!(r.typed::<u64>().is_none(), "the type is checked");
                assert_eq!(ray::get(&r.typed::<String>().unwrap()).unwrap(), "a+b");
            }
        }
    }
    ray::shutdown();
}

#[test]
fn wait_on_no_refs_returns_two_empty_lists_whatever_num_returns() {
    let none: Vec<ObjectRef<i64>> = Vec::new();
    // Before `init` too: there is nothing to wait for.
    assert_eq!(ray::wait(&none, 3, None), (vec![], vec![]));
    init(1);
    assert_eq!(ray::wait(&none, 0, None), (vec![], vec![]));
    let none: [ray::AnyObjectRef; 0] = [];
    assert_eq!(ray::wait(&none, 5, Some(Duration::ZERO)), (vec![], vec![]));
    ray::shutdown();
}

#[test]
#[should_panic(expected = "num_returns (3) is larger than the number of refs (2)")]
fn wait_rejects_more_returns_than_refs() {
    let a: Vec<ObjectRef<i64>> = Vec::new();
    let _ = ray::wait(&a, 0, None);
    init(1);
    let refs = vec![add::remote(1, 1), add::remote(2, 2)];
    let _ = ray::wait(&refs, 3, None);
}

#[test]
fn get_with_timeout_times_out() {
    init(2);
    let slow = slow_value::remote(3_000, 1);
    let t = Instant::now();
    match ray::get_with_timeout(&slow, Duration::from_millis(200)) {
        Err(Error::Timeout { timeout, .. }) => assert_eq!(timeout, Duration::from_millis(200)),
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(2));
    ray::shutdown();
}

#[test]
fn object_refs_can_be_awaited() {
    init(2);
    let r = add::remote(20, 22);
    assert_eq!(block_on(async { r.await }).unwrap(), 42);
    let slow = slow_value::remote(100, 5);
    assert_eq!(block_on(async { (&slow).await }).unwrap(), 5);
    ray::shutdown();
}

#[test]
fn concurrency_never_exceeds_the_declared_cpus() {
    init(2);
    let spans = ray::get_all(&(0..8).map(|_| timed::remote(150)).collect::<Vec<_>>()).unwrap();
    assert_eq!(
        max_overlap(&spans),
        2,
        "two CPUs: exactly two tasks at a time"
    );
    // Half a CPU each: four at a time on two CPUs.
    let spans = ray::get_all(&(0..8).map(|_| half_cpu::remote(300)).collect::<Vec<_>>()).unwrap();
    let overlap = max_overlap(&spans);
    assert!(
        (3..=4).contains(&overlap),
        "0.5-CPU tasks overlapped {overlap} at a time"
    );
    ray::shutdown();
}

#[test]
fn custom_resources_limit_concurrency() {
    ray::init(ray::Config::default().num_cpus(4).resource("disk", 1.0)).unwrap();
    let spans = ray::get_all(&(0..4).map(|_| needs_disk::remote(100)).collect::<Vec<_>>()).unwrap();
    assert_eq!(max_overlap(&spans), 1);
    ray::shutdown();
}

#[test]
fn infeasible_requests_fail_at_once_naming_what_was_asked() {
    ray::init(ray::Config::default().num_cpus(2).num_gpus(8)).unwrap();
    let t = Instant::now();
    match ray::get(&wants_nine_gpus::remote()) {
        Err(Error::Infeasible {
            name,
            requested,
            available,
        }) => {
            assert!(name.ends_with("wants_nine_gpus"), "{name}");
            assert_eq!(requested, "GPU: 9");
            assert_eq!(available, "CPU: 2, GPU: 8");
        }
        other => panic!("expected Infeasible, got {other:?}"),
    }
    let err = ray::get(&add::options().resource("tpu", 1).remote(1, 1)).unwrap_err();
    assert!(err.to_string().contains("tpu: 1"), "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "fails at once, no waiting"
    );
    ray::shutdown();
}

#[test]
fn a_panicking_task_gives_task_failed_with_name_message_and_pid() {
    init(2);
    match ray::get(&boom::remote("bad input".to_string())) {
        Err(Error::TaskFailed {
            function,
            message,
            pid,
        }) => {
            assert!(function.ends_with("::boom"), "{function}");
            assert_eq!(message, "boom: bad input");
            assert_ne!(pid, std::process::id());
            assert!(pid > 0);
        }
        other => panic!("expected TaskFailed, got {other:?}"),
    }
    // The failure propagates to dependents.
    let dependent = add::remote(boom::remote("x".to_string()), 1);
    assert!(matches!(
        ray::get(&dependent),
        Err(Error::TaskFailed { .. })
    ));
    // The worker survives a panic and runs later tasks.
    assert_eq!(ray::get(&add::remote(1, 1)).unwrap(), 2);
    ray::shutdown();
}

#[test]
fn abort_inside_a_task_is_retried_then_reported_as_worker_died() {
    init(2);
    match ray::get(&abort_now::remote()) {
        Err(Error::WorkerDied {
            function,
            attempts,
            cause,
            pid,
        }) => {
            assert!(function.ends_with("abort_now"));
            assert_eq!(attempts, 1, "max_retries = 0: one attempt");
            assert!(cause.contains("SIGABRT"), "{cause}");
            assert!(pid > 0);
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    match ray::get(&abort_always::remote()) {
        Err(Error::WorkerDied { attempts, .. }) => {
            assert_eq!(attempts, 4, "default max_retries = 3")
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    let dir = scratch("abort-once");
    let marker = dir.join("marker").display().to_string();
    let pid = ray::get(&abort_once::remote(marker)).unwrap();
    assert!(pid > 0, "succeeded on the retry in a fresh worker");
    // The pool replaced the dead workers.
    assert_eq!(ray::get(&add::remote(2, 2)).unwrap(), 4);
    ray::shutdown();
}

#[test]
fn a_worker_killed_from_outside_is_replaced_and_its_task_retried() {
    init(2);
    let dir = scratch("killed");
    let pid_file = dir.join("pid").display().to_string();
    let r = killable::remote(pid_file.clone());
    assert!(eventually(Duration::from_secs(10), || {
        std::fs::read_to_string(&pid_file).is_ok_and(|s| !s.is_empty())
    }));
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    // SAFETY: sending SIGKILL to the worker process this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(
        ray::get_with_timeout(&r, Duration::from_secs(20)).unwrap(),
        "survived"
    );
    ray::shutdown();
}

#[test]
fn init_twice_on_one_thread_is_an_error() {
    init(1);
    assert!(matches!(
        ray::init(ray::Config::default()),
        Err(Error::AlreadyInitialized)
    ));
    ray::shutdown();
    init(1);
    ray::shutdown();
}

#[test]
fn bad_config_is_rejected_with_a_clear_error() {
    let err = ray::init(ray::Config::default().resource("GPU", 1.0)).unwrap_err();
    assert!(err.to_string().contains("num_cpus/num_gpus"), "{err}");
    let err = ray::init(ray::Config::default().resource("disk", -2.0)).unwrap_err();
    assert!(err.to_string().contains("negative"), "{err}");
}

#[ray::remote]
struct PidActor {}

#[ray::remote]
impl PidActor {
    fn new() -> Self {
        PidActor {}
    }
    fn pid(&self) -> u32 {
        std::process::id()
    }
}

#[test]
fn task_workers_are_pooled_and_actors_get_their_own() {
    init(2);
    let mut task_pids = std::collections::BTreeSet::new();
    for _ in 0..30 {
        task_pids.insert(ray::get(&worker_pid::remote()).unwrap());
    }
    assert!(
        task_pids.len() <= 2,
        "30 sequential tasks reuse pooled workers, used {task_pids:?}"
    );
    let a = PidActor::remote();
    let b = PidActor::remote();
    let (pa, pb) = (ray::get(&a.pid()).unwrap(), ray::get(&b.pid()).unwrap());
    assert_ne!(pa, pb);
    assert!(
        !task_pids.contains(&pa) && !task_pids.contains(&pb),
        "actors do not share task workers"
    );
    for _ in 0..10 {
        let p = ray::get(&worker_pid::remote()).unwrap();
        assert!(p != pa && p != pb, "tasks never run in an actor's worker");
    }
    ray::shutdown();
}

#[test]
#[should_panic(expected = "is given twice")]
fn wait_rejects_a_ref_given_twice() {
    init(1);
    let r = add::remote(1, 1);
    let _ = ray::wait(&[r.clone(), r], 2, None);
}

#[ray::remote(max_retries = 0)]
fn put_many_then_abort(n: u32) -> u32 {
    for i in 0..n {
        std::mem::forget(ray::put(i).unwrap());
    }
    std::process::abort();
}

#[test]
fn nothing_leaks_when_a_worker_dies_right_after_sending() {
    init(2);
    let (before, _) = ray::__private::object_stats().unwrap();
    for _ in 0..6 {
        assert!(matches!(
            ray::get(&put_many_then_abort::remote(5_000)),
            Err(Error::WorkerDied { .. })
        ));
    }
    assert!(
        eventually(Duration::from_secs(10), || ray::__private::object_stats()
            .unwrap()
            .0
            == before),
        "objects left behind by dead workers: {:?} (was {before})",
        ray::__private::object_stats()
    );
    ray::shutdown();
}

#[ray::remote]
fn drop_a_future_then_return(r: ObjectRef<ObjectRef<i64>>) -> bool {
    // Start awaiting a result that is far from ready, then give up on it.
    let inner = ray::get(&r).unwrap();
    let fut = std::future::IntoFuture::into_future(inner);
    drop(fut);
    true
}

#[test]
fn a_dropped_future_gives_the_blocked_cpu_back() {
    init(1);
    let slow = slow_value::options().num_cpus(0).remote(2_000, 1);
    let holder = ray::put(slow.clone()).unwrap();
    assert!(ray::get(&drop_a_future_then_return::remote(holder)).unwrap());
    // One CPU: two 1-CPU tasks must not overlap afterwards.
    let spans = ray::get_all(&[timed::remote(300), timed::remote(300)]).unwrap();
    assert_eq!(
        max_overlap(&spans),
        1,
        "the node counts one CPU too many: {spans:?}"
    );
    // The driver can drop a future too; the object is still freed afterwards.
    let (before, _) = ray::__private::object_stats().unwrap();
    let pending = slow_value::remote(200, 2);
    drop(std::future::IntoFuture::into_future(pending));
    assert!(eventually(
        Duration::from_secs(5),
        || ray::__private::object_stats().unwrap().0 <= before
    ));
    drop(slow);
    ray::shutdown();
}
