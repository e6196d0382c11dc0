//! The parameter-server example (examples/parameter_server.rs): zero-copy and serde transport
//! train the same model, and the zero-copy path really reads in place.

#[path = "../examples/parameter_server.rs"]
mod example;

use example::{PARAMS, Transport, gradient, train};

#[test]
fn the_example_runs_as_a_user_runs_it() {
    // 20 rounds with each transport, as `cargo run --example parameter_server` does.
    example::main().unwrap();
}

#[test]
fn both_transports_train_the_same_model() {
    ray::init(ray::Config::default().num_cpus(2)).unwrap();
    let zero_copy = train(Transport::ZeroCopy, 3).unwrap();
    let serde = train(Transport::Serde, 3).unwrap();
    // From 0, each round halves the distance to the optimum (learning rate 0.5).
    let start = train(Transport::ZeroCopy, 0).unwrap().error;
    assert!(start > 0.3, "the optimum is away from the start: {start}");
    let expected = start / 8.0;
    for outcome in [&zero_copy, &serde] {
        assert!(
            (outcome.error - expected).abs() < 1e-3 * expected,
            "after 3 rounds: {outcome:?}, expected an error of {expected}"
        );
    }
    eprintln!(
        "3 rounds of {} workers: zero-copy {:?}, serde {:?}",
        example::WORKERS,
        zero_copy.elapsed,
        serde.elapsed
    );
    ray::shutdown();
}

#[test]
fn parameters_and_gradients_are_read_in_place() {
    ray::init(ray::Config::default().num_cpus(2)).unwrap();
    let params = ray::put_slice(&vec![1.0f32; PARAMS]).unwrap();
    // The task's `ObjectRef<Vec<f32>>` parameter arrives unresolved; its `Vec<f32>` result
    // lies in the store as length + elements, so the driver reads it in place too.
    let g = gradient::remote(&params, 0);
    let view = ray::get_slice(&g).unwrap();
    assert!(
        view.is_zero_copy(),
        "a large Vec<f32> result is read in place"
    );
    assert_eq!(view.len(), PARAMS);
    assert_eq!(view[0], 1.0, "target(0, 0) is 0");
    drop(view);
    ray::shutdown();
}
