"""A full allocate cycle: 10,000 nodes, 20,000 pending pods in 2,000 gangs (issue target <= 1 s).

Baseline in the same run: the same scheduler with the node queues off and the placement
kernel swapped for the pure-Python reference (a full scan per decision), on a 1/20 slice
of the workload (it is far slower); the ratio is per bound pod.
Run: pytest bench/bench_cycle.py --benchmark-enable -p no:cacheprovider
"""
from __future__ import annotations

import time

import pytest

from _sizes import size
from kai._fast.reference import placement as ref_placement
from kai.cache.cluster_state import ClusterState
from kai.config import parse_config
from kai.framework import statement as statement_mod
from kai.framework.session import Session
from kai.scheduler import RecordingCache, Scheduler
from kai.sim.synthetic import open_queue, synthetic_jobs, synthetic_nodes

N_NODES = size(10_000, 500)
N_PODS = size(20_000, 1_000)
N_GANGS = size(2_000, 100)
CONFIG = parse_config({"actions": "allocate"})


def _state(n_gangs=N_GANGS, n_pods=N_PODS):
    nodes = synthetic_nodes(N_NODES, seed=2)
    queues = [open_queue("root"), open_queue("team-a", "root"), open_queue("team-b", "root")]
    pgs, pods = synthetic_jobs(n_gangs, n_pods, seed=2, queues=["team-a", "team-b"], max_gang=64,
                               affinity_share=0.1)
    state = ClusterState()
    state.load(nodes, pgs, pods, queues=queues)
    return state


def test_allocate_cycle(benchmark):
    holder = {}

    def setup():
        holder["state"] = _state()
        return (), {}

    def run():
        state = holder["state"]
        return Scheduler(state, CONFIG).run_cycle(RecordingCache(state))

    result = benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
    bound = len(result.bindings)
    assert bound > 0.9 * N_PODS
    per_pod = benchmark.stats.stats.mean / max(bound, 1)
    # baseline: reference kernel on a slice of the same workload
    small = _state(n_gangs=max(N_GANGS // 20, 5), n_pods=max(N_PODS // 20, 50))
    saved = statement_mod._placement
    statement_mod._placement = ref_placement
    Session.use_node_queues = False
    try:
        start = time.perf_counter()
        r2 = Scheduler(small, CONFIG).run_cycle(RecordingCache(small))
        ref_per_pod = (time.perf_counter() - start) / max(len(r2.bindings), 1)
    finally:
        statement_mod._placement = saved
        Session.use_node_queues = True
    benchmark.extra_info.update({"nodes": N_NODES, "pending_pods": N_PODS, "gangs": N_GANGS, "bound": bound,
                                 "cycle_s": round(benchmark.stats.stats.mean, 3),
                                 "per_pod_us": round(per_pod * 1e6, 1),
                                 "reference_per_pod_us": round(ref_per_pod * 1e6, 1),
                                 "speedup_vs_reference": round(ref_per_pod / per_pod, 1), "target_s": 1.0})
    print(f"\ncycle {benchmark.stats.stats.mean:.3f} s for {bound} bindings ({per_pod * 1e6:.1f} us/pod); "
          f"reference {ref_per_pod * 1e6:.0f} us/pod; ratio {ref_per_pod / per_pod:.0f}x")
