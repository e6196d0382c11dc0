#!/usr/bin/env bash
# Runs every check and test of the workspace, on a fresh machine too (the README's test command;
# .ci/run calls it). Installs the system packages the tests need first: Mesa's lavapipe Vulkan
# driver, so ray-gpu's shaders really run on machines without a GPU, and etcd (Debian's
# etcd-server), which ray-cli's cluster tests start for real. Ends with a bounded fuzzing run
# of the node manager's message handling (scripts/fuzz.sh, FUZZ_SECONDS per target).
set -euo pipefail
cd "$(dirname "$0")/.."

# Incremental compilation keeps a second copy of every crate's intermediate files: a one-off
# build of the whole suite does not need it, and CI disks are small.
export CARGO_INCREMENTAL=0
df -h . | tail -1 | awk '{print "== disk before the build: " $4 " free"}'

scripts/install-gpu-deps.sh
scripts/install-cluster-deps.sh
scripts/install-browser-deps.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# Internal docs link with intra-doc links, so renamed items break the build of the docs.
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --document-private-items --quiet
# A test binary that exits early with status 0 (a `process::exit` reached from a test) would
# skip its remaining tests silently: every binary must print its summary.
# The output stays in target/test-output.log (overwritten each run) for a look afterwards.
mkdir -p target
log=target/test-output.log
# --no-fail-fast: one flaky binary must not hide whether the others pass.
cargo test --workspace --no-fail-fast 2>&1 | tee "$log"
started=$(grep -cE '^ +(Running|Doc-tests) ' "$log" || true)
finished=$(grep -cE '^test result: ' "$log" || true)
if [ "$started" != "$finished" ]; then
    echo "== $started test binaries started but $finished printed a summary: one ended early" >&2
    exit 1
fi
echo "== $finished test binaries, each with its summary"
df -h . | tail -1 | awk '{print "== disk after the tests: " $4 " free"}'
du -sh target 2>/dev/null | awk '{print "== target/: " $1}'
scripts/fuzz.sh
