"""Placement decision per pod at 5,000 nodes (targets: <= 10 us plain, <= 30 us with affinity+taints).

Every figure is one call of ``Statement.allocate_run`` (what the allocate action makes per
run of identical tasks: static mask from the session's cache, the kernel, the undo record),
then a discard. Five variants on the same session and inputs, all measured in this run:

* ``run64``: a run of 64 identical single-GPU tasks placed in one call, per pod; the
  session's lazy node heap for the task class already built (the favourable case: one call
  serves 64 pods). This is the pytest-benchmark timing.
* ``run1``: a run of one task, heap already built (steady state of a cycle of single-pod
  jobs of one class).
* ``run1_first``: the first run of one task of its class in a fresh session: the heap is
  built from all 5,000 nodes inside the timing.
* ``scan1``: a run of one task through the compiled full-scan kernel (node heap off): the
  same compiled code without the better algorithm.
* ``python1``: the same full scan through the pure-Python reference kernel
  (``kai/_fast/reference/placement.py``): the same algorithm, not compiled.

Reported separately: the algorithmic speedup ``scan1 / run1`` (lazy heap vs full scan, both
compiled) and the compiled speedup ``python1 / scan1`` (same algorithm). Times are medians
of repeated calls (the machine is shared; ratios come from the same run).
Run: PYTHONPATH=.:bench pytest bench/bench_fast_placement.py --benchmark-enable -p no:cacheprovider -s
"""
from __future__ import annotations

import statistics
import time

import pytest

from _sizes import size
from kai._fast.reference import placement as ref_placement
from kai.api.pod_info import PodInfo
from kai.cache.cluster_state import ClusterState
from kai.config import default_config
from kai.framework import statement as statement_mod
from kai.framework.session import Session
from kai.framework.statement import Statement
from kai.scheduler import RecordingCache, Scheduler
from kai.sim.synthetic import make_pod, open_queue, running_pods, synthetic_nodes

N_NODES = size(5000, 300)
RUN = 64


def _state() -> ClusterState:
    state = ClusterState()
    nodes = synthetic_nodes(N_NODES, seed=1)
    pgs, pods = running_pods(nodes, 2, seed=1)
    state.load(nodes, pgs, pods, queues=[open_queue("default-parent-queue"),
                                         open_queue("default-queue", "default-parent-queue")])
    return state


def _tasks(state: ClusterState, affinity: bool, n: int) -> list[PodInfo]:
    return [PodInfo(make_pod(f"p-{i}", "b", "g", 1, affinity_zone="zone-1" if affinity else None,
                             tolerate=affinity), state.registry) for i in range(n)]


def _session(state: ClusterState):
    return Scheduler(state, default_config()).open_session(RecordingCache(state))


def _decide(ssn, tasks) -> int:
    """One allocate_run call as the allocate action makes it, then undone."""
    stmt = Statement(ssn)
    placed = stmt.allocate_run(tasks, ssn.node_mask(tasks[0], None), None)
    stmt.discard()
    return placed


def _median_us(fn, calls: int) -> float:
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def _full_scan(kernel=None):
    """Context: node heap off (and the reference kernel in place of the compiled one)."""
    class _Ctx:
        def __enter__(self):
            self.saved = statement_mod._placement
            Session.use_node_queues = False
            if kernel is not None:
                statement_mod._placement = kernel

        def __exit__(self, *exc):
            statement_mod._placement = self.saved
            Session.use_node_queues = True
    return _Ctx()


@pytest.mark.parametrize("affinity", [False, True], ids=["plain", "affinity+taints"])
def test_allocate_decision_per_pod(benchmark, affinity):
    state = _state()
    ssn = _session(state)
    run = _tasks(state, affinity, RUN)
    one = run[:1]

    placed = benchmark(lambda: _decide(ssn, run))
    assert placed == RUN
    run64 = benchmark.stats.stats.median / RUN * 1e6

    assert _decide(ssn, one) == 1
    run1 = _median_us(lambda: _decide(ssn, one), size(2000, 200))

    firsts = []
    for _ in range(size(7, 3)):
        fresh = _session(state)
        t0 = time.perf_counter()
        assert _decide(fresh, one) == 1
        firsts.append(time.perf_counter() - t0)
        fresh.close()
    run1_first = statistics.median(firsts) * 1e6

    with _full_scan():
        scan1 = _median_us(lambda: _decide(ssn, one), size(300, 50))
    with _full_scan(ref_placement):
        python1 = _median_us(lambda: _decide(ssn, one), size(5, 2))
    ssn.close()

    algorithmic, compiled = scan1 / run1, python1 / scan1
    benchmark.extra_info.update({
        "nodes": N_NODES, "run64_per_pod_us": round(run64, 2), "run1_us": round(run1, 2),
        "run1_first_of_class_us": round(run1_first, 1), "scan1_compiled_us": round(scan1, 1),
        "python1_reference_us": round(python1, 0), "algorithmic_speedup_heap_vs_scan": round(algorithmic, 1),
        "compiled_speedup_same_algorithm": round(compiled, 1), "target_us": 30 if affinity else 10,
    })
    print(f"\n[{'affinity+taints' if affinity else 'plain'}] {N_NODES} nodes, per pod (median): "
          f"run of 64 {run64:.2f} us | run of 1 {run1:.2f} us | first of its class (heap build) "
          f"{run1_first:.0f} us | compiled full scan {scan1:.1f} us | Python full scan {python1:.0f} us\n"
          f"  algorithmic speedup (heap vs full scan, both compiled, run of 1): {algorithmic:.1f}x; "
          f"compiled speedup (same full scan, Cython vs Python): {compiled:.0f}x")
    assert run1 < scan1 < python1
