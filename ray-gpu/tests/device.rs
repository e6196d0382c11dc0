//! Device selection: adapter enumeration, logical ids, the CPU fallback and RAY_RS_GPU_IDS.

mod common;

use std::process::Command;

use ray_gpu::{Device, GPU_IDS_ENV};

#[test]
fn adapters_are_listed_in_logical_order() {
    let adapters = ray_gpu::adapters();
    assert_eq!(adapters.len(), ray_gpu::adapter_count());
    for (i, a) in adapters.iter().enumerate() {
        assert_eq!(a.logical_id, i);
        assert!(!a.name.is_empty());
    }
    // A software adapter (lavapipe) only stands in when there is no hardware one.
    if adapters
        .iter()
        .any(|a| a.kind != ray_gpu::AdapterKind::Software)
    {
        assert!(
            adapters
                .iter()
                .all(|a| a.kind != ray_gpu::AdapterKind::Software)
        );
    }
    // All from one backend, so no device is counted twice.
    if let Some(first) = adapters.first() {
        assert!(adapters.iter().all(|a| a.backend == first.backend));
    }
    // Stable order: bus ids (where reported) ascending, before adapters without one.
    for pair in adapters.windows(2) {
        let key = |a: &ray_gpu::AdapterSummary| {
            (
                a.pci_bus_id.is_empty(),
                a.pci_bus_id.clone(),
                a.vendor,
                a.device,
                a.name.clone(),
            )
        };
        assert!(key(&pair[0]) <= key(&pair[1]), "{pair:?}");
    }
}

#[test]
fn opening_a_gpu_gives_a_gpu_device() {
    let Some(dev) = common::gpu() else { return };
    assert!(dev.is_gpu());
    let adapter = dev.adapter().expect("a GPU device has an adapter");
    assert_eq!(adapter.logical_id, 0);
    assert!(dev.describe().contains(&adapter.name), "{}", dev.describe());
    assert!(dev.describe().contains("logical GPU 0"));
    // Opening the same logical GPU again shares it: tensors move between the two handles.
    let again = Device::for_gpu(0);
    let t = again.upload(1, 1, &[2.0]).unwrap();
    assert_eq!(dev.matmul(&t, &t).unwrap().read().unwrap(), vec![4.0]);
}

#[test]
fn a_missing_gpu_falls_back_to_the_cpu() {
    let count = ray_gpu::adapter_count();
    let dev = Device::for_gpu(count + 3);
    assert!(!dev.is_gpu());
    assert_eq!(dev.describe(), "cpu");
    assert!(dev.adapter().is_none());
    // The fallback device computes.
    let t = dev.upload(1, 2, &[1.0, 2.0]).unwrap();
    let u = dev.upload(2, 1, &[3.0, 4.0]).unwrap();
    assert_eq!(dev.matmul(&t, &u).unwrap().read().unwrap(), vec![11.0]);
    let err = Device::try_gpu(count + 3).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "Device::for_gpu: no GPU adapter for logical GPU {} ({count} found)",
            count + 3
        )
    );
    assert!(!Device::cpu().is_gpu());
}

/// Runs `child_reports_from_ray_env` in a fresh process with RAY_RS_GPU_IDS set to `value`
/// (or unset), returning (the device it reported, its stderr).
fn from_ray_env_in_child(value: Option<&str>) -> (String, String) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "child_reports_from_ray_env",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("RAY_GPU_TEST_CHILD", "1");
    match value {
        Some(v) => cmd.env(GPU_IDS_ENV, v),
        None => cmd.env_remove(GPU_IDS_ENV),
    };
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "child failed: {out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let device = stdout
        .lines()
        .find_map(|l| l.split_once("DEVICE=").map(|(_, d)| d))
        .unwrap_or_else(|| panic!("child printed no DEVICE= line: {stdout}"))
        .to_string();
    (device, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Not a test on its own: the child half of `from_ray_env_reads_the_gpu_ids`.
#[test]
fn child_reports_from_ray_env() {
    if std::env::var_os("RAY_GPU_TEST_CHILD").is_none() {
        return;
    }
    println!("DEVICE={}", Device::from_ray_env().describe());
}

#[test]
fn from_ray_env_reads_the_gpu_ids() {
    let count = ray_gpu::adapter_count();
    for value in [None, Some(""), Some("  ")] {
        let (device, stderr) = from_ray_env_in_child(value);
        assert_eq!(device, "cpu", "{value:?}");
        let warning = "ray-gpu: RAY_RS_GPU_IDS is empty or unset, so this process was given no GPU; \
                       falling back to the CPU implementation (like TensorFlow's allow_soft_placement=True)";
        assert_eq!(stderr.matches(warning).count(), 1, "{value:?}: {stderr}");
    }

    let (device, stderr) = from_ray_env_in_child(Some(&format!("{},0", count + 5)));
    assert_eq!(device, "cpu");
    assert!(
        stderr.contains(&format!(
            "ray-gpu: no GPU adapter for logical GPU {} ({count} found); falling back to the CPU implementation",
            count + 5
        )),
        "{stderr}"
    );

    let (device, stderr) = from_ray_env_in_child(Some("zero"));
    assert_eq!(device, "cpu");
    assert!(stderr.contains("\"zero\" is not a GPU id"), "{stderr}");

    if common::gpu().is_some() {
        let (device, stderr) = from_ray_env_in_child(Some("0, 1"));
        assert!(device.contains("logical GPU 0"), "{device}");
        assert!(!stderr.contains("falling back"), "{stderr}");
    }
}
