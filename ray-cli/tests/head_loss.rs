//! Losing the head (issue 11): the head is only the first node plus etcd's location, so
//! killing its daemon is like losing any node for a job whose driver runs elsewhere. The
//! driver, attached to node A, goes on running tasks and calling its actor while the others
//! declare the head dead when its lease expires.

mod common;

use common::*;
use std::time::{Duration, Instant};

#[ray::remote(resources(spare = 1))]
fn square(x: u64) -> u64 {
    x * x
}

#[ray::remote(resources(spare = 0.5))]
struct Counter {
    n: u64,
}

#[ray::remote]
impl Counter {
    fn new() -> Self {
        Counter { n: 0 }
    }
    fn add(&mut self, x: u64) -> u64 {
        self.n += x;
        self.n
    }
}

/// The driver. A no-op unless `RAY_CLUSTER_DRIVER` is set.
#[test]
fn driver_main() {
    if std::env::var(MODE).is_err() {
        return;
    }
    let dir = std::env::var("HEAD_LOSS_DIR").expect("HEAD_LOSS_DIR");
    ray::init(ray::Config::default()).expect("joins node A");
    let counter = Counter::remote();
    assert_eq!(ray::get(&square::remote(3)).unwrap(), 9);
    assert_eq!(ray::get(&counter.add(1)).unwrap(), 1);
    std::fs::write(format!("{dir}/before"), b"").unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !std::path::Path::new(&format!("{dir}/head-dead")).exists() {
        assert!(Instant::now() < deadline, "never told the head was gone");
        std::thread::sleep(Duration::from_millis(20));
    }
    let refs: Vec<_> = (0..50u64).map(square::remote).collect();
    let got = ray::get_all(&refs).expect("tasks after the head's death");
    assert_eq!(got, (0..50u64).map(|x| x * x).collect::<Vec<_>>());
    assert_eq!(
        ray::get(&counter.add(2)).unwrap(),
        3,
        "the actor kept its state"
    );
    ray::shutdown();
    println!("HEAD LOSS OK");
}

#[test]
fn killing_the_heads_daemon_is_like_losing_any_node() {
    let head_dir = NodeDir::new("headloss-head");
    let mut head = Head::start(
        &head_dir,
        &["--num-cpus", "1", "--num-gpus", "0", "--lease-ttl", "2"],
    );
    let token = head_dir.token();
    let (a, b) = (NodeDir::new("headloss-a"), NodeDir::new("headloss-b"));
    for dir in [&a, &b] {
        join(
            &head,
            dir,
            &token,
            &spare_node("1", &["--lease-ttl", "2"]),
            &[],
        );
    }
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.path.join("node.json")).unwrap()).unwrap();
    let a_address = file["address"].as_str().unwrap().to_string();
    let work = head_dir.path.with_extension("work");
    std::fs::create_dir_all(&work).unwrap();
    let driver = spawn_driver("head-loss", &a_address, &token, &[("HEAD_LOSS_DIR", &work)]);
    wait_for("the driver's first work", || {
        work.join("before").exists().then_some(())
    });
    head.child.kill().unwrap();
    head.child.wait().unwrap();
    // Node A, asked directly, sees the head's lease expire like any node's.
    wait_for("the head declared dead", || {
        let report = status(&a_address, &a.path, &token, &[]);
        nodes(&report)
            .iter()
            .any(|n| n["is_head"] == true && n["alive"] == false)
            .then_some(())
    });
    std::fs::write(work.join("head-dead"), b"").unwrap();
    let out = driver.wait_with_output().unwrap();
    let text = output_text(&out);
    assert!(
        out.status.success() && text.contains("HEAD LOSS OK"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&work);
}
