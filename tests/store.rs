//! The shared-memory object store: zero-copy reads, sealing, spilling, capacity.

mod common;

use common::*;
use ray::{Error, ObjectRef};
use std::process::{Command, Stdio};
use std::time::Duration;

#[ray::remote]
fn view_sum(r: ObjectRef<Vec<f32>>) -> (bool, f64, usize) {
    let view = ray::get_slice(&r).unwrap();
    let sum = view.iter().map(|x| *x as f64).sum();
    (view.is_zero_copy(), sum, view.as_ptr() as usize % 16)
}

#[ray::remote]
fn decode_len(v: Vec<f32>) -> usize {
    v.len()
}

#[ray::remote]
fn make_big(n: usize, fill: u8) -> Vec<u8> {
    vec![fill; n]
}

#[ray::remote]
fn len_and_sum(v: Vec<u8>) -> (usize, u64) {
    (v.len(), v.iter().map(|x| *x as u64).sum())
}

#[ray::remote]
fn put_patterned(seed: u64, n: usize) -> ObjectRef<Vec<u64>> {
    let v: Vec<u64> = (0..n as u64).map(|i| i.wrapping_mul(seed)).collect();
    ray::put_slice(&v).unwrap()
}

#[ray::remote]
fn check_patterned(r: ObjectRef<Vec<u64>>, seed: u64, n: usize) -> bool {
    let view = ray::get_slice(&r).unwrap();
    view.len() == n
        && view
            .iter()
            .enumerate()
            .all(|(i, x)| *x == (i as u64).wrapping_mul(seed))
}

#[ray::remote]
fn hold_arg(v: Vec<u8>, ms: u64) -> usize {
    std::thread::sleep(Duration::from_millis(ms));
    v.len()
}

fn stats() -> (u64, u64, u64, u64, std::path::PathBuf) {
    ray::__private::store_stats().expect("running")
}

const MB: usize = 1 << 20;

#[test]
fn workers_and_the_driver_read_large_pod_objects_in_place() {
    ray::init(ray::Config::default().num_cpus(2)).unwrap();
    let data: Vec<f32> = (0..4_000_000).map(|i| (i % 7) as f32).collect();
    let expected: f64 = data.iter().map(|x| *x as f64).sum();
    let r = ray::put_slice(&data).unwrap();
    assert!(
        stats().0 >= 16_000_000,
        "the object is in the store: {:?}",
        stats()
    );
    let (zero_copy, sum, misalign) = ray::get(&view_sum::remote(r.clone())).unwrap();
    assert!(zero_copy, "the worker's view points into shared memory");
    assert_eq!(misalign, 0, "elements are aligned");
    assert_eq!(sum, expected);
    let view = ray::get_slice(&r).unwrap();
    assert!(view.is_zero_copy(), "the driver reads it in place too");
    assert_eq!(&view[..5], &data[..5]);
    // The same object is an ordinary Vec<f32> for serde.
    assert_eq!(ray::get(&decode_len::remote(&r)).unwrap(), 4_000_000);
    assert_eq!(ray::get(&r).unwrap(), data);
    // A Vec<f32> stored through serde is readable in place as well.
    let via_serde = ray::put(data.clone()).unwrap();
    let v2 = ray::get_slice(&via_serde).unwrap();
    assert!(v2.is_zero_copy());
    assert_eq!(&v2[..], &data[..]);
    // Small objects come back as copies, still without serde.
    let small = ray::put_slice(&[1u16, 2, 3]).unwrap();
    let v = ray::get_slice(&small).unwrap();
    assert!(!v.is_zero_copy());
    assert_eq!(&*v, &[1, 2, 3]);
    drop((view, v2, r, via_serde));
    assert!(
        eventually(Duration::from_secs(5), || stats().0 == 0),
        "memory given back: {:?}",
        stats()
    );
    ray::shutdown();
}

#[test]
fn large_values_travel_through_the_store_in_both_directions() {
    ray::init(ray::Config::default().num_cpus(2)).unwrap();
    // A large argument passed by value, and a large result.
    let (n, sum) = ray::get(&len_and_sum::remote(vec![3u8; 5 * MB])).unwrap();
    assert_eq!((n, sum), (5 * MB, 15 * MB as u64));
    let big = make_big::remote(7 * MB, 2);
    assert_eq!(
        ray::get(&len_and_sum::remote(&big)).unwrap(),
        (7 * MB, 14 * MB as u64)
    );
    assert_eq!(ray::get(&big).unwrap().len(), 7 * MB);
    drop(big);
    assert!(
        eventually(Duration::from_secs(5), || stats().0 == 0),
        "{:?}",
        stats()
    );
    ray::shutdown();
}

#[test]
fn readers_never_see_a_partial_or_changing_object() {
    ray::init(
        ray::Config::default()
            .num_cpus(2)
            .object_store_memory(256 * MB as u64),
    )
    .unwrap();
    // Writers in workers, readers in other workers, store reused over and over.
    for round in 0..6u64 {
        let refs: Vec<ObjectRef<ObjectRef<Vec<u64>>>> = (0..4)
            .map(|i| put_patterned::remote(round * 10 + i + 1, 1_000_000))
            .collect();
        let inner = ray::get_all(&refs).unwrap();
        let checks: Vec<ObjectRef<bool>> = inner
            .iter()
            .enumerate()
            .map(|(i, r)| check_patterned::remote(r.clone(), round * 10 + i as u64 + 1, 1_000_000))
            .collect();
        assert!(
            ray::get_all(&checks).unwrap().into_iter().all(|ok| ok),
            "round {round}"
        );
    }
    ray::shutdown();
}

