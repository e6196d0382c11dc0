//! Microbenchmarks of ray for Rust, after Ray's `ray microbenchmark`.
//!
//! `cargo run --release -p ray-bench` prints one line per metric (`<name> per second <mean> +-
//! <std>`), and a table with the ratio to the Ray 2.60 figures measured on the same kind of
//! machine (2 cores) that the project's first issue records. `--quick` runs each metric for
//! less time; `--json PATH` also writes the results as JSON.

use std::time::{Duration, Instant};

#[ray::remote]
fn small_value() -> u8 {
    0
}

#[ray::remote]
struct Actor {}

#[ray::remote]
impl Actor {
    fn new() -> Self {
        Actor {}
    }
    fn small_value(&self) -> u8 {
        0
    }
}

struct Metric {
    name: &'static str,
    ray: f64,
    unit: &'static str,
    samples: Vec<f64>,
}

impl Metric {
    fn mean(&self) -> f64 {
        self.samples.iter().sum::<f64>() / self.samples.len() as f64
    }
    fn std(&self) -> f64 {
        let m = self.mean();
        (self.samples.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / self.samples.len() as f64).sqrt()
    }
}

/// Runs `batch` (which does `n` operations) repeatedly for `duration`, `rounds` times; one rate
/// per round.
fn rate(rounds: usize, duration: Duration, n: usize, mut batch: impl FnMut()) -> Vec<f64> {
    batch(); // warm-up
    (0..rounds)
        .map(|_| {
            let start = Instant::now();
            let mut ops = 0usize;
            while start.elapsed() < duration {
                batch();
                ops += n;
            }
            ops as f64 / start.elapsed().as_secs_f64()
        })
        .collect()
}

fn main() -> ray::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let json = args.iter().position(|a| a == "--json").and_then(|i| args.get(i + 1).cloned());
    let (rounds, duration) = if quick { (3, Duration::from_millis(500)) } else { (5, Duration::from_secs(2)) };
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);

    // Time from init to the first task result, on a fresh runtime each time.
    let mut init_ms = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        ray::init(ray::Config::default().num_cpus(cpus).num_gpus(0))?;
        ray::get(&small_value::remote())?;
        init_ms.push(start.elapsed().as_secs_f64() * 1e3);
        ray::shutdown();
    }

    ray::init(ray::Config::default().num_cpus(cpus).num_gpus(0))?;
    let mut metrics = Vec::new();
    let mut add = |name, ray, unit, samples: Vec<f64>| {
        let m = Metric { name, ray, unit, samples };
        println!("{} per second {:.2} +- {:.2}", m.name, m.mean(), m.std());
        metrics.push(m);
    };

    add("single client tasks sync", 650.0, "tasks/s", rate(rounds, duration, 1, || {
        ray::get(&small_value::remote()).unwrap();
    }));
    add("single client tasks async", 2_000.0, "tasks/s", rate(rounds, duration, 1000, || {
        let refs: Vec<_> = (0..1000).map(|_| small_value::remote()).collect();
        ray::get_all(&refs).unwrap();
    }));
    let a = Actor::remote();
    ray::get(&a.small_value())?;
    add("1:1 actor calls sync", 1_400.0, "calls/s", rate(rounds, duration, 1, || {
        ray::get(&a.small_value()).unwrap();
    }));
    add("1:1 actor calls async", 5_300.0, "calls/s", rate(rounds, duration, 1000, || {
        let refs: Vec<_> = (0..1000).map(|_| a.small_value()).collect();
        ray::get_all(&refs).unwrap();
    }));
    add("single client put calls", 1_600.0, "puts/s", rate(rounds, duration, 1, || {
        drop(ray::put(0u8).unwrap());
    }));
    let value = ray::put(0u8)?;
    add("single client get calls", 15_000.0, "gets/s", rate(rounds, duration, 1, || {
        ray::get(&value).unwrap();
    }));
    ray::shutdown();

    let init_mean = init_ms.iter().sum::<f64>() / init_ms.len() as f64;
    println!("init to first task result: {init_mean:.1} ms (runs: {init_ms:.1?})");
    println!();
    println!("| metric | ours | Ray 2.60 (2 cores) | ours / Ray |");
    println!("|---|---:|---:|---:|");
    for m in &metrics {
        println!(
            "| {} | {:.0} ± {:.0} {} | {:.0} | {:.1}x |",
            m.name,
            m.mean(),
            m.std(),
            m.unit,
            m.ray,
            m.mean() / m.ray
        );
    }
    println!("| init to first result | {init_mean:.1} ms | ~3000 ms | {:.0}x faster |", 3000.0 / init_mean);

    if let Some(path) = json {
        let mut s = String::from("{\n");
        for m in &metrics {
            s.push_str(&format!("  \"{}\": {{\"mean\": {:.2}, \"std\": {:.2}}},\n", m.name, m.mean(), m.std()));
        }
        s.push_str(&format!("  \"init to first result ms\": {{\"mean\": {init_mean:.2}}}\n}}\n"));
        std::fs::write(&path, s).expect("writing the JSON results");
    }
    Ok(())
}
