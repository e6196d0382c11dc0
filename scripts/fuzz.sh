#!/usr/bin/env bash
# Fuzzes the node manager's frame reader and its handling of every message from an
# authenticated worker, each for a bounded time (FUZZ_SECONDS, default 60). Uses cargo-fuzz
# (installed if missing) on the stable toolchain, without a sanitizer (`--sanitizer none`:
# sanitizers need nightly); the targets are safe Rust, so a bug shows up as a panic or an
# abort. A crash fails the run: keep its input under fuzz/regressions/<target>/, where
# tests/fuzz_regressions.rs replays it on every test run.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-60}
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked --quiet
fi
cargo run --quiet --manifest-path fuzz/Cargo.toml --bin seeds -- fuzz/corpus
for target in frame_reader node_messages; do
    echo "== fuzzing $target for ${seconds}s"
    mkdir -p "fuzz/corpus/$target"
    cargo fuzz run --sanitizer none "$target" "fuzz/corpus/$target" "fuzz/regressions/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=4096 -print_final_stats=1 2>&1 \
        | grep -E "^(#[0-9]+ +DONE|Done|stat::number_of_executed_units|SUMMARY|thread .* panicked)|ERROR" || true
    if compgen -G "fuzz/artifacts/$target/*" >/dev/null; then
        echo "fuzzing $target found a crash: fuzz/artifacts/$target/ (move it to fuzz/regressions/$target/)" >&2
        exit 1
    fi
done
