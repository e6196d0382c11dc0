//! `ray-bench --latency [N]`: percentiles of synchronous round trips, one call at a time.
//!
//! A rate's mean hides what a sync call costs on a quiet machine and swings with every other
//! process on a shared VM; the 10th percentile and the median of many single calls are steadier,
//! so A/B comparisons of the call path use them (BENCHMARKS.md). Each kind: 200 untimed calls,
//! then `N` (default 3,000) timed one by one:
//!
//! - a task with `resources(node_b = 0.001)`, an actor call and an async-actor call (both
//!   actors `num_cpus = 0` on `node_b`);
//! - with `RAY_ADDRESS` set, on the cluster's node B (`scripts/bench-cluster.sh`'s shape);
//!   without, in a single-node runtime that declares `node_b = 1` itself.
//!
//! Prints `<kind> sync p10 <µs> p50 <µs> p90 <µs> p99 <µs> max <µs> mean <µs>` (the mean is what
//! a rate measures; the tail shows where it goes).

use crate::cluster::{RemoteActor, small_value_on_b};
use std::time::Instant;

/// An async actor on node B.
#[ray::remote(num_cpus = 0, resources(node_b = 0.001))]
struct RemoteAsyncActor {}

#[ray::remote]
impl RemoteAsyncActor {
    fn new() -> Self {
        RemoteAsyncActor {}
    }
    async fn small_value(&self) -> Vec<u8> {
        b"ok".to_vec()
    }
}

/// Times `n` calls of `call` after 200 untimed ones and prints the percentiles (µs).
fn percentiles(kind: &str, n: usize, mut call: impl FnMut()) {
    for _ in 0..200 {
        call();
    }
    let mut micros: Vec<f64> = (0..n)
        .map(|_| {
            let start = Instant::now();
            call();
            start.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    micros.sort_by(f64::total_cmp);
    let at = |q: f64| micros[((micros.len() - 1) as f64 * q) as usize];
    println!(
        "{kind} sync p10 {:.0} p50 {:.0} p90 {:.0} p99 {:.0} max {:.0} mean {:.0}",
        at(0.1),
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0),
        micros.iter().sum::<f64>() / micros.len() as f64
    );
}

/// Runs the three kinds with `n` timed calls each.
pub fn run(n: usize) -> ray::Result<()> {
    let config = if std::env::var_os("RAY_ADDRESS").is_some() {
        ray::Config::default()
    } else {
        ray::Config::default().resource("node_b", 1.0)
    };
    ray::init(config)?;
    let n = n.max(1);
    percentiles("task", n, || {
        ray::get(&small_value_on_b::remote()).unwrap();
    });
    let actor = RemoteActor::remote();
    percentiles("actor call", n, || {
        ray::get(&actor.small_value()).unwrap();
    });
    let async_actor = RemoteAsyncActor::remote();
    percentiles("async-actor call", n, || {
        ray::get(&async_actor.small_value()).unwrap();
    });
    ray::shutdown();
    Ok(())
}
