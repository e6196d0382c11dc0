#!/usr/bin/env bash
# Cluster benchmarks, ray for Rust vs Ray, on this machine, side by side:
#     <name> | ours <x> | ray <y> | ratio <x/y>
#
#   scripts/bench-cluster.sh            every metric, full rounds
#   scripts/bench-cluster.sh --quick    shorter rounds (for a 2-core machine in a hurry)
#
# 1. ray for Rust: a head (1 CPU) and three nodes (1 CPU each, custom resources node_a, node_b,
#    node_c) started with `ray-rs start` on 127.0.0.1, each with its own temp dir under
#    $BENCH_TMP (default /tmp/ray-rs-bench-cluster); `ray-bench --cluster` is the driver; the
#    nodes are stopped afterwards (also on failure).
# 2. Ray: the same shape with ray.cluster_utils.Cluster (scripts/ray_cluster_bench.py), Ray from
#    PyPI in a throwaway virtualenv ($RAY_VENV, default /tmp/ray-bench-venv; reused).
# 3. The limits: iperf3 over TCP on 127.0.0.1 (Debian's iperf3 is installed if missing), and
#    `ray-bench --loopback`: one TCP connection, plain and with the cluster's TLS 1.3, its
#    bandwidth and its round trips of 64 bytes one at a time (the floor of a sync call).
#
# Results go to $BENCH_OUT (default target/bench-cluster/). Builds use $CARGO_TARGET_DIR when set.
#
# On a KVM guest, how long an idle vCPU polls before it halts (cpuidle-haltpoll's
# guest_halt_poll_ns) sets what waking a thread costs: a halted vCPU is woken through the
# hypervisor (~50 µs here), a polling one at once. The value in force is printed in the header.
# BENCH_HALT_POLL_NS=N sets it to N for the run (both systems alike) and puts the old value back
# on exit; the kernel's default is 200000, this VM boots with 0 (see BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=()
[ "${1:-}" = "--quick" ] && quick=(--quick)
venv=${RAY_VENV:-/tmp/ray-bench-venv}
out=${BENCH_OUT:-target/bench-cluster}
tmp=${BENCH_TMP:-/tmp/ray-rs-bench-cluster}
target=${CARGO_TARGET_DIR:-target}
mkdir -p "$out"
out=$(cd "$out" && pwd)

if [ ! -x "$venv/bin/ray" ]; then
    echo "== installing Ray into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "ray[default]" numpy
fi
if ! command -v iperf3 >/dev/null; then
    echo "== installing iperf3"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q iperf3 >/dev/null
fi
halt_poll=/sys/module/haltpoll/parameters/guest_halt_poll_ns
halt_poll_was=
if [ -n "${BENCH_HALT_POLL_NS:-}" ]; then
    [ -w "$halt_poll" ] || { echo "BENCH_HALT_POLL_NS: $halt_poll is not writable here"; exit 1; }
    halt_poll_was=$(cat "$halt_poll")
    trap 'echo "$halt_poll_was" >"$halt_poll"' EXIT
    echo "$BENCH_HALT_POLL_NS" >"$halt_poll"
fi
echo "== $(nproc) CPUs, $(date -u +%Y-%m-%d), load average $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -r "$halt_poll" ]; then
    echo "== idle vCPUs poll $(cat "$halt_poll") ns before halting (haltpoll.guest_halt_poll_ns)"
fi

# CPU time the hypervisor gave to others while a phase ran ("steal" in /proc/stat), as a share
# of the phase's CPU time: on a shared VM a phase run under 30% steal is not comparable with one
# run under 2%, so each phase's share is printed and kept beside its figures.
cpu_ticks() { awk '/^cpu /{t=0; for(i=2;i<=9;i++) t+=$i; print t, $9}' /proc/stat; }
steal_since() {
    local t0 s0 t1 s1
    read -r t0 s0 <<<"$1"
    read -r t1 s1 <<<"$(cpu_ticks)"
    awk -v dt=$((t1 - t0)) -v ds=$((s1 - s0)) 'BEGIN{printf "%.1f", dt ? 100 * ds / dt : 0}'
}

echo "== building ray-rs and ray-bench (release)"
cargo build --release -q -p ray-cli -p ray-bench
ray_rs=$target/release/ray-rs
bench=$target/release/ray-bench

stop_nodes() {
    for n in c b a head; do
        [ -d "$tmp/$n" ] && "$ray_rs" stop --temp-dir "$tmp/$n" >/dev/null 2>&1 || true
    done
}
at_exit() {
    stop_nodes
    if [ -n "$halt_poll_was" ]; then echo "$halt_poll_was" >"$halt_poll"; fi
}
trap at_exit EXIT

