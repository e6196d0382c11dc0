//! `ray::init` without `num_gpus`: the node's GPUs are the machine's wgpu adapters.

use ray::Error;
use std::time::{Duration, Instant};

#[ray::remote(num_gpus = 1)]
fn one_gpu() -> Vec<usize> {
    ray::get_gpu_ids()
}

#[ray::remote]
fn no_gpu() -> Vec<usize> {
    ray::get_gpu_ids()
}

#[test]
fn the_default_gpu_count_is_the_number_of_adapters() {
    let adapters = ray::gpu::adapter_count();
    if adapters == 0 {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but wgpu found no GPU adapter: run scripts/install-gpu-deps.sh"
        );
        eprintln!("no GPU adapter here: only the infeasible case is checked");
    }
    let start = Instant::now();
    ray::init(ray::Config::default().num_cpus(2)).unwrap();
    assert_eq!(ray::get(&no_gpu::remote()).unwrap(), Vec::<usize>::new());
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "CPU-only work does not wait for GPU detection"
    );
    if adapters > 0 {
        assert_eq!(ray::get(&one_gpu::remote()).unwrap(), vec![0]);
    }
    match ray::get(&one_gpu::options().num_gpus(adapters as f64 + 1.0).remote()) {
        Err(Error::Infeasible {
            requested,
            available,
            ..
        }) => {
            assert_eq!(requested, format!("GPU: {}", adapters + 1));
            assert!(
                available.contains(&format!("GPU: {adapters}")),
                "{available}"
            );
        }
        other => panic!("expected Infeasible, got {other:?}"),
    }
    ray::shutdown();
}