#[test]
fn referenced_objects_are_spilled_when_the_store_is_full_and_restored_on_get() {
    let dir = scratch("spill");
    ray::init(
        ray::Config::default()
            .num_cpus(2)
            .object_store_memory(48 * MB as u64)
            .object_spilling_directory(&dir),
    )
    .unwrap();
    let spill_dir = stats().4;
    assert!(spill_dir.starts_with(&dir));
    let refs: Vec<ObjectRef<Vec<u8>>> = (0..8u8)
        .map(|i| ray::put(vec![i; 10 * MB]).unwrap())
        .collect();
    let (used, capacity, spilled, _, _) = stats();
    assert!(used <= capacity);
    assert!(
        spilled >= 4,
        "80 MiB of live objects in a 48 MiB store: {spilled} spilled"
    );
    let files = std::fs::read_dir(&spill_dir).unwrap().count();
    assert!(files >= 4, "spilled objects are files on disk: {files}");
    for (i, r) in refs.iter().enumerate() {
        let v = ray::get(r).unwrap();
        assert_eq!(v.len(), 10 * MB);
        assert!(
            v.iter().all(|b| *b == i as u8),
            "object {i} restored intact"
        );
    }
    assert!(stats().3 >= 4, "restored on get: {:?}", stats());
    // Tasks read spilled objects too.
    assert_eq!(
        ray::get(&len_and_sum::remote(&refs[0])).unwrap(),
        (10 * MB, 0)
    );
    drop(refs);
    assert!(eventually(Duration::from_secs(5), || stats().0 == 0));
    ray::shutdown();
    assert!(
        !spill_dir.exists(),
        "no spilled file is left after shutdown"
    );
}

#[test]
fn a_put_that_cannot_fit_even_after_spilling_is_object_store_full() {
    ray::init(
        ray::Config::default()
            .num_cpus(2)
            .object_store_memory(32 * MB as u64),
    )
    .unwrap();
    match ray::put(vec![0u8; 40 * MB]) {
        Err(Error::ObjectStoreFull {
            requested,
            capacity,
            ..
        }) => {
            assert!(requested >= 40 * MB as u64);
            assert_eq!(capacity, 32 * MB as u64);
        }
        other => panic!("expected ObjectStoreFull, got {other:?}"),
    }
    // Objects that tasks are using cannot be spilled: with them filling the store, the next
    // put fails cleanly instead of hanging or crashing.
    let a = ray::put(vec![1u8; 12 * MB]).unwrap();
    let b = ray::put(vec![2u8; 12 * MB]).unwrap();
    let busy_a = hold_arg::remote(&a, 1_000);
    // Their arguments are pinned in memory from submission on: no need to wait for them to run.
    let busy_b = hold_arg::remote(&b, 1_000);
    let err = ray::put(vec![3u8; 12 * MB]).unwrap_err();
    assert!(matches!(err, Error::ObjectStoreFull { .. }), "{err:?}");
    assert!(err.to_string().contains("object store full"), "{err}");
    assert_eq!(ray::get(&busy_a).unwrap(), 12 * MB);
    assert_eq!(ray::get(&busy_b).unwrap(), 12 * MB);
    // Once the tasks are done the objects can be spilled and the put succeeds.
    let c = ray::put(vec![3u8; 12 * MB]).unwrap();
    assert_eq!(ray::get(&c).unwrap().len(), 12 * MB);
    assert_eq!(ray::get(&a).unwrap()[0], 1);
    ray::shutdown();
}

/// In a child process: try to write through a view into the store.
#[test]
fn child_writes_through_a_view() {
    if std::env::var("RAY_TEST_CHILD").as_deref() != Ok("write-view") {
        return;
    }
    ray::init(ray::Config::default().num_cpus(1)).unwrap();
    let r = ray::put_slice(&vec![1u64; 1 << 20]).unwrap();
    let view = ray::get_slice(&r).unwrap();
    assert!(view.is_zero_copy());
    println!("WRITING");
    // SAFETY: deliberately unsound: the test checks that the mapping is read-only, so this
    // write must fault.
    unsafe { std::ptr::write_volatile(view.as_ptr() as *mut u64, 7) };
    println!("WROTE {}", view[0]);
}

#[test]
fn the_store_is_mapped_read_only_so_a_sealed_object_cannot_be_overwritten() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_writes_through_a_view",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("RAY_TEST_CHILD", "write-view")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    use std::os::unix::process::ExitStatusExt;
    assert!(stdout.contains("WRITING"), "{stdout}");
    assert!(
        !stdout.contains("WROTE"),
        "the write went through: {stdout}"
    );
    assert_eq!(out.status.signal(), Some(libc::SIGSEGV), "{:?}", out.status);
}
