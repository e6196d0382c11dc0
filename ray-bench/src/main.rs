//! Microbenchmarks of ray for Rust with the names and definitions of Ray's `ray microbenchmark`
//! (`python/ray/_private/ray_perf.py`), measured the way Ray measures them (its `timeit`: one
//! second of warm-up, then 4 rounds of at least 2 s, mean and standard deviation of the rates).
//!
//! ```text
//! cargo run --release -p ray-bench                         # everything
//! cargo run --release -p ray-bench -- --only "tasks sync"  # names containing a pattern (repeatable)
//! cargo run --release -p ray-bench -- --json out.json      # also write the results as JSON
//! ```
//!
//! Each metric prints one line in Ray's format: `<name> per second <mean> +- <std>`. After them
//! come figures Ray's suite has no line for: the time from `ray::init` to the first task result,
//! and how long a zero-copy `get` of a large object takes as the object grows.
//! `scripts/bench-vs-ray.sh` runs Ray's suite and this one side by side.
//!
//! Two more modes, for `scripts/bench-cluster.sh`:
//!
//! ```text
//! RAY_ADDRESS=H:P RAY_RS_AUTH_TOKEN=.. ray-bench --cluster   # cluster metrics (see `cluster`)
//! ray-bench --loopback                                       # TCP and TLS on 127.0.0.1
//! ray-bench --latency [N]     # p10/p50/p90 of sync calls (see `latency`; cluster with RAY_ADDRESS)
//! ```

#![warn(clippy::undocumented_unsafe_blocks)]
use ray::{ActorHandle, ObjectRef};
use std::time::{Duration, Instant};

mod cluster;
mod latency;
mod loopback;

#[ray::remote]
fn small_value() -> Vec<u8> {
    b"ok".to_vec()
}

#[ray::remote]
fn create_object_containing_ref() -> Vec<ObjectRef<i64>> {
    (0..10_000).map(|_| ray::put(1i64).unwrap()).collect()
}

#[ray::remote]
fn do_put_small() {
    for _ in 0..100 {
        drop(ray::put(0i64).unwrap());
    }
}

#[ray::remote]
fn do_put() {
    for _ in 0..10 {
        let zeros = Zeros::new(10 * 1024 * 1024);
        drop(ray::put_slice(&zeros).unwrap());
    }
}

/// A zeroed `i64` array allocated the way numpy's `np.zeros` allocates large arrays (what Ray's
/// benchmark puts): fresh anonymous memory advised to use transparent huge pages, so reading it
/// the first time maps 2 MiB per page fault instead of 4 KiB. With a plain `vec![0; n]`, the
/// ~20,000 first-read faults of each 80 MB array, not the store, would dominate the metric.
struct Zeros {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Zeros {
    fn new(len: usize) -> Zeros {
        let bytes = len * std::mem::size_of::<i64>();
        // SAFETY: a new private anonymous mapping; the kernel picks the address.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED, "mmap of {bytes} bytes failed");
        // SAFETY: advising about the mapping made above; it is only a hint.
        unsafe { libc::madvise(ptr, bytes, libc::MADV_HUGEPAGE) };
        Zeros { ptr, len }
    }
}

impl std::ops::Deref for Zeros {
    type Target = [i64];
    fn deref(&self) -> &[i64] {
        // SAFETY: the mapping holds `len` zero-initialised i64s (anonymous memory reads as
        // zeros), is aligned to a page, and lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr as *const i64, self.len) }
    }
}

impl Drop for Zeros {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `new`; no slice of it outlives `self`.
        unsafe { libc::munmap(self.ptr, self.len * std::mem::size_of::<i64>()) };
    }
}

#[ray::remote]
fn work(actors: Vec<ActorHandle<Actor>>, n: usize) {
    let refs: Vec<ObjectRef<Vec<u8>>> = (0..n)
        .map(|i| actors[i % actors.len()].small_value())
        .collect();
    ray::get_all(&refs).unwrap();
}

