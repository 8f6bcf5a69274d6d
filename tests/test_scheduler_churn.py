"""kai.scheduler: a long-running Scheduler over a ClusterState that sees jobs come and go
holds bounded memory (a controller runs for months; a standby replica never writes status)."""
from __future__ import annotations

import gc
import tracemalloc

import msgspec

from kai.api.k8s import ObjectMeta, PodGroup, PodGroupSpec
from kai.cache.cluster_state import ClusterState
from kai.config import default_config
from kai.scheduler import RecordingCache, Scheduler
from kai.sim.synthetic import make_pod, open_queue, synthetic_nodes

JOBS_PER_ROUND = 12


def _round(state: ClusterState, sched: Scheduler, r: int) -> int:
    """Jobs of their own names arrive (single pods and gangs of 3), are bound, run, finish and
    are deleted with their PodGroups, with a cycle after each step; nothing drains
    ``dirty_jobs`` (as on a standby replica). Returns how many pods were bound."""
    pods = {}
    names = [f"r{r}-j{j}" for j in range(JOBS_PER_ROUND)]
    for j, name in enumerate(names):
        size = 3 if j % 3 == 0 else 1
        state.upsert_podgroup(PodGroup(metadata=ObjectMeta(name=name, namespace="ns", uid=f"uid-pg-{name}"),
                                       spec=PodGroupSpec(min_member=size, queue=f"q{1 + j % 2}")))
        for i in range(size):
            # creation times repeat (the time-stamp memo is bounded apart, at 10^5 entries)
            p = make_pod(f"{name}-{i}", "ns", name, j % 2, cpu="1", mem="1Gi", created=(r * 100 + j) % 600)
            pods[f"ns/{p.metadata.name}"] = p
            state.upsert_pod(p)
    result = sched.run_cycle(RecordingCache(state), now=1000.0 + r)
    for d in result.bindings:                  # the API server reports them running
        p = pods[d.pod]
        state.upsert_pod(msgspec.structs.replace(p, spec=msgspec.structs.replace(p.spec, node_name=d.node),
                                                 status=msgspec.structs.replace(p.status, phase="Running")))
    sched.run_cycle(RecordingCache(state), now=1000.3 + r)
    for p in pods.values():                    # finished: the pods go first, then their PodGroups
        state.delete_pod(p.metadata.uid)
    for name in names:
        state.delete_podgroup(f"ns/{name}")
    sched.run_cycle(RecordingCache(state), now=1000.6 + r)
    return len(result.bindings)


def test_jobs_that_come_and_go_leave_no_memory_behind():
    state = ClusterState()
    state.load(synthetic_nodes(20, seed=1),
               queues=[open_queue("root"), open_queue("q1", "root"), open_queue("q2", "root")])
    sched = Scheduler(state, default_config())
    peaks = []
    tracemalloc.start()
    try:
        for window in range(3):
            peak = 0
            for r in range(window * 150, (window + 1) * 150):
                assert _round(state, sched, r) == 20           # every pod of the round fits
                if r % 10 == 9:
                    gc.collect()
                    peak = max(peak, tracemalloc.get_traced_memory()[0])
            peaks.append(peak)
    finally:
        tracemalloc.stop()
    assert not state.jobs and not state.pods
    # 150 rounds are 1,800 jobs: one small entry kept per job would add > 100 KB a window
    assert peaks[2] - peaks[1] < 48 * 1024, peaks