echo "== ray for Rust: head + 3 nodes"
stop_nodes
rm -rf "$tmp"
mkdir -p "$tmp"
env -u RAY_RS_AUTH_TOKEN -u RAY_ADDRESS "$ray_rs" start --head --port 0 --node-ip 127.0.0.1 \
    --num-cpus 1 --num-gpus 0 --temp-dir "$tmp/head" | tee "$tmp/head.out"
address=$(grep -o ' started at [0-9.:]*' "$tmp/head.out" | awk '{print $3}' | head -1)
[ -n "$address" ] || { echo "no address in the head's output"; exit 1; }
token=$(cat "$tmp/head/auth_token")
for n in a b c; do
    RAY_RS_AUTH_TOKEN=$token "$ray_rs" start --address "$address" --port 0 --node-ip 127.0.0.1 \
        --num-cpus 1 --num-gpus 0 --resources "node_$n=1" --temp-dir "$tmp/$n" >/dev/null
done
RAY_RS_AUTH_TOKEN=$token "$ray_rs" status --address "$address" --temp-dir "$tmp/head"
phase=$(cpu_ticks)
RAY_ADDRESS=$address RAY_RS_AUTH_TOKEN=$token "$bench" --cluster "${quick[@]}" \
    --json "$out/ours.json" | grep --line-buffered -v '^(' | tee "$out/ours.txt"
steal_ours=$(steal_since "$phase")
echo "steal time during this phase: $steal_ours%"
stop_nodes

echo "== Ray $("$venv/bin/python" -c 'import ray; print(ray.__version__)'): head + 3 nodes"
phase=$(cpu_ticks)
(cd /tmp && "$venv/bin/python" "$OLDPWD/scripts/ray_cluster_bench.py" "${quick[@]}" 2>/dev/null) \
    | grep --line-buffered -v '^(' | tee "$out/ray.txt"
steal_ray=$(steal_since "$phase")
echo "steal time during this phase: $steal_ray%"

echo "== limits: iperf3 on 127.0.0.1 (one stream, 10 s)"
iperf3 -s -1 -B 127.0.0.1 -p 5299 >/dev/null 2>&1 &
iperf_pid=$!
sleep 1
iperf3 -c 127.0.0.1 -p 5299 -t 10 -J >"$out/iperf3.json"
wait "$iperf_pid" || true
python3 - "$out/iperf3.json" <<'PY' | tee "$out/limits.txt"
import json, sys
bps = json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"]
print(f"iperf3 TCP loopback GB/s {bps / 8e9:.3f} +- 0")
PY
"$bench" --loopback "${quick[@]}" | tee -a "$out/limits.txt"

echo
echo "== side by side ($(nproc) CPUs, $(date -u +%Y-%m-%d))"
echo "steal time: ours $steal_ours%, Ray $steal_ray% (of each phase's CPU time)" | tee "$out/table.txt"
python3 - "$out/ours.txt" "$out/ray.txt" "$out/limits.txt" <<'PY' | tee -a "$out/table.txt"
import re, sys
line = re.compile(r"^(.*) (per second|GB/s) ([0-9.e+-]+) \+- ([0-9.e+-]+)")
def load(path):
    d = {}
    for l in open(path):
        m = line.match(l.strip())
        if m:
            d[m.group(1)] = (m.group(2), float(m.group(3)), float(m.group(4)))
    return d
ours, ray, limits = load(sys.argv[1]), load(sys.argv[2]), load(sys.argv[3])
for name, (unit, x, xs) in ours.items():
    if name in ray:
        _, y, ys = ray[name]
        ratio = f"{x / y:.1f}x" if y else "n/a"
        print(f"{name} ({unit}) | ours {x:.2f} +- {xs:.2f} | ray {y:.2f} +- {ys:.2f} | ratio {ratio}")
    else:
        print(f"{name} ({unit}) | ours {x:.2f} +- {xs:.2f} | ray (not measured) | ratio n/a")
for name, (unit, x, xs) in limits.items():
    print(f"{name} ({unit}) | {x:.2f} +- {xs:.2f}")
# The floor of a synchronous call: any design crosses at least one process boundary and back
# (one round trip, two thread wake-ups); ours crosses the driver, head, node and worker.
floor = limits.get("loopback TLS 1.3 round trips (64 B, one at a time)")
if floor:
    for name, (unit, x, xs) in ours.items():
        if name.endswith(" sync") and name in ray:
            y = ray[name][1]
            print(f"{name}: 10x Ray is {10 * y:.0f}/s; one TLS round trip, the floor of any "
                  f"design, {floor[1]:.0f}/s; ours is {x / floor[1]:.2f} of the floor")
PY
