//! The seed program (examples/mnist.rs) through the runtime, on the shipped MNIST sample: an
//! actor with one GPU (lavapipe on machines without one) trains softmax regression.

#[path = "../examples/mnist.rs"]
mod example;

use example::{Options, run};

fn options(steps: usize, actors: usize) -> Options {
    Options {
        steps,
        actors,
        data_dir: ray::gpu::mnist::default_dir(),
    }
}

#[test]
fn the_seed_program_reaches_its_accuracy_after_200_and_1000_steps() {
    // One GPU (the machine's first adapter, lavapipe in CI) as in a one-GPU seed run.
    ray::init(ray::Config::default().num_cpus(2).num_gpus(1)).unwrap();
    let acc200 = run(&options(200, 1)).unwrap();
    assert!(acc200[0] >= 0.89, "accuracy after 200 steps: {}", acc200[0]);
    let acc1000 = run(&options(1000, 1)).unwrap();
    assert!(
        acc1000[0] >= 0.90,
        "accuracy after 1,000 steps: {}",
        acc1000[0]
    );
    ray::shutdown();
}

#[test]
fn several_actors_train_at_once_on_their_own_gpus() {
    // Two declared GPUs: each actor gets its own id (one of them may fall back to the CPU).
    ray::init(ray::Config::default().num_cpus(2).num_gpus(2)).unwrap();
    let accuracies = run(&options(200, 2)).unwrap();
    assert_eq!(accuracies.len(), 2);
    for a in accuracies {
        assert!(a >= 0.85, "accuracy {a}");
    }
    ray::shutdown();
}