#[ray::remote]
fn read_view(r: ObjectRef<Vec<u8>>) -> u64 {
    // Time to get a zero-copy view of `r` and touch its first and last byte.
    let start = Instant::now();
    let v = ray::get_slice(&r).unwrap();
    assert!(v.is_zero_copy());
    std::hint::black_box((v[0], v[v.len() - 1]));
    start.elapsed().as_nanos() as u64
}

/// Ray's `Actor(num_cpus=0)`.
#[ray::remote(num_cpus = 0)]
struct Actor {}

#[ray::remote]
impl Actor {
    fn new() -> Self {
        Actor {}
    }
    fn small_value(&self) -> Vec<u8> {
        b"ok".to_vec()
    }
    fn small_value_arg(&self, _x: i64) -> Vec<u8> {
        b"ok".to_vec()
    }
    fn small_value_batch(&self, n: usize) {
        let refs: Vec<_> = (0..n).map(|_| small_value::remote()).collect();
        ray::get_all(&refs).unwrap();
    }
}

/// Ray's `Actor.options(max_concurrency=16)`: a threaded actor.
#[ray::remote(num_cpus = 0, max_concurrency = 16)]
struct ConcurrentActor {}

#[ray::remote]
impl ConcurrentActor {
    fn new() -> Self {
        ConcurrentActor {}
    }
    fn small_value(&self) -> Vec<u8> {
        b"ok".to_vec()
    }
}

/// Ray's `AsyncActor`: async methods on the actor's event loop.
#[ray::remote]
struct AsyncActor {}

#[ray::remote]
impl AsyncActor {
    fn new() -> Self {
        AsyncActor {}
    }
    async fn small_value(&self) -> Vec<u8> {
        b"ok".to_vec()
    }
    async fn small_value_with_arg(&self, _x: i64) -> Vec<u8> {
        b"ok".to_vec()
    }
}

#[ray::remote]
fn async_actor_work(actors: Vec<ActorHandle<AsyncActor>>, n: usize) {
    let refs: Vec<ObjectRef<Vec<u8>>> = (0..n)
        .map(|i| actors[i % actors.len()].small_value())
        .collect();
    ray::get_all(&refs).unwrap();
}

/// Ray's `Client(num_cpus=0)`: calls its servers.
#[ray::remote(num_cpus = 0)]
struct Client {
    servers: Vec<ActorHandle<Actor>>,
}

#[ray::remote]
impl Client {
    fn new(servers: Vec<ActorHandle<Actor>>) -> Self {
        Client { servers }
    }
    fn small_value_batch(&self, n: usize) {
        let mut refs = Vec::with_capacity(n * self.servers.len());
        for s in &self.servers {
            refs.extend((0..n).map(|_| s.small_value()));
        }
        ray::get_all(&refs).unwrap();
    }
    fn small_value_batch_arg(&self, n: usize) {
        let x = ray::put(0i64).unwrap();
        let mut refs = Vec::with_capacity(n * self.servers.len());
        for s in &self.servers {
            refs.extend((0..n).map(|_| s.small_value_arg(&x)));
        }
        ray::get_all(&refs).unwrap();
    }
}

/// Which metrics to run, how long to time them, and the results so far (name, mean, sd).
struct Bench {
    only: Vec<String>,
    results: Vec<(String, f64, f64)>,
    warmup: Duration,
    round: Duration,
    sleep: Duration,
}

impl Bench {
    fn wanted(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| name.contains(p.as_str()))
    }

    /// Ray's `timeit(name, fn, multiplier)`.
    fn timeit(&mut self, name: &str, multiplier: f64, mut f: impl FnMut()) {
        if !self.wanted(name) {
            return;
        }
        std::thread::sleep(self.sleep);
        let start = Instant::now();
        let mut count = 0usize;
        while start.elapsed() < self.warmup {
            f();
            count += 1;
        }
        let step = count / 10 + 1;
        let mut stats = Vec::new();
        for _ in 0..4 {
            let start = Instant::now();
            let mut count = 0usize;
            while start.elapsed() < self.round {
                for _ in 0..step {
                    f();
                }
                count += step;
            }
            stats.push(multiplier * count as f64 / start.elapsed().as_secs_f64());
        }
        let (mean, std) = mean_std(&stats);
        println!("{name} per second {mean:.2} +- {std:.2}");
        self.results.push((name.to_string(), mean, std));
    }
}

