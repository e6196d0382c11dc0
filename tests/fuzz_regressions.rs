//! Inputs the fuzzers found crashes with (fuzz/regressions/), and the seed inputs, replayed
//! through the same harnesses as `scripts/fuzz.sh` runs: none may panic.

use ray::__private::testing::{NodeFuzzer, fuzz_frames, fuzz_seeds};

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n == ".keep") {
            continue;
        }
        out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
    }
    out
}

#[test]
fn frame_reader_crashes_found_by_fuzzing_stay_fixed() {
    let found = inputs("frame_reader");
    assert!(!found.is_empty(), "the regressions are in the repository");
    for (name, data) in found {
        let outcome = std::panic::catch_unwind(|| fuzz_frames(&data));
        assert!(outcome.is_ok(), "{name} panics again");
    }
}

#[test]
fn node_messages_inputs_and_seeds_do_not_panic_the_node() {
    let mut all = inputs("node_messages");
    for (i, seed) in fuzz_seeds().into_iter().enumerate() {
        all.push((format!("seed {i}"), seed));
    }
    let everything: Vec<u8> = all.iter().flat_map(|(_, d)| d.clone()).collect();
    all.push(("all seeds in one input".into(), everything));
    for (name, data) in all {
        let outcome = std::panic::catch_unwind(|| NodeFuzzer::new().feed(&data));
        assert!(outcome.is_ok(), "{name} panics the node");
    }
}
