"""Ray's side of scripts/bench-cluster.sh: the cluster metrics of `ray-bench --cluster`
(ray-bench/src/cluster.rs), same names and definitions, on a Ray cluster of the same shape
started here with ray.cluster_utils.Cluster: a head (1 CPU) and three nodes (1 CPU each) with the
custom resources node_a, node_b, node_c; the driver attaches to the head. Ray's nodes use the
machine's own address (Ray's default; with 127.0.0.1 its GCS was unreachable here); traffic to a
local address stays on the kernel's loopback path either way.

    python ray_cluster_bench.py [--quick]

Prints one line per metric: `<name> per second <mean> +- <sd>` or `<name> GB/s <mean> +- <sd>`.
"""

import sys
import time

import numpy as np
import ray
from ray.cluster_utils import Cluster

QUICK = "--quick" in sys.argv
WARMUP, ROUND = (0.3, 0.5) if QUICK else (1.0, 2.0)
STORE = 3 * 1024**3  # bytes of object store per node (cluster_utils' default is 150 MiB)


def timeit(name, fn, multiplier=1):
    """Ray's own timeit (ray._private.ray_microbenchmark_helpers), with ray-bench's durations:
    warm up, then 4 rounds, mean and standard deviation of the rounds' rates."""
    start = time.time()
    count = 0
    while time.time() - start < WARMUP:
        fn()
        count += 1
    step = count // 10 + 1
    stats = []
    for _ in range(4):
        start = time.time()
        count = 0
        while time.time() - start < ROUND:
            for _ in range(step):
                fn()
            count += step
        stats.append(multiplier * count / (time.time() - start))
    print(f"{name} per second {np.mean(stats):.2f} +- {np.std(stats):.2f}", flush=True)


def transfer_rounds(name, nbytes, warmup, rounds, one_round):
    for i in range(warmup):
        one_round(i)
    stats = [nbytes / one_round(warmup + i) / 1e9 for i in range(rounds)]
    print(f"{name} GB/s {np.mean(stats):.3f} +- {np.std(stats):.3f}", flush=True)


@ray.remote(resources={"node_b": 0.001})
def small_value_on_b():
    return b"ok"


@ray.remote(resources={"node_a": 0.001})
def make_on_a(n, fill):
    return np.full(n, fill, dtype=np.uint8)


@ray.remote
def read_object(arr):
    # `arr` is a top-level argument: Ray pulls it into this node's store and maps it zero-copy.
    return len(arr), int(arr[0]), int(arr[-1])


@ray.remote(num_cpus=0, resources={"node_b": 0.001})
class RemoteActor:
    def small_value(self):
        return b"ok"


def read_on(node, ref):
    return read_object.options(resources={node: 0.001}).remote(ref)


def transfer_once(n, i):
    fill = i % 250 + 1
    obj = make_on_a.remote(n, fill)
    # Ready on A and nowhere else (not timed): a read on A itself, as ray-bench does.
    assert ray.get(read_on("node_a", obj)) == (n, fill, fill)
    start = time.perf_counter()
    result = ray.get(read_on("node_b", obj))
    secs = time.perf_counter() - start
    assert result == (n, fill, fill), result
    return secs


def broadcast_once(n, i):
    fill = i % 250 + 1
    obj = ray.put(np.full(n, fill, dtype=np.uint8))
    start = time.perf_counter()
    results = ray.get([read_on(node, obj) for node in ("node_a", "node_b", "node_c")])
    secs = time.perf_counter() - start
    assert all(r == (n, fill, fill) for r in results), results
    return secs


def main():
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "object_store_memory": STORE,
        },
    )
    for node in ("node_a", "node_b", "node_c"):
        cluster.add_node(
            num_cpus=1,
            resources={node: 1},
            object_store_memory=STORE,
        )
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    print(f"(cluster of {len(ray.nodes())} nodes, Ray {ray.__version__})", flush=True)
    try:
        timeit("cluster remote tasks sync", lambda: ray.get(small_value_on_b.remote()))
        timeit(
            "cluster remote tasks async",
            lambda: ray.get([small_value_on_b.remote() for _ in range(1000)]),
            1000,
        )
        a = RemoteActor.remote()
        timeit("cluster remote actor calls sync", lambda: ray.get(a.small_value.remote()))
        timeit(
            "cluster remote actor calls async",
            lambda: ray.get([a.small_value.remote() for _ in range(1000)]),
            1000,
        )
        small, large, bcast = ((1, 5), (1, 3), (1, 3)) if QUICK else ((2, 10), (1, 5), (1, 5))
        n = 64 << 20
        transfer_rounds("cluster transfer 64 MiB node to node", n, *small,
                        lambda i: transfer_once(n, i))
        n1 = 1 << 30
        transfer_rounds("cluster transfer 1 GiB node to node", n1, *large,
                        lambda i: transfer_once(n1, i))
        n2 = 256 << 20
        transfer_rounds("cluster broadcast 256 MiB to 3 nodes", 3 * n2, *bcast,
                        lambda i: broadcast_once(n2, i))
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main()
