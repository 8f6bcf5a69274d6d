"""Whole allocate cycles at 10,000 nodes (target <= 1 s for 20,000 pending pods).

Two workloads, 20,000 pending single-GPU / CPU pods each (10% CPU-only, 10% with zone
affinity), on 10,000 synthetic 8-GPU nodes:

* ``gangs``: 2,000 gangs of 1-64 pods (runs of identical pods: one kernel call per run);
* ``single``: 20,000 single-pod jobs (every decision is a run of one).

Each timing is ``Scheduler.run_cycle`` from a loaded ClusterState: session open (snapshot
arrays, fair share), every node-heap build, job ordering, placement, commit; per pod =
cycle time / bound pods. Baselines in the same run, on the same workload:

* ``scan``: the same compiled kernels with the node heap off (full scan per decision), full
  size: the algorithmic gain of the heap, both compiled;
* ``python``: full scan through the pure-Python reference kernel, on a 1/20 slice of the
  pods (it is far slower): the compiled gain for the same algorithm (``python / scan`` per
  pod; the slice's per-pod figure stands for the whole).

Run: PYTHONPATH=.:bench pytest bench/bench_cycle.py --benchmark-enable -p no:cacheprovider -s
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
WORKLOADS = {"gangs": (N_GANGS, 64), "single": (N_PODS, 1)}     # jobs, max gang size


def _state(workload: str, share: int = 1) -> ClusterState:
    """The cluster and its pending jobs; ``share`` = 20 keeps 1/20 of the jobs and pods."""
    jobs, max_gang = WORKLOADS[workload]
    nodes = synthetic_nodes(N_NODES, seed=2)
    queues = [open_queue("root"), open_queue("team-a", "root"), open_queue("team-b", "root")]
    pgs, pods = synthetic_jobs(max(jobs // share, 5), max(N_PODS // share, 50), seed=2,
                               queues=["team-a", "team-b"], max_gang=max_gang, affinity_share=0.1)
    state = ClusterState()
    state.load(nodes, pgs, pods, queues=queues)
    return state


def _cycle(state: ClusterState, heap: bool = True, kernel=None) -> tuple[float, int]:
    """(seconds, pods bound) of one allocate cycle; ``heap`` False = full scan per decision,
    ``kernel`` replaces the compiled placement kernel."""
    saved = statement_mod._placement
    Session.use_node_queues = heap
    if kernel is not None:
        statement_mod._placement = kernel
    try:
        t0 = time.perf_counter()
        result = Scheduler(state, CONFIG).run_cycle(RecordingCache(state))
        return time.perf_counter() - t0, len(result.bindings)
    finally:
        statement_mod._placement = saved
        Session.use_node_queues = True


@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_allocate_cycle(benchmark, workload):
    holder = {}

    def setup():
        holder["state"] = _state(workload)
        return (), {}

    def run():
        return Scheduler(holder["state"], CONFIG).run_cycle(RecordingCache(holder["state"]))

    result = benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
    bound = len(result.bindings)
    assert bound > 0.9 * N_PODS
    cycle_s = benchmark.stats.stats.median
    per_pod = cycle_s / bound
    scan_s, scan_bound = _cycle(_state(workload), heap=False)
    assert scan_bound == bound                       # same decisions count, only slower
    scan_per_pod = scan_s / scan_bound
    py_s, py_bound = _cycle(_state(workload, share=20), heap=False, kernel=ref_placement)
    py_per_pod = py_s / max(py_bound, 1)
    slice_scan_s, slice_bound = _cycle(_state(workload, share=20), heap=False)
    slice_scan_per_pod = slice_scan_s / max(slice_bound, 1)
    benchmark.extra_info.update({
        "workload": workload, "nodes": N_NODES, "pending_pods": N_PODS, "jobs": WORKLOADS[workload][0],
        "bound": bound, "cycle_s": round(cycle_s, 3), "per_pod_us": round(per_pod * 1e6, 1),
        "scan_cycle_s": round(scan_s, 3), "scan_per_pod_us": round(scan_per_pod * 1e6, 1),
        "python_slice_per_pod_us": round(py_per_pod * 1e6, 1),
        "compiled_scan_slice_per_pod_us": round(slice_scan_per_pod * 1e6, 1),
        "algorithmic_speedup_heap_vs_scan": round(scan_per_pod / per_pod, 2),
        "compiled_speedup_same_algorithm": round(py_per_pod / slice_scan_per_pod, 1), "target_s": 1.0,
    })
    print(f"\n[{workload}] {N_NODES} nodes, {bound} pods bound: cycle {cycle_s:.3f} s ({per_pod * 1e6:.1f} us/pod, "
          f"session open and heap builds included) | full scan compiled {scan_s:.3f} s ({scan_per_pod * 1e6:.1f} "
          f"us/pod) | on a 1/20 slice: Python full scan {py_per_pod * 1e6:.0f} us/pod, compiled full scan "
          f"{slice_scan_per_pod * 1e6:.1f} us/pod\n  algorithmic speedup (heap vs scan, compiled): "
          f"{scan_per_pod / per_pod:.1f}x; compiled speedup (same scan): {py_per_pod / slice_scan_per_pod:.0f}x")
