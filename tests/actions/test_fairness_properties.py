"""Hypothesis properties of the whole cycle (allocate, consolidation, reclaim, preempt,
stale-gang eviction) over several cycles on random small clusters:

- no queue is ever allocated above its limit;
- a queue within its deserved quota (in every resource) never loses pods to reclaim;
- repeated cycles reach a fixed point: no allocate/evict oscillation.

Between cycles the results feed back the way a cluster does: bound pods run, evicted pods
are re-created pending by their controller (same spec, no node).
"""
from __future__ import annotations

import msgspec
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kai.api.k8s import ObjectMeta, PodGroup, PodGroupSpec, PodStatus
from kai.config import default_config
from kai.scheduler import RecordingCache, Scheduler
from kai.sim.simulator import build_state
from kai.sim.loader import Manifests
from kai.sim.synthetic import make_pod, open_queue, synthetic_nodes
from kai.api.k8s import Queue, QueueResource, QueueResources, QueueSpec

CYCLES = 10


def _queue(name: str, parent: str, quota: float, limit: float, weight: float) -> Queue:
    g = QueueResource(quota=quota, over_quota_weight=weight, limit=limit)
    r = QueueResource(quota=-1, over_quota_weight=1, limit=-1)
    return Queue(metadata=ObjectMeta(name=name, uid=f"uid-q-{name}", creation_timestamp="2024-01-01T00:00:00Z"),
                 spec=QueueSpec(parent_queue=parent, resources=QueueResources(gpu=g, cpu=r, memory=r)))


queue_spec = st.tuples(st.sampled_from([0, 1, 2, 4, 8]),           # gpu quota
                       st.sampled_from([-1, 4, 8, 12]),            # gpu limit
                       st.sampled_from([0, 1, 2]))                 # over-quota weight
job_spec = st.tuples(st.integers(0, 2),                            # leaf queue index
                     st.integers(1, 4),                            # gang size
                     st.sampled_from([1, 2, 4]),                   # gpus per pod
                     st.sampled_from(["train", "build", "inference", "build-preemptible"]))


def _build(nodes_n, queues, jobs):
    m = Manifests()
    m.objects["Node"] = synthetic_nodes(nodes_n, seed=nodes_n, cpu_only_share=0.0, tainted_share=0.0)
    m.objects["Queue"] = [open_queue("root")] + [
        _queue(f"q{i}", "root", float(q), float(lim if lim == -1 or lim >= q else q), float(w))
        for i, (q, lim, w) in enumerate(queues)]
    for j, (qi, size, gpus, prio) in enumerate(jobs):
        name = f"j{j}"
        m.objects["PodGroup"].append(PodGroup(
            metadata=ObjectMeta(name=name, namespace="ns", uid=f"uid-{name}",
                                creation_timestamp=f"2024-01-01T00:00:{j:02d}Z"),
            spec=PodGroupSpec(min_member=size, queue=f"q{qi % len(queues)}", priority_class_name=prio)))
        for i in range(size):
            m.objects["Pod"].append(make_pod(f"{name}-{i}", "ns", name, gpus, cpu="1", mem="1Gi", created=j))
    return m


def _feed_back(state, result) -> None:
    by_key = {p.key: p for p in state.pods.values()}
    for d in result.bindings:
        p = by_key.get(d.pod)
        if p is not None:
            pod = p.pod
            state.upsert_pod(msgspec.structs.replace(
                pod, spec=msgspec.structs.replace(pod.spec, node_name=d.node), status=PodStatus(phase="Running")))
    for d in result.evictions:
        p = by_key.get(d.pod)
        if p is not None:
            pod = p.pod
            state.delete_pod(p.uid)
            state.upsert_pod(msgspec.structs.replace(
                pod, spec=msgspec.structs.replace(pod.spec, node_name=""), status=PodStatus(phase="Pending")))


def _limits(queues) -> dict[str, float]:
    out = {}
    for i, (q, lim, _w) in enumerate(queues):
        lim = lim if lim == -1 or lim >= q else q
        out[f"q{i}"] = lim
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nodes_n=st.integers(1, 4), queues=st.lists(queue_spec, min_size=2, max_size=3),
       jobs=st.lists(job_spec, min_size=1, max_size=8))
def test_limits_deserved_protection_and_fixed_point(nodes_n, queues, jobs):
    state = build_state(_build(nodes_n, queues, jobs))
    sched = Scheduler(state, default_config())
    limits = _limits(queues)
    deserved = {f"q{i}": float(q) for i, (q, _l, _w) in enumerate(queues)}
    gpus_per_pod = {f"ns/j{j}": float(g) for j, (_q, _s, g, _p) in enumerate(jobs)}
    history = []
    now = 1_704_070_800.0
    for _cycle in range(CYCLES):
        result = sched.run_cycle(RecordingCache(state), now=now)
        alloc = {q["name"]: q["allocated"]["gpu"] for q in result.queues}
        for name, lim in limits.items():
            if lim != -1:
                assert alloc.get(name, 0) <= lim + 1e-9, (name, alloc, limits)
        # a queue within deserved never loses pods to reclaim: before the reclaim, its
        # allocation (at least what is left plus what was taken) exceeded deserved
        taken: dict[str, float] = {}
        for e in result.evictions:
            if e.action != "reclaim":
                continue
            ns, pod_name = e.pod.split("/")
            job = state.jobs.get(f"{ns}/{pod_name.rsplit('-', 1)[0]}")
            assert job is not None, e
            taken[job.queue] = taken.get(job.queue, 0.0) + gpus_per_pod[job.key]
        for q, amount in taken.items():
            assert alloc.get(q, 0) + amount > deserved[q] + 1e-9, (q, alloc, taken, deserved)
        history.append((len(result.bindings), len(result.evictions)))
        _feed_back(state, result)
        now += 1.0
    tail = history[-3:]
    assert all(ev == 0 for _b, ev in tail), history
    assert all(b == 0 for b, _ev in tail), history