/// The mean and the (population) standard deviation of a benchmark's rounds.
pub(crate) fn mean_std(stats: &[f64]) -> (f64, f64) {
    let mean = stats.iter().sum::<f64>() / stats.len() as f64;
    let var = stats.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / stats.len() as f64;
    (mean, var.sqrt())
}

fn main() -> ray::Result<()> {
    let mut bench = Bench {
        only: Vec::new(),
        results: Vec::new(),
        warmup: Duration::from_secs(1),
        round: Duration::from_secs(2),
        sleep: Duration::ZERO,
    };
    let mut json = None;
    let (mut cluster, mut loopback, mut quick) = (false, false, false);
    let mut task_events_max = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--only" => bench.only.push(args.next().expect("--only PATTERN")),
            "--json" => json = args.next(),
            "--cluster" => cluster = true,
            "--loopback" => loopback = true,
            "--latency" => {
                let n = args
                    .next()
                    .map(|n| n.parse().expect("--latency N: a whole number of calls"))
                    .unwrap_or(3000);
                return latency::run(n);
            }
            "--quick" => {
                quick = true;
                bench.warmup = Duration::from_millis(300);
                bench.round = Duration::from_millis(500);
            }
            // The state API's ring of finished tasks (0: none kept; BENCHMARKS.md measures the
            // cost of recording with it).
            "--task-events-max" => {
                task_events_max = Some(
                    args.next()
                        .expect("--task-events-max N")
                        .parse()
                        .expect("a whole number"),
                )
            }
            "--sleep" => {
                bench.sleep = Duration::from_secs(
                    args.next().expect("--sleep SECS").parse().expect("seconds"),
                )
            }
            other => panic!(
                "unknown argument {other:?}; expected --only PATTERN, --json PATH, --quick, --sleep SECS, --task-events-max N, --cluster, --loopback, --latency [N]"
            ),
        }
    }
    if let Ok(p) = std::env::var("TESTS_TO_RUN") {
        bench.only.push(p);
    }
    if cluster || loopback {
        if cluster {
            cluster::run(&mut bench, quick)?;
        }
        if loopback {
            loopback::run(&mut bench, quick);
        }
        if let Some(path) = json {
            write_json(&path, &bench, &[]);
        }
        return Ok(());
    }
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let n_cpu = (cpus / 2).max(1);

    let mut config = ray::Config::default();
    if let Some(n) = task_events_max {
        config = config.task_events_max(n);
    }
    ray::init(config)?;

    let value = ray::put(0i64)?;
    bench.timeit("single client get calls (Plasma Store)", 1.0, || {
        ray::get(&value).unwrap();
    });
    bench.timeit("single client put calls (Plasma Store)", 1.0, || {
        drop(ray::put(0i64).unwrap());
    });
    bench.timeit("multi client put calls (Plasma Store)", 1000.0, || {
        let refs: Vec<_> = (0..10).map(|_| do_put_small::remote()).collect();
        ray::get_all(&refs).unwrap();
    });
    if bench.wanted("single client put gigabytes") {
        let arr = Zeros::new(100 * 1024 * 1024);
        bench.timeit("single client put gigabytes", 8.0 * 0.1, || {
            drop(ray::put_slice(&arr).unwrap());
        });
    }
    bench.timeit("single client tasks and get batch", 1.0, || {
        let refs: Vec<_> = (0..1000).map(|_| small_value::remote()).collect();
        ray::get_all(&refs).unwrap();
    });
    bench.timeit("multi client put gigabytes", 10.0 * 8.0 * 0.1, || {
        let refs: Vec<_> = (0..10).map(|_| do_put::remote()).collect();
        ray::get_all(&refs).unwrap();
    });
    if bench.wanted("single client get object containing 10k refs") {
        let obj_containing_ref = create_object_containing_ref::remote();
        bench.timeit("single client get object containing 10k refs", 1.0, || {
            ray::get(&obj_containing_ref).unwrap();
        });
    }
    bench.timeit("single client wait 1k refs", 1.0, || {
        let mut not_ready: Vec<_> = (0..1000).map(|_| small_value::remote()).collect();
        for _ in 0..1000 {
            let (_ready, rest) = ray::wait(&not_ready, 1, None);
            not_ready = rest;
        }
    });
    bench.timeit("single client tasks sync", 1.0, || {
        ray::get(&small_value::remote()).unwrap();
    });
    bench.timeit("single client tasks async", 1000.0, || {
        let refs: Vec<_> = (0..1000).map(|_| small_value::remote()).collect();
        ray::get_all(&refs).unwrap();
    });
    if bench.wanted("multi client tasks async") {
        let (n, m) = (10_000, 4);
        let actors: Vec<ActorHandle<Actor>> = (0..m).map(|_| Actor::remote()).collect();
        bench.timeit("multi client tasks async", (n * m) as f64, || {
            let refs: Vec<_> = actors.iter().map(|a| a.small_value_batch(n)).collect();
            ray::get_all(&refs).unwrap();
        });
    }
    if bench.wanted("1:1 actor calls sync") {
        let a = Actor::remote();
        bench.timeit("1:1 actor calls sync", 1.0, || {
            ray::get(&a.small_value()).unwrap();
        });
    }
    if bench.wanted("1:1 actor calls async") {
        let a = Actor::remote();
        bench.timeit("1:1 actor calls async", 1000.0, || {
            let refs: Vec<_> = (0..1000).map(|_| a.small_value()).collect();
            ray::get_all(&refs).unwrap();
        });
    }
    if bench.wanted("1:1 actor calls concurrent") {
        let a = ConcurrentActor::remote();
        bench.timeit("1:1 actor calls concurrent", 1000.0, || {
            let refs: Vec<_> = (0..1000).map(|_| a.small_value()).collect();
            ray::get_all(&refs).unwrap();
        });
    }
    if bench.wanted("1:n actor calls async") {
        let n = 5000;
        let actors: Vec<ActorHandle<Actor>> = (0..n_cpu).map(|_| Actor::remote()).collect();
        let client = Client::remote(actors);
        bench.timeit("1:n actor calls async", (n * n_cpu) as f64, || {
            ray::get(&client.small_value_batch(n)).unwrap();
        });
    }
    if bench.wanted("n:n actor calls async") {
        let (n, m) = (5000, 4);
        let actors: Vec<ActorHandle<Actor>> = (0..n_cpu).map(|_| Actor::remote()).collect();
        bench.timeit("n:n actor calls async", (m * n) as f64, || {
            let refs: Vec<_> = (0..m).map(|_| work::remote(actors.clone(), n)).collect();
            ray::get_all(&refs).unwrap();
        });
    }
    if bench.wanted("n:n actor calls with arg async") {
        let n = 1000;
        let clients: Vec<ActorHandle<Client>> = (0..n_cpu)
            .map(|_| Client::remote(vec![Actor::remote()]))
            .collect();
        bench.timeit(
            "n:n actor calls with arg async",
            (n * clients.len()) as f64,
            || {
                let refs: Vec<_> = clients.iter().map(|c| c.small_value_batch_arg(n)).collect();
                ray::get_all(&refs).unwrap();
            },
        );
    }

    if bench.wanted("1:1 async-actor calls sync") {
        let a = AsyncActor::remote();
        bench.timeit("1:1 async-actor calls sync", 1.0, || {
            ray::get(&a.small_value()).unwrap();
        });
    }
    if bench.wanted("1:1 async-actor calls async") {
        let a = AsyncActor::remote();
        bench.timeit("1:1 async-actor calls async", 1000.0, || {
            let refs: Vec<_> = (0..1000).map(|_| a.small_value()).collect();
            ray::get_all(&refs).unwrap();
        });
    }
    if bench.wanted("1:1 async-actor calls with args async") {
        let a = AsyncActor::remote();
        bench.timeit("1:1 async-actor calls with args async", 1000.0, || {
            let refs: Vec<_> = (0..1000).map(|i| a.small_value_with_arg(i)).collect();
            ray::get_all(&refs).unwrap();
        });
    }
    if bench.wanted("n:n async-actor calls async") {
        let (n, m) = (5000, 4);
        let actors: Vec<ActorHandle<AsyncActor>> =
            (0..n_cpu).map(|_| AsyncActor::remote()).collect();
        bench.timeit("n:n async-actor calls async", (m * n) as f64, || {
            let refs: Vec<_> = (0..m)
                .map(|_| async_actor_work::remote(actors.clone(), n))
                .collect();
            ray::get_all(&refs).unwrap();
        });
    }
    ray::shutdown();

    // Ray's placement group metric runs on a runtime of its own with a custom resource.
    if bench.wanted("placement group create/removal") {
        ray::init(ray::Config::default().resource("custom", 100.0))?;
        let (num_pgs, num_bundles) = (100, 1);
        bench.timeit("placement group create/removal", num_pgs as f64, || {
            let pgs: Vec<ray::PlacementGroup> = (0..num_pgs)
                .map(|_| {
                    let bundles =
                        (0..num_bundles).map(|_| ray::Bundle::new().resource("custom", 0.001));
                    ray::placement_group(bundles, ray::PlacementStrategy::Pack)
                })
                .collect();
            for pg in &pgs {
                assert!(pg.wait(Duration::from_secs(30)).unwrap());
            }
            for pg in &pgs {
                ray::remove_placement_group(pg).unwrap();
            }
        });
        ray::shutdown();
    }
    ray::init(ray::Config::default())?;

    // Figures Ray's suite has no line for.
    let mut extra: Vec<(String, f64, &str)> = Vec::new();
    if bench.wanted("zero-copy get") {
        for mb in [1usize, 16, 256, 1024] {
            let r = ray::put_slice(&vec![7u8; mb << 20])?;
            let mut ns = Vec::new();
            for _ in 0..20 {
                ns.push(ray::get(&read_view::remote(r.clone()))? as f64);
            }
            ns.sort_by(|a, b| a.total_cmp(b));
            let median_us = ns[ns.len() / 2] / 1e3;
            println!(
                "zero-copy get of a {mb} MiB object in another process: {median_us:.1} us (median of 20)"
            );
            extra.push((format!("zero-copy get {mb} MiB (us)"), median_us, "us"));
        }
    }
    ray::shutdown();

    if bench.wanted("init to first task result") {
        let mut ms = Vec::new();
        for _ in 0..5 {
            let start = Instant::now();
            ray::init(ray::Config::default())?;
            ray::get(&small_value::remote())?;
            ms.push(start.elapsed().as_secs_f64() * 1e3);
            ray::shutdown();
        }
        let mean = ms.iter().sum::<f64>() / ms.len() as f64;
        println!("init to first task result: {mean:.1} ms (runs: {ms:.1?})");
        extra.push(("init to first task result (ms)".into(), mean, "ms"));
    }

    if let Some(path) = json {
        write_json(&path, &bench, &extra);
    }
    Ok(())
}

/// Writes the results (and the extra figures, with their units) to `path` as JSON.
fn write_json(path: &str, bench: &Bench, extra: &[(String, f64, &str)]) {
    let mut s = String::from("{\n");
    let mut entries: Vec<String> = bench
        .results
        .iter()
        .map(|(name, mean, std)| {
            format!("  \"{name}\": {{\"mean\": {mean:.3}, \"std\": {std:.3}}}")
        })
        .collect();
    entries.extend(extra.iter().map(|(name, v, unit)| {
        format!("  \"{name}\": {{\"value\": {v:.3}, \"unit\": \"{unit}\"}}")
    }));
    s.push_str(&entries.join(",\n"));
    s.push_str("\n}\n");
    std::fs::write(path, s).expect("writing the JSON results");
}
