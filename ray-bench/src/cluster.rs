//! Cluster metrics (`ray-bench --cluster`): a driver attached to the head of a running cluster
//! (`RAY_ADDRESS`, `RAY_RS_AUTH_TOKEN`) whose nodes declare the custom resources `node_a`,
//! `node_b` and `node_c` (one node each, none on the head). Custom resources force placement:
//! "remote" means on node B (or A and C), never on the head the driver talks to.
//! `scripts/bench-cluster.sh` starts such a cluster and runs the same metrics on Ray
//! (`scripts/ray_cluster_bench.py`).
//!
//! - call rates: Ray's `timeit` (see [`crate::Bench::timeit`]), tasks and actor calls on node B;
//! - transfers: per round, a fresh object is made on node A by a task and read there by another
//!   (not timed; so it is ready on A and on no other node); then the timed part: a task on node B is submitted with the ref, gets a zero-copy
//!   view of the object (which pulls it from A into B's store), touches its first and last
//!   byte, and its result reaches the driver. The rate is the object's bytes over that time
//!   (GB = 10^9 bytes); a round trip of an empty task is not subtracted;
//! - broadcast: per round, the driver puts a fresh 256 MiB object (not timed: it travels to the
//!   head), then three tasks, on A, B and C, read it as above; the rate is 3 × 256 MiB over the
//!   time until all three results are in.

use crate::Bench;
use ray::ObjectRef;
use std::time::Instant;

/// An empty task on node B.
#[ray::remote(resources(node_b = 0.001))]
pub(crate) fn small_value_on_b() -> Vec<u8> {
    b"ok".to_vec()
}

/// An object of `len` bytes made on node A (each byte `fill`).
#[ray::remote(resources(node_a = 0.001))]
fn make_on_a(len: usize, fill: u8) -> Vec<u8> {
    vec![fill; len]
}

/// Reads `r` where the task runs (placed by the caller's options): a zero-copy view, its first
/// and last byte. Returns the length and those two bytes.
#[ray::remote]
fn read_object(r: ObjectRef<Vec<u8>>) -> (u64, u8, u8) {
    let v = ray::get_slice(&r).expect("get_slice of the transferred object");
    (v.len() as u64, v[0], v[v.len() - 1])
}

/// Ray's `Actor(num_cpus=0)`, on node B.
#[ray::remote(num_cpus = 0, resources(node_b = 0.001))]
pub(crate) struct RemoteActor {}

#[ray::remote]
impl RemoteActor {
    pub(crate) fn new() -> Self {
        RemoteActor {}
    }
    pub(crate) fn small_value(&self) -> Vec<u8> {
        b"ok".to_vec()
    }
}

/// Reads `r` on the node holding custom resource `node` and checks what came back.
fn read_on(node: &str, r: &ObjectRef<Vec<u8>>) -> ObjectRef<(u64, u8, u8)> {
    read_object::options()
        .resource(node, 0.001)
        .remote(r.clone())
}

fn check(result: (u64, u8, u8), len: usize, fill: u8) {
    assert_eq!(result, (len as u64, fill, fill), "the object read back");
}

/// Runs `rounds` timed rounds after `warmup` untimed ones; `round(i)` returns the seconds its
/// timed part took. Prints and records `bytes / seconds` in GB/s (mean ± standard deviation).
fn transfer_rounds(
    bench: &mut Bench,
    name: &str,
    bytes: f64,
    (warmup, rounds): (usize, usize),
    mut round: impl FnMut(usize) -> f64,
) {
    if !bench.wanted(name) {
        return;
    }
    for i in 0..warmup {
        round(i);
    }
    let stats: Vec<f64> = (0..rounds)
        .map(|i| bytes / round(warmup + i) / 1e9)
        .collect();
    let (mean, std) = crate::mean_std(&stats);
    println!("{name} GB/s {mean:.3} +- {std:.3}");
    bench.results.push((name.to_string(), mean, std));
}

/// One node-to-node transfer of `len` bytes: made on A (untimed), read on B (timed).
fn transfer_once(len: usize, i: usize) -> f64 {
    let fill = (i % 250) as u8 + 1;
    let obj = make_on_a::remote(len, fill);
    // Ready on A, and nowhere else: a read on A itself (`ray::wait` in the driver would first
    // copy the bytes to the head, the driver's node, as Ray's `wait(fetch_local=True)` does).
    check(
        ray::get(&read_on("node_a", &obj)).expect("the read on node A"),
        len,
        fill,
    );
    let start = Instant::now();
    let result = ray::get(&read_on("node_b", &obj)).expect("the read on node B");
    let secs = start.elapsed().as_secs_f64();
    check(result, len, fill);
    secs
}

/// The cluster metrics, on the cluster `RAY_ADDRESS` names.
pub fn run(bench: &mut Bench, quick: bool) -> ray::Result<()> {
    ray::init(ray::Config::default())?;

    bench.timeit("cluster remote tasks sync", 1.0, || {
        ray::get(&small_value_on_b::remote()).unwrap();
    });
    bench.timeit("cluster remote tasks async", 1000.0, || {
        let refs: Vec<_> = (0..1000).map(|_| small_value_on_b::remote()).collect();
        ray::get_all(&refs).unwrap();
    });
    if bench.wanted("cluster remote actor calls") {
        let a = RemoteActor::remote();
        bench.timeit("cluster remote actor calls sync", 1.0, || {
            ray::get(&a.small_value()).unwrap();
        });
        bench.timeit("cluster remote actor calls async", 1000.0, || {
            let refs: Vec<_> = (0..1000).map(|_| a.small_value()).collect();
            ray::get_all(&refs).unwrap();
        });
    }

    let (small, large, bcast) = if quick {
        ((1, 5), (1, 3), (1, 3))
    } else {
        ((2, 10), (1, 5), (1, 5))
    };
    let len = 64 << 20;
    transfer_rounds(
        bench,
        "cluster transfer 64 MiB node to node",
        len as f64,
        small,
        |i| transfer_once(len, i),
    );
    let len = 1 << 30;
    transfer_rounds(
        bench,
        "cluster transfer 1 GiB node to node",
        len as f64,
        large,
        |i| transfer_once(len, i),
    );
    let len = 256 << 20;
    transfer_rounds(
        bench,
        "cluster broadcast 256 MiB to 3 nodes",
        3.0 * len as f64,
        bcast,
        |i| {
            let fill = (i % 250) as u8 + 1;
            let obj = ray::put_slice(&vec![fill; len]).expect("put 256 MiB");
            let start = Instant::now();
            let reads: Vec<_> = ["node_a", "node_b", "node_c"]
                .iter()
                .map(|n| read_on(n, &obj))
                .collect();
            let results = ray::get_all(&reads).expect("the three reads");
            let secs = start.elapsed().as_secs_f64();
            for r in results {
                check(r, len, fill);
            }
            secs
        },
    );
    ray::shutdown();
    Ok(())
}
