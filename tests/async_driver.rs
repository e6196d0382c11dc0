//! Async drivers: the `async_driver` example as a user runs it (`#[tokio::main]`, `.await` on
//! refs, `tokio::time::timeout`, `ray::shutdown()` inside the runtime), and `init` / `shutdown`
//! on both kinds of tokio runtime. Before the fix, `ray::shutdown()` in any of them panicked
//! with "Cannot drop a runtime in a context where blocking is not allowed".

#[path = "../examples/async_driver.rs"]
mod example;

use std::time::Duration;

#[ray::remote]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[test]
fn the_async_example_runs_and_shuts_down_inside_tokio_main() {
    // The example's `main` is `#[tokio::main]`: it builds a tokio runtime, and everything,
    // `ray::init` and `ray::shutdown` included, runs inside it.
    example::main().expect("the example's main returns Ok");
}

#[test]
fn the_async_example_awaits_results_times_out_and_reports_failures() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let report = rt.block_on(async {
        ray::init(ray::Config::default().num_cpus(4)).unwrap();
        let report = example::run().await.unwrap();
        ray::shutdown();
        report
    });
    assert_eq!(report.sum_of_squares, (0..8).map(|x| x * x).sum::<u64>());
    assert_eq!(report.counter, report.sum_of_squares);
    assert!(report.timed_out, "a 5 s task is not done after 200 ms");
    assert!(
        report.timeout_after >= Duration::from_millis(200)
            && report.timeout_after < Duration::from_secs(3),
        "the timeout fired after {:?}",
        report.timeout_after
    );
    assert!(
        report.failure.contains("checked_div") && report.failure.contains("division by zero"),
        "{}",
        report.failure
    );
}

#[tokio::test(flavor = "current_thread")]
async fn init_and_shutdown_work_on_a_current_thread_runtime() {
    for round in 0..2 {
        ray::init(ray::Config::default().num_cpus(1)).unwrap();
        assert_eq!(add::remote(round, 1).await.unwrap(), round + 1);
        let r = add::remote(2, 3);
        assert_eq!(
            ray::get(&r).unwrap(),
            5,
            "blocking calls work in async code too"
        );
        ray::shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_works_from_a_spawned_tokio_task() {
    ray::init(ray::Config::default().num_cpus(1)).unwrap();
    let r = add::remote(40, 2);
    let value = tokio::spawn(async move { r.await }).await.unwrap().unwrap();
    assert_eq!(value, 42);
    tokio::spawn(async { ray::shutdown() }).await.unwrap();
}
