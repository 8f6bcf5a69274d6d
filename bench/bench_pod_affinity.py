"""Inter-pod constraints at scale (issue 9): 5,000 nodes with 5,000 running pods that carry
affinity / anti-affinity terms, then 1,000 more pods with required anti-affinity to each other
on kubernetes.io/hostname. Target: <= 50 us per pod, the cycle's set-up of the term counts
included (one whole allocate cycle, session open to close, divided by the pods bound).

Two shapes, side by side:
- ``gang``: the 1,000 pods are one PodGroup (one run: one kernel call that re-evaluates the
  anti-affinity domains between decisions);
- ``single``: 1,000 single-pod PodGroups (what a Deployment's pods are): 1,000 jobs, each
  with its own queue-order turn, constraint build and kernel call.

Baselines in the same run: the same cycle with the placement and domain kernels swapped for
their pure-Python references (``kai._fast.reference``), on a 1/20 slice (it is far slower), and
the same workload *without* any pod constraints (what the constraints cost).
Run: PYTHONPATH=.:bench python -m pytest bench/bench_pod_affinity.py --benchmark-enable -p no:cacheprovider -s
"""
from __future__ import annotations

import time

import msgspec
import pytest

from _sizes import size
from kai._fast.reference import domains as ref_domains
from kai._fast.reference import placement as ref_placement
from kai.api.k8s import Pod, PodGroup
from kai.cache.cluster_state import ClusterState
from kai.config import parse_config
from kai.framework import session as session_mod
from kai.framework import statement as statement_mod
from kai.scheduler import RecordingCache, Scheduler
from kai.sim.synthetic import open_queue, synthetic_nodes

N_NODES = size(5_000, 300)
N_RUNNING = size(5_000, 300)
N_NEW = size(1_000, 60)
APPS = 50
HOST = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"
CONFIG = parse_config({"actions": "allocate", "tiers": [{"plugins": [
    {"name": "predicates"}, {"name": "proportion"}, {"name": "priority"}, {"name": "podaffinity"},
    {"name": "nodeplacement"}]}]})


def _term(app: str, key: str) -> dict:
    return {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key}


def _pod(name: str, group: str, app: str, affinity: dict | None, node: str = "") -> Pod:
    spec = {"schedulerName": "kai-scheduler", "nodeName": node,
            "containers": [{"name": "c", "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}
    if affinity:
        spec["affinity"] = affinity
    return msgspec.convert({"metadata": {"name": name, "namespace": "bench", "uid": f"uid-{name}",
                                         "labels": {"app": app}, "annotations": {"pod-group-name": group}},
                            "spec": spec, "status": {"phase": "Running" if node else "Pending"}}, Pod)


def _pg(name: str, min_member: int) -> PodGroup:
    return msgspec.convert({"metadata": {"name": name, "namespace": "bench", "uid": f"pg-{name}"},
                            "spec": {"minMember": min_member, "queue": "q"}}, PodGroup)


def workload(n_new: int = N_NEW, shape: str = "gang", constraints: bool = True) -> ClusterState:
    nodes = synthetic_nodes(N_NODES, seed=3, gpus=0, cpu_only_share=1.0)
    pods, pgs = [], []
    for i in range(N_RUNNING):           # running apps: self anti-affinity (preferred) + zone affinity
        app = f"app-{i % APPS}"
        aff = None
        if constraints:
            aff = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                       {"weight": 50, "podAffinityTerm": _term(app, HOST)}]},
                   "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                       {"weight": 10, "podAffinityTerm": _term(f"app-{(i + 1) % APPS}", ZONE)}]}}
            if i % 10 == 0:
                aff["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] = [_term("batch", HOST)]
        pgs.append(_pg(f"r{i}", 1))
        pods.append(_pod(f"r{i}", f"r{i}", app, aff, node=nodes[(i * 7) % len(nodes)].metadata.name))
    new_aff = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [_term("web", HOST)]}} \
        if constraints else None
    if shape == "gang":
        pgs.append(_pg("web", n_new))
    for i in range(n_new):
        group = "web" if shape == "gang" else f"web-{i}"
        if shape != "gang":
            pgs.append(_pg(group, 1))
        pods.append(_pod(f"web-{i}", group, "web", new_aff))
    state = ClusterState()
    state.load(nodes, pgs, pods, queues=[open_queue("q")])
    return state


def _cycle(state: ClusterState):
    return Scheduler(state, CONFIG).run_cycle(RecordingCache(state), now=1_900_000_000.0)


def _reference_per_pod(shape: str) -> float:
    """The same cycle on a 1/20 slice with the pure-Python placement and domain kernels."""
    small = workload(max(N_NEW // 20, 5), shape)
    saved = statement_mod._placement, session_mod.DomainConstraints
    statement_mod._placement, session_mod.DomainConstraints = ref_placement, ref_domains.DomainConstraints
    session_mod.Session.use_node_queues = False
    try:
        t0 = time.perf_counter()
        r = _cycle(small)
        return (time.perf_counter() - t0) / max(len(r.bindings), 1)
    finally:
        statement_mod._placement, session_mod.DomainConstraints = saved
        session_mod.Session.use_node_queues = True


@pytest.mark.parametrize("shape", ["gang", "single"])
def test_required_anti_affinity_cycle(benchmark, shape):
    holder = {}

    def setup():
        holder["state"] = workload(shape=shape)
        return (), {}

    result = benchmark.pedantic(lambda: _cycle(holder["state"]), setup=setup, rounds=3, iterations=1)
    bound = len(result.bindings)
    assert bound == N_NEW                                  # one per node: all fit
    nodes = [b.node for b in result.bindings]
    assert len(set(nodes)) == len(nodes)                   # never two on one node
    per_pod = benchmark.stats.stats.mean / bound
    plain = workload(shape=shape, constraints=False)
    t0 = time.perf_counter()
    plain_bound = len(_cycle(plain).bindings)
    plain_per_pod = (time.perf_counter() - t0) / max(plain_bound, 1)
    ref = _reference_per_pod(shape)
    benchmark.extra_info.update({
        "nodes": N_NODES, "running_pods_with_terms": N_RUNNING, "new_pods": N_NEW, "shape": shape,
        "per_pod_us": round(per_pod * 1e6, 1), "target_us": 50,
        "without_constraints_per_pod_us": round(plain_per_pod * 1e6, 1),
        "reference_kernels_per_pod_us": round(ref * 1e6, 1),
        "speedup_vs_reference": round(ref / per_pod, 1)})
    print(f"\n[{shape}] {N_NODES} nodes, {N_RUNNING} running pods with terms, {N_NEW} new with required "
          f"anti-affinity: {per_pod * 1e6:.1f} us/pod (cycle {benchmark.stats.stats.mean:.3f} s); "
          f"without constraints {plain_per_pod * 1e6:.1f} us/pod; reference kernels {ref * 1e6:.0f} us/pod "
          f"({ref / per_pod:.0f}x)")
