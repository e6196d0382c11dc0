//! Objects: put/get/wait, reference counting across processes, memory given back.

mod common;

use common::*;
use ray::{Error, ObjectRef};
use serde::{Deserialize, Serialize, Serializer};
use std::time::Duration;

#[ray::remote]
fn len_of(v: Vec<u8>) -> usize {
    v.len()
}

#[ray::remote]
fn hold_then_sum(refs: Vec<ObjectRef<Vec<u8>>>, ms: u64) -> usize {
    std::thread::sleep(Duration::from_millis(ms));
    ray::get_all(&refs).unwrap().iter().map(|v| v.len()).sum()
}

#[ray::remote]
fn put_in_worker(n: usize) -> ObjectRef<Vec<u8>> {
    ray::put(vec![7u8; n]).unwrap()
}

#[ray::remote]
fn big(n: usize) -> Vec<u8> {
    vec![1u8; n]
}

#[derive(Debug, Deserialize)]
struct Unencodable;

impl Serialize for Unencodable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("this type refuses to be encoded"))
    }
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn live() -> (usize, u64) {
    ray::__private::object_stats().expect("ray is running")
}

fn init() {
    ray::init(ray::Config::default().num_cpus(2)).unwrap();
}

#[test]
fn put_get_and_get_all_round_trip() {
    init();
    let r = ray::put(vec![1u32, 2, 3]).unwrap();
    assert_eq!(ray::get(&r).unwrap(), vec![1, 2, 3]);
    let s = ray::put("hello".to_string()).unwrap();
    assert_eq!(ray::get(&s).unwrap(), "hello");
    let refs: Vec<ObjectRef<i32>> = (0..10).map(|i| ray::put(i).unwrap()).collect();
    assert_eq!(ray::get_all(&refs).unwrap(), (0..10).collect::<Vec<_>>());
    assert!(ray::get_all::<i32>(&[]).unwrap().is_empty());
    let (ready, pending) = ray::wait(&refs, 10, Some(Duration::ZERO));
    assert_eq!((ready.len(), pending.len()), (10, 0));
    ray::shutdown();
}

#[test]
fn a_value_that_cannot_be_encoded_is_a_serialization_error() {
    init();
    match ray::put(Unencodable) {
        Err(Error::Serialization { type_name, message }) => {
            assert!(type_name.ends_with("Unencodable"), "{type_name}");
            assert!(message.contains("refuses"), "{message}");
        }
        other => panic!("expected Serialization, got {other:?}"),
    }
    ray::shutdown();
}

#[test]
fn memory_is_given_back_after_a_loop_of_large_puts_and_drops() {
    init();
    let (objects_before, bytes_before) = live();
    let rss_before = rss_bytes();
    let mut peak = 0u64;
    for i in 0..100u8 {
        let r = ray::put(vec![i; 10 << 20]).unwrap(); // 10 MiB each, 1 GiB in all
        assert_eq!(ray::get(&len_of::remote(&r)).unwrap(), 10 << 20);
        drop(r);
        peak = peak.max(rss_bytes());
    }
    // Results of the tasks are dropped too: nothing is left.
    assert!(
        eventually(Duration::from_secs(5), || live()
            == (objects_before, bytes_before)),
        "{:?}",
        live()
    );
    let grown = peak.saturating_sub(rss_before);
    assert!(
        grown < 300 << 20,
        "driver RSS grew by {} MiB for 1 GiB of dropped objects",
        grown >> 20
    );
    ray::shutdown();
}

#[test]
fn objects_referenced_only_by_pending_task_arguments_stay_alive() {
    init();
    let (objects_before, _) = live();
    let a = ray::put(vec![1u8; 1000]).unwrap();
    let b = ray::put(vec![2u8; 2000]).unwrap();
    // The task holds refs inside its argument; the driver drops its own at once.
    let total = hold_then_sum::remote(vec![a, b], 300);
    assert_eq!(ray::get(&total).unwrap(), 3000);
    drop(total);
    assert!(
        eventually(Duration::from_secs(5), || live().0 == objects_before),
        "{:?}",
        live()
    );
    ray::shutdown();
}

#[test]
fn objects_put_by_workers_live_as_long_as_a_reference_does() {
    init();
    let (objects_before, _) = live();
    let outer: ObjectRef<ObjectRef<Vec<u8>>> = put_in_worker::remote(5000);
    let inner: ObjectRef<Vec<u8>> = ray::get(&outer).unwrap();
    // The driver's references are counted synchronously: no wait is needed.
    drop(outer);
    assert_eq!(
        ray::get(&inner).unwrap().len(),
        5000,
        "still alive through the inner reference"
    );
    drop(inner);
    assert!(
        eventually(Duration::from_secs(5), || live().0 == objects_before),
        "{:?}",
        live()
    );
    ray::shutdown();
}

#[test]
fn nested_references_keep_their_targets_alive() {
    init();
    let (objects_before, _) = live();
    let inner = ray::put(vec![9u8; 100]).unwrap();
    let outer = ray::put(vec![inner.clone()]).unwrap();
    drop(inner);
    let back: Vec<ObjectRef<Vec<u8>>> = ray::get(&outer).unwrap();
    assert_eq!(ray::get(&back[0]).unwrap(), vec![9u8; 100]);
    drop(back);
    assert_eq!(live().0, objects_before + 2, "outer keeps inner alive");
    drop(outer);
    assert_eq!(live().0, objects_before, "dropping outer frees both");
    ray::shutdown();
}

#[test]
fn task_results_nobody_references_are_dropped() {
    init();
    let (objects_before, bytes_before) = live();
    for _ in 0..20 {
        let r = big::remote(1 << 20);
        assert_eq!(ray::get(&r).unwrap().len(), 1 << 20);
    }
    let fire_and_forget: Vec<_> = (0..5).map(|_| big::remote(1 << 20)).collect();
    ray::get_all(&fire_and_forget).unwrap();
    drop(fire_and_forget);
    assert!(
        eventually(Duration::from_secs(5), || live()
            == (objects_before, bytes_before)),
        "{:?}",
        live()
    );
    ray::shutdown();
}
