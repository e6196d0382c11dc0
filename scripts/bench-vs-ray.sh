#!/usr/bin/env bash
# Runs Ray's own microbenchmark (`ray microbenchmark`) and ours (ray-bench, same metric names and
# definitions) on this machine in one session, and prints them side by side:
#     <name> | ours <x> | ray <y> | ratio <x/y>
#
#   scripts/bench-vs-ray.sh            every metric (Ray's full suite takes ~10 minutes)
#   scripts/bench-vs-ray.sh --quick    tasks sync/async, 1:1 actor and async-actor sync/async,
#                                      put and get calls, put gigabytes, placement group
#                                      create/removal (a few minutes)
#
# Ray is installed from PyPI into a throwaway virtualenv ($RAY_VENV, default /tmp/ray-bench-venv;
# reused if it is there). Results go to $BENCH_OUT (default target/bench-vs-ray/). Builds use
# $CARGO_TARGET_DIR when set.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[ "${1:-}" = "--quick" ] && quick=1
venv=${RAY_VENV:-/tmp/ray-bench-venv}
out=${BENCH_OUT:-target/bench-vs-ray}
mkdir -p "$out"

if [ ! -x "$venv/bin/ray" ]; then
    echo "== installing Ray into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "ray[default]" numpy
fi
echo "== Ray $("$venv/bin/python" -c 'import ray; print(ray.__version__)'), $(nproc) CPUs, $(date -u +%Y-%m-%d)"

quick_metrics=(
    "single client tasks sync"
    "single client tasks async"
    "1:1 actor calls sync"
    "1:1 actor calls async"
    "1:1 async-actor calls sync"
    "1:1 async-actor calls async"
    "placement group create/removal"
    "single client put calls"
    "single client get calls"
    "single client put gigabytes"
)

: > "$out/ray.txt"
if [ $quick = 1 ]; then
    for m in "${quick_metrics[@]}"; do
        echo "== ray microbenchmark: $m"
        TESTS_TO_RUN="$m" "$venv/bin/ray" microbenchmark 2>/dev/null | grep " per second " | tee -a "$out/ray.txt" || true
    done
else
    echo "== ray microbenchmark (all)"
    "$venv/bin/ray" microbenchmark 2>/dev/null | grep " per second " | tee -a "$out/ray.txt" || true
fi

echo "== ray-bench"
cargo build --release -q -p ray-bench
only=()
if [ $quick = 1 ]; then
    for m in "${quick_metrics[@]}"; do only+=(--only "$m"); done
    only+=(--only "zero-copy get" --only "init to first task result")
fi
"${CARGO_TARGET_DIR:-target}/release/ray-bench" "${only[@]}" --json "$out/ours.json" | grep -v '^(' | tee "$out/ours.txt"

echo
echo "== side by side ($(nproc) CPUs, $(date -u +%Y-%m-%d))"
python3 - "$out/ours.txt" "$out/ray.txt" <<'PY' | tee "$out/table.txt"
import re, sys
line = re.compile(r"^(.*) per second ([0-9.e+-]+) \+- ([0-9.e+-]+)")
def load(path):
    d = {}
    for l in open(path):
        m = line.match(l.strip())
        if m:
            d[m.group(1)] = (float(m.group(2)), float(m.group(3)))
    return d
ours, ray = load(sys.argv[1]), load(sys.argv[2])
for name, (x, xs) in ours.items():
    if name in ray:
        y, ys = ray[name]
        ratio = f"{x / y:.1f}x" if y else "n/a"
        print(f"{name} | ours {x:.2f} +- {xs:.2f} | ray {y:.2f} +- {ys:.2f} | ratio {ratio}")
    else:
        print(f"{name} | ours {x:.2f} +- {xs:.2f} | ray (not measured) | ratio n/a")
PY
