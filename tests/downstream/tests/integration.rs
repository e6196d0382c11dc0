//! Integration tests of the downstream crate: the library's tasks from a test binary (several
//! tests in one binary take turns with the runtime), a task of the test itself, and the binary.

use ray_downstream::{bank::Account, geometry, stats};

/// A task defined in the integration test, named like the library's.
#[ray::remote]
fn norm(values: Vec<f64>) -> f64 {
    values.iter().map(|v| v * v).sum::<f64>().sqrt()
}

#[test]
fn library_tasks_and_actors_give_correct_results() {
    ray::init(ray::Config::default().num_cpus(2)).unwrap();
    let lines = ray_downstream::exercise().unwrap();
    assert_eq!(
        lines,
        [
            "geometry::norm 5",
            "geometry::scale (6.0, 8.0)",
            "geometry::norm(scale) 10",
            "stats::norm 6",
            "stats::nested::norm 7",
            "bare::repeat ababab",
            "bank (\"ada\", 15) own_process=true",
        ]
    );
    ray::shutdown();
}

#[test]
fn tasks_with_the_same_name_in_different_modules_stay_apart() {
    ray::init(ray::Config::default().num_cpus(2)).unwrap();
    let p = geometry::Point::new(6.0, 8.0);
    let v = vec![3.0, -4.0];
    assert_eq!(ray::get(&geometry::norm::remote(p)).unwrap(), 10.0);
    assert_eq!(ray::get(&stats::norm::remote(v.clone())).unwrap(), 7.0);
    assert_eq!(
        ray::get(&stats::nested::norm::remote(v.clone())).unwrap(),
        4.0
    );
    assert_eq!(ray::get(&norm::remote(v)).unwrap(), 5.0);
    let account = Account::remote("lin".to_string(), 1);
    assert_eq!(ray::get(&account.deposit(2)).unwrap(), 3);
    ray::shutdown();
}

#[ray::remote(num_gpus = 1)]
fn gpu_ids() -> Vec<usize> {
    ray::get_gpu_ids()
}

/// The machine's GPUs as the kernel lists them: NVIDIA GPUs by PCI bus id, and every device
/// with a DRM render node (counted once each).
fn gpus_in_device_nodes() -> usize {
    let mut devices = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir("/proc/driver/nvidia/gpus").into_iter().flatten() {
        devices.insert(entry.unwrap().file_name().to_string_lossy().to_lowercase());
    }
    for entry in std::fs::read_dir("/sys/class/drm").into_iter().flatten() {
        let entry = entry.unwrap();
        if entry.file_name().to_string_lossy().starts_with("renderD") {
            let device = std::fs::canonicalize(entry.path().join("device")).unwrap();
            let driver = std::fs::read_link(device.join("driver")).ok();
            if driver.is_some_and(|d| d.ends_with("vgem")) {
                continue;
            }
            let id = device.file_name().unwrap().to_string_lossy().to_lowercase();
            devices.insert(id);
        }
    }
    devices.len()
}

#[test]
fn without_the_gpu_feature_gpus_are_counted_from_device_nodes() {
    let gpus = gpus_in_device_nodes();
    ray::init(ray::Config::default().num_cpus(1)).unwrap();
    if gpus > 0 {
        assert_eq!(ray::get(&gpu_ids::remote()).unwrap(), vec![0]);
    }
    match ray::get(&gpu_ids::options().num_gpus(gpus as u32 + 1).remote()) {
        Err(ray::Error::Infeasible { available, .. }) => {
            assert!(available.contains(&format!("GPU: {gpus}")), "{available}")
        }
        other => panic!("expected Infeasible, got {other:?}"),
    }
    ray::shutdown();
}

#[test]
fn the_binary_runs_its_own_and_the_librarys_remote_items() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ray-downstream"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "geometry::norm 5",
        "stats::nested::norm 7",
        "bank (\"ada\", 15) own_process=true",
        "main::norm 14",
        "teller 10",
        "account (\"grace\", 10)",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "missing {line:?} in:\n{stdout}"
        );
    }
}
