"""Placement decision per pod at 5,000 nodes (issue: <= 10 us plain, <= 30 us with affinity+taints).

Measures the whole decision as the allocate action makes it for a run of identical
single-GPU tasks: static mask (cached per constraint signature) + one kernel call placing
the run, through Statement.allocate_run, then discards. The pure-Python reference kernel is
timed in the same run on the same inputs as the baseline; the ratio is in extra_info.
Run: pytest bench/bench_fast_placement.py --benchmark-enable -p no:cacheprovider
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from _sizes import size
from kai._fast import placement as fast
from kai._fast.reference import placement as ref
from kai.cache.cluster_state import ClusterState
from kai.config import default_config
from kai.scheduler import RecordingCache, Scheduler
from kai.framework.statement import Statement
from kai.sim.synthetic import make_pod, open_queue, running_pods, synthetic_nodes

N_NODES = size(5000, 300)
RUN = 64


def _session(affinity: bool):
    state = ClusterState()
    nodes = synthetic_nodes(N_NODES, seed=1)
    pgs, pods = running_pods(nodes, 2, seed=1)
    state.load(nodes, pgs, pods, queues=[open_queue("default-parent-queue"), open_queue("default-queue", "default-parent-queue")])
    sched = Scheduler(state, default_config())
    ssn = sched.open_session(RecordingCache(state))
    tasks = []
    from kai.api.pod_info import PodInfo
    for i in range(RUN):
        p = make_pod(f"p-{i}", "b", "g", 1, affinity_zone="zone-1" if affinity else None, tolerate=affinity)
        tasks.append(PodInfo(p, state.registry))
    return ssn, tasks


def _per_pod(ssn, tasks, impl) -> float:
    t0 = tasks[0]
    mask = ssn.state.nodes.static_mask(t0.pod, t0.signature)
    width = ssn.allocatable.shape[0]
    req = t0.req_vec(width)
    cols = np.flatnonzero(req > 0).astype(np.int32)
    k = len(tasks)
    out = fast.Placements(k, width)
    arrays = fast.NodeArrays(ssn.allocatable, ssn.idle.copy(), ssn.releasing.copy(), ssn.avail.copy(),
                             ssn.gpu_capacity, ssn.name_rank)
    start = time.perf_counter()
    placed = impl.place(arrays, mask, None, req, cols, 2, 0, False, True, out)
    elapsed = time.perf_counter() - start
    assert placed == k
    return elapsed / k


@pytest.mark.parametrize("affinity", [False, True], ids=["plain", "affinity+taints"])
def test_allocate_decision_per_pod(benchmark, affinity):
    ssn, tasks = _session(affinity)

    def run():
        stmt = Statement(ssn)
        mask = ssn.node_mask(tasks[0], None)
        placed = stmt.allocate_run(tasks, mask, None)
        stmt.discard()
        return placed

    placed = benchmark(run)
    assert placed == RUN
    per_pod_us = benchmark.stats.stats.mean / RUN * 1e6
    kernel_us = min(_per_pod(ssn, tasks, fast) for _ in range(5)) * 1e6
    ref_us = _per_pod(ssn, tasks[:4], ref) * 1e6
    benchmark.extra_info.update({
        "nodes": N_NODES, "per_pod_us": round(per_pod_us, 2), "kernel_only_per_pod_us": round(kernel_us, 2),
        "reference_per_pod_us": round(ref_us, 1), "speedup_vs_reference": round(ref_us / per_pod_us, 1),
        "target_us": 30 if affinity else 10,
    })
    print(f"\n[{'affinity+taints' if affinity else 'plain'}] {N_NODES} nodes: {per_pod_us:.2f} us/pod "
          f"(kernel {kernel_us:.2f} us), reference {ref_us:.0f} us/pod, ratio {ref_us / per_pod_us:.0f}x")
