//! The seed's MNIST program (examples/mnist.rs, its own `run`) on a three-node cluster: the
//! head and two joined nodes, each declaring one GPU (lavapipe where there is none), three
//! actors with `num_gpus = 1`, so one on each node. The dataset is `put` once by the driver
//! and pulled by the two other nodes.

mod common;

#[path = "../../examples/mnist.rs"]
mod example;

use common::*;
use std::collections::BTreeSet;

/// The driver: what `RAY_ADDRESS=... cargo run --example mnist -- --actors 3` runs. A no-op
/// unless `RAY_CLUSTER_DRIVER` is set.
#[test]
fn driver_main() {
    if std::env::var(MODE).is_err() {
        return;
    }
    // As the example's `main`: it declares 8 GPUs, which a cluster ignores (its nodes declare
    // their own) with one warning.
    ray::init(ray::Config::default().num_gpus(8)).expect("joins the cluster");
    let accuracies = example::run(&example::Options {
        steps: 200,
        actors: 3,
        data_dir: ray::gpu::mnist::default_dir(),
    })
    .expect("the example runs");
    assert_eq!(accuracies.len(), 3);
    for a in &accuracies {
        assert!(*a >= 0.85, "accuracy {a}");
    }
    ray::shutdown();
    println!("MNIST OK");
}

#[test]
fn the_seed_program_trains_three_actors_on_three_nodes() {
    let head_dir = NodeDir::new("mnist-head");
    let head = Head::start(&head_dir, &["--num-cpus", "1", "--num-gpus", "1"]);
    let token = head_dir.token();
    let dirs: Vec<NodeDir> = ["a", "b"]
        .iter()
        .map(|n| {
            let dir = NodeDir::new(&format!("mnist-{n}"));
            join(
                &head,
                &dir,
                &token,
                &["--num-cpus", "1", "--num-gpus", "1"],
                &[],
            );
            dir
        })
        .collect();
    wait_for("three live nodes", || {
        let report = status(&head.address, &head_dir.path, &token, &[]);
        (nodes(&report).len() == 3).then_some(())
    });

    let out = driver("mnist", &head.address, &token);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success() && stdout.contains("MNIST OK"),
        "{stdout}\n{stderr}"
    );
    assert!(stdout.contains("Accuracy is "), "{stdout}");
    assert!(
        stderr.contains("ignored"),
        "one warning that Config's resources are ignored: {stderr}"
    );
    // Each actor printed its progress with its prefix: three workers, two of them on the
    // other nodes (tagged with their node), one on the head (the driver's node: no tag).
    let prefixes: BTreeSet<&str> = stdout
        .lines()
        // Not `strip_prefix`: the first line may follow libtest's `test driver_main ... `.
        .filter_map(|l| l.split_once("(NeuralNetOnGpu pid=").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_once(')').map(|(p, _)| p))
        .collect();
    let pids: BTreeSet<&str> = prefixes
        .iter()
        .map(|p| p.split(',').next().unwrap())
        .collect();
    let tags: BTreeSet<&str> = prefixes
        .iter()
        .filter_map(|p| p.split_once(", ").map(|(_, tag)| tag))
        .collect();
    assert_eq!(pids.len(), 3, "three actors: {prefixes:?}\n{stdout}");
    assert_eq!(tags.len(), 2, "two on other nodes: {prefixes:?}");
    // Both joined nodes copied the dataset in from the driver's node.
    for dir in &dirs {
        let id = std::fs::read_to_string(dir.path.join("node.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["node_id"].as_u64())
            .expect("node.json names the node");
        assert!(
            tags.contains(format!("node={id}").as_str()),
            "an actor ran on node {id}: {tags:?}"
        );
        wait_for("the dataset's copy counted", || {
            let report = status(&head.address, &head_dir.path, &token, &[]);
            let node = nodes(&report)
                .into_iter()
                .find(|n| n["node_id"].as_u64() == Some(id))?;
            (node["activity"]["bytes_pulled"].as_u64().unwrap_or(0) > 0).then_some(())
        });
    }
}
