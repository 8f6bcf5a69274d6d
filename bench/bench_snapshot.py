"""Cluster state build and incremental updates (issue: 10k nodes + 100k running pods <= 1 s;
1,000 pod changes <= 10 ms; resident memory <= 1 GiB).

Baseline in the same run: loading the same objects one event at a time (the incremental
path, with per-event array updates in the pure-Python reference charger).
Run: pytest bench/bench_snapshot.py --benchmark-enable -p no:cacheprovider
"""
from __future__ import annotations

import gc
import resource
import time

import msgspec

from _sizes import size
from kai.cache import cluster_state as cs_mod
from kai.cache.cluster_state import ClusterState
from kai.sim.synthetic import running_pods, synthetic_nodes

N_NODES = size(10_000, 500)
PER_NODE = 10


def _objects():
    nodes = synthetic_nodes(N_NODES, seed=3)
    pgs, pods = running_pods(nodes, PER_NODE, seed=3, gang=8)
    return nodes, pgs, pods


def test_snapshot_build(benchmark):
    nodes, pgs, pods = _objects()
    gc.collect()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    state = benchmark.pedantic(lambda: _load(nodes, pgs, pods), rounds=3, iterations=1)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # baseline: same objects, one event at a time through the reference charger
    saved = cs_mod._charge_kernel
    from kai._fast.reference import nodearrays as ref
    cs_mod._charge_kernel = ref.charge
    try:
        n_base = max(len(pods) // 20, 100)
        base = ClusterState()
        for n in nodes:
            base.upsert_node(n)
        for pg in pgs[:n_base]:
            base.upsert_podgroup(pg)
        start = time.perf_counter()
        for p in pods[:n_base]:
            base.upsert_pod(p)
        base_per_pod = (time.perf_counter() - start) / n_base
    finally:
        cs_mod._charge_kernel = saved
    per_pod = benchmark.stats.stats.mean / len(pods)
    benchmark.extra_info.update({"nodes": N_NODES, "running_pods": len(pods),
                                 "build_s": round(benchmark.stats.stats.mean, 3), "target_s": 1.0,
                                 "peak_rss_mib": round(rss_after / 1024, 1),
                                 "rss_growth_mib": round((rss_after - rss_before) / 1024, 1),
                                 "reference_incremental_us_per_pod": round(base_per_pod * 1e6, 1),
                                 "ratio_vs_reference": round(base_per_pod / per_pod, 2)})
    assert len(state.pods) == len(pods)


def _load(nodes, pgs, pods):
    s = ClusterState()
    s.load(nodes, pgs, pods)
    return s


def test_incremental_pod_changes(benchmark):
    nodes, pgs, pods = _objects()
    state = _load(nodes, pgs, pods)
    changes = []
    for i, p in enumerate(pods[:1000]):
        # alternate: pod starts terminating / pod deleted and re-created elsewhere
        if i % 2:
            meta = msgspec.structs.replace(p.metadata, deletion_timestamp="2024-01-01T01:00:00Z")
            changes.append(("upsert", msgspec.structs.replace(p, metadata=meta)))
        else:
            changes.append(("delete", p.metadata.uid))
    undo = [("upsert", p) for p in pods[:1000]]

    def apply():
        for kind, obj in changes:
            state.upsert_pod(obj) if kind == "upsert" else state.delete_pod(obj)

    def setup():
        for _, p in undo:
            state.upsert_pod(p)
        return (), {}

    benchmark.pedantic(apply, setup=setup, rounds=5, iterations=1)
    benchmark.extra_info.update({"changes": len(changes), "ms": round(benchmark.stats.stats.mean * 1e3, 2),
                                 "target_ms": 10})
