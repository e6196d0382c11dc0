//! Benchmark of the ray-gpu kernels: matmul GFLOP/s on the GPU path and on a single-thread
//! cache-friendly CPU loop (i-k-j order), and softmax-regression training steps per second on
//! both paths, side by side.
//!
//! ```text
//! cargo run --release -p ray-gpu --example gpu_bench -- [--sizes 1024,4096] [--steps 500]
//!     [--gpu ID] [--cpu-max 2048] [--min-time 1.0]
//! ```
//!
//! GPU timings include waiting for the GPU (`Device::synchronize`) and exclude a warm-up run.
//! CPU matmuls larger than `--cpu-max` are skipped (a 4096^3 single-thread product takes
//! minutes).

use std::time::{Duration, Instant};

use ray_gpu::mnist::{self, CLASSES, Mnist, PIXELS};
use ray_gpu::{Device, SoftmaxRegression, Tensor};

struct Options {
    sizes: Vec<usize>,
    steps: usize,
    gpu: Option<usize>,
    cpu_max: usize,
    min_time: Duration,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        sizes: vec![1024],
        steps: 500,
        gpu: None,
        cpu_max: 2048,
        min_time: Duration::from_secs(1),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        let bad = |v: &str| format!("bad value {v:?} for {flag}");
        match flag.as_str() {
            "--sizes" => {
                let v = value()?;
                o.sizes = v
                    .split(',')
                    .map(|s| s.trim().parse().map_err(|_| bad(&v)))
                    .collect::<Result<_, _>>()?;
            }
            "--steps" => {
                let v = value()?;
                o.steps = v.parse().map_err(|_| bad(&v))?;
            }
            "--gpu" => {
                let v = value()?;
                o.gpu = Some(v.parse().map_err(|_| bad(&v))?);
            }
            "--cpu-max" => {
                let v = value()?;
                o.cpu_max = v.parse().map_err(|_| bad(&v))?;
            }
            "--min-time" => {
                let v = value()?;
                o.min_time = Duration::from_secs_f64(v.parse().map_err(|_| bad(&v))?);
            }
            "-h" | "--help" => {
                println!(
                    "gpu_bench [--sizes 1024,4096] [--steps N] [--gpu ID] [--cpu-max N] [--min-time SECONDS]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(o)
}

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// Runs `op` once as a warm-up, then repeatedly until `min_time` has passed (at least 3 runs);
/// returns the mean time per run. `op` must include waiting for its result.
fn time_it(min_time: Duration, mut op: impl FnMut(usize)) -> Duration {
    op(1);
    let start = Instant::now();
    let mut runs = 0;
    while runs < 3 || start.elapsed() < min_time {
        let batch = if runs == 0 { 1 } else { runs.min(64) };
        op(batch);
        runs += batch;
    }
    start.elapsed() / runs as u32
}

/// Largest relative error of 64 sampled entries of C = A·B against an f64 dot product.
fn spot_check(a: &[f32], b: &[f32], c: &[f32], n: usize) -> f64 {
    let mut worst = 0.0f64;
    for s in 0..64 {
        let (i, j) = ((s * 7919) % n, (s * 104_729 + 13) % n);
        let want: f64 = (0..n)
            .map(|p| a[i * n + p] as f64 * b[p * n + j] as f64)
            .sum();
        let scale: f64 = (0..n)
            .map(|p| (a[i * n + p] as f64 * b[p * n + j] as f64).abs())
            .sum();
        worst = worst.max((c[i * n + j] as f64 - want).abs() / scale.max(1e-30));
    }
    worst
}

fn gflops(n: usize, t: Duration) -> f64 {
    2.0 * (n as f64).powi(3) / t.as_secs_f64() / 1e9
}

fn bench_matmul(gpu: &Device, o: &Options) -> Result<(), ray_gpu::Error> {
    println!("\nmatmul, f32, C = A·B with A, B n x n (GFLOP/s = 2n^3 / time)");
    println!(
        "{:>6}  {:>12} {:>10}  {:>14} {:>10}  {:>9}",
        "n", "GPU GFLOP/s", "GPU ms", "CPU1 GFLOP/s", "CPU1 ms", "GPU/CPU"
    );
    for &n in &o.sizes {
        let a = values(n * n, 1 + n as u64);
        let b = values(n * n, 2 + n as u64);
        let ga = gpu.upload(n, n, &a)?;
        let gb = gpu.upload(n, n, &b)?;
        let mut gc: Tensor = gpu.zeros(n, n)?;
        let mut failure = None;
        let t_gpu = time_it(o.min_time, |reps| {
            for _ in 0..reps {
                if let Err(e) = gpu.matmul_into(&ga, &gb, &mut gc) {
                    failure = Some(e);
                }
            }
            if let Err(e) = gpu.synchronize() {
                failure = Some(e);
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        let err = spot_check(&a, &b, &gc.read()?, n);
        let (cpu_col, ratio) = if n <= o.cpu_max {
            let mut c = vec![0.0f32; n * n];
            let t_cpu = time_it(o.min_time, |reps| {
                for _ in 0..reps {
                    ray_gpu::cpu::matmul_into(&a, &b, &mut c, n, n, n);
                }
            });
            (
                format!(
                    "{:>14.1} {:>10.2}",
                    gflops(n, t_cpu),
                    t_cpu.as_secs_f64() * 1e3
                ),
                format!("{:>8.1}x", t_cpu.as_secs_f64() / t_gpu.as_secs_f64()),
            )
        } else {
            (
                format!("{:>14} {:>10}", "skipped", "-"),
                format!("{:>9}", "-"),
            )
        };
        println!(
            "{n:>6}  {:>12.1} {:>10.3}  {cpu_col}  {ratio}   (GPU result spot-check: max rel err {err:.1e})",
            gflops(n, t_gpu),
            t_gpu.as_secs_f64() * 1e3,
        );
        if err > 1e-4 {
            eprintln!("gpu_bench: the GPU product disagrees with the f64 reference ({err:e})");
            std::process::exit(1);
        }
    }
    Ok(())
}

fn steps_per_second(
    dev: &Device,
    data: &Mnist,
    steps: usize,
) -> Result<(f64, f32), ray_gpu::Error> {
    let mut batches = data.train.batches(None);
    let prepared: Vec<_> = (0..80).map(|_| batches.next_batch(100)).collect();
    let mut model = SoftmaxRegression::new(dev, PIXELS, CLASSES, 0.5)?;
    for b in prepared.iter().take(10) {
        model.train_step(&b.images, &b.labels)?;
    }
    model.weights()?; // waits for the warm-up steps
    let start = Instant::now();
    for i in 0..steps {
        let b = &prepared[i % prepared.len()];
        model.train_step(&b.images, &b.labels)?;
    }
    model.weights()?; // waits for the GPU to finish every step
    let elapsed = start.elapsed();
    let acc = model.accuracy(data.test.images(), data.test.labels())?;
    Ok((steps as f64 / elapsed.as_secs_f64(), acc))
}

fn main() {
    let o = match parse_args() {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("gpu_bench: {msg}");
            std::process::exit(2);
        }
    };
    let gpu = match o.gpu {
        Some(id) => Device::for_gpu(id),
        None if std::env::var_os(ray_gpu::GPU_IDS_ENV).is_some() => Device::from_ray_env(),
        None => Device::for_gpu(0),
    };
    println!("GPU path: {}", gpu.describe());
    if let Some(a) = gpu.adapter() {
        println!("          {:?}, driver {}", a.kind, a.driver);
    }
    println!(
        "CPU path: one thread, {} logical CPUs on this machine",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if let Err(e) = bench_matmul(&gpu, &o) {
        eprintln!("gpu_bench: matmul failed: {e}");
        std::process::exit(1);
    }

    let data = match Mnist::load(mnist::default_dir()) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("gpu_bench: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "\nsoftmax regression 784 -> 10, batch 100, lr 0.5, {} timed steps after 10 warm-up steps",
        o.steps
    );
    for (label, dev) in [("GPU", gpu.clone()), ("CPU", Device::cpu())] {
        match steps_per_second(&dev, &data, o.steps) {
            Ok((rate, acc)) => println!(
                "  {label}: {rate:>10.1} steps/s  ({:.3} ms/step; test accuracy afterwards {acc:.4})",
                1e3 / rate
            ),
            Err(e) => {
                eprintln!("gpu_bench: training on {label} failed: {e}");
                std::process::exit(1);
            }
        }
    }
}
