//! An async driver: `#[tokio::main]`, `.await` on `ObjectRef`s, a timeout with
//! `tokio::time::timeout`, and `ray::shutdown()` from inside the async runtime.
//!
//! ```text
//! cargo run --release --example async_driver
//! ```
//!
//! `.await` on an `ObjectRef` (or on `&ObjectRef`) waits for its value without blocking a
//! thread of the async runtime, so tasks, actors and other futures make progress together.
//! Dropping the future (a timeout, a `select!` branch that lost) stops waiting; the task itself
//! still runs to its end. The blocking calls (`ray::get`, `ray::wait`, `ray::init`,
//! `ray::shutdown`) work here too, and block the calling thread as they would anywhere.
//!
//! Tokio comes from your own dependencies (`tokio = { version = "1", features =
//! ["macros", "rt-multi-thread", "time"] }`); ray works with any executor.

use ray::ObjectRef;
use std::time::{Duration, Instant};

/// Squares `x` after `ms` milliseconds.
#[ray::remote]
fn slow_square(x: u64, ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    x * x
}

/// A task that fails: its error comes back from `.await` as it would from `ray::get`.
#[ray::remote(max_retries = 0)]
fn checked_div(a: u64, b: u64) -> u64 {
    a.checked_div(b).expect("division by zero")
}

#[ray::remote]
struct Counter {
    n: u64,
}

#[ray::remote]
impl Counter {
    fn new() -> Self {
        Counter { n: 0 }
    }
    fn add(&mut self, x: u64) -> u64 {
        self.n += x;
        self.n
    }
}

/// What [`run`] saw.
#[derive(Debug)]
pub struct Report {
    /// The sum of the squares of 0..8, each awaited.
    pub sum_of_squares: u64,
    /// The counter after adding every square (an actor, awaited).
    pub counter: u64,
    /// Whether the 200 ms timeout fired before the 5 s task was done.
    pub timed_out: bool,
    /// How long the timeout took.
    pub timeout_after: Duration,
    /// The error of the failing task, as its `Display` says.
    pub failure: String,
}

/// The async part: submit, await, time out, fail.
pub async fn run() -> ray::Result<Report> {
    // Submit first (each call returns at once), then await: the tasks run meanwhile.
    let squares: Vec<ObjectRef<u64>> = (0..8).map(|x| slow_square::remote(x, 50)).collect();
    let mut sum_of_squares = 0;
    for r in &squares {
        sum_of_squares += r.await?; // `&ObjectRef` awaits without consuming the ref
    }

    // An actor's results are ObjectRefs too; its calls run in the order they were made.
    let counter = Counter::remote();
    for r in &squares {
        counter.add(r); // an ObjectRef argument is resolved before the call runs
    }
    let counter = counter.add(0).await?;

    // A timeout drops the future: the wait ends, the task runs on.
    let slow = slow_square::remote(3, 5_000);
    let start = Instant::now();
    let timed_out = tokio::time::timeout(Duration::from_millis(200), &slow)
        .await
        .is_err();
    let timeout_after = start.elapsed();

    // Several refs at once: a tokio task per ref, or `select!` on two of them.
    let fast = slow_square::remote(4, 10);
    let pick = tokio::select! {
        v = fast => v?,
        v = &slow => v?,
    };
    assert_eq!(pick, 16, "the 10 ms task wins the race");

    let failure = match checked_div::remote(1, 0).await {
        Err(e) => e.to_string(),
        Ok(v) => format!("unexpectedly got {v}"),
    };
    Ok(Report {
        sum_of_squares,
        counter,
        timed_out,
        timeout_after,
        failure,
    })
}

// `pub` so that `tests/async_driver.rs` runs this very `main`.
#[tokio::main]
pub async fn main() -> ray::Result<()> {
    ray::init(ray::Config::default().num_cpus(4))?; // still first thing in `main`
    let report = run().await?;
    println!("sum of squares 0..8: {}", report.sum_of_squares);
    println!("counter: {}", report.counter);
    println!(
        "timed out: {} (after {:?})",
        report.timed_out, report.timeout_after
    );
    println!("failure: {}", report.failure);
    ray::shutdown(); // inside the async runtime: fine
    Ok(())
}
